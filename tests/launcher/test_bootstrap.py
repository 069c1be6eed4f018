"""launcher/_bootstrap.py: a script run through the bootstrap sees what it
would see run directly, and an uncaught exception reaches the error file."""

import json
import subprocess
import sys

import pytest

from launcher.workers import BOOTSTRAP
from multiproc import REPO

WORKERS = REPO / "tests" / "launcher" / "workers"


def run(argv, cwd, env=None):
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("direct, cwd", [
    ([str(WORKERS / "probe.py"), "a", "--b", "-m"], REPO),
    (["tests/launcher/workers/probe.py", "x"], REPO),  # relative path: argv[0] stays as given
    (["-m", "probe", "a", "--b"], WORKERS),
])
def test_script_sees_what_it_would_see_run_directly(direct, cwd):
    expected = run(direct, cwd)
    through_bootstrap = run([BOOTSTRAP, *direct], cwd)
    assert expected.returncode == through_bootstrap.returncode == 0, through_bootstrap.stderr
    assert json.loads(through_bootstrap.stdout) == json.loads(expected.stdout)


@pytest.mark.parametrize("script, exc_type, message, last_line, hook_output", [
    ("custom_hook.py", "KeyError", "'missing batch 7'", "KeyError: 'missing batch 7'",
     "custom hook saw KeyError: 'missing batch 7'"),
    ("behave.py", "ValueError", "boom on rank 0", "ValueError: boom on rank 0", "ValueError: boom on rank 0"),
])
def test_uncaught_exception_reaches_the_error_file(tmp_path, script, exc_type, message, last_line, hook_output):
    error_file = tmp_path / "error.json"
    env = dict(RANK="0", DISTNN_RESTART_COUNT="0", DISTNN_ERROR_FILE=str(error_file), PATH="/usr/bin:/bin")
    result = run([BOOTSTRAP, str(WORKERS / script), "--pid-dir", str(tmp_path), "--fail-rank", "0",
                  "--fail-after", "0"], REPO, env)
    assert result.returncode == 1
    assert hook_output in result.stderr  # the script's own (or Python's) excepthook still printed
    record = json.loads(error_file.read_text())
    assert (record["exc_type"], record["message"], record["rank"]) == (exc_type, message, "0")
    traceback = record["traceback"].strip().splitlines()
    assert traceback[-1] == last_line
    assert "_bootstrap.py" not in record["traceback"] and "runpy" not in record["traceback"]
    assert str(WORKERS / script) in traceback[1]


@pytest.mark.parametrize("code, returncode", [("import sys; sys.exit(4)", 4), ("pass", 0)])
def test_exit_status_and_no_error_file_without_an_exception(tmp_path, code, returncode):
    script = tmp_path / "script.py"
    script.write_text(code)
    error_file = tmp_path / "error.json"
    result = run([BOOTSTRAP, str(script)], tmp_path, dict(DISTNN_ERROR_FILE=str(error_file), PATH="/usr/bin:/bin"))
    assert result.returncode == returncode
    assert not error_file.exists()


def test_worker_whose_launcher_is_already_gone_leaves_at_once(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("print('ran')")
    result = run([BOOTSTRAP, str(script)], tmp_path, dict(DISTNN_LAUNCHER_PID="1", PATH="/usr/bin:/bin"))
    assert result.returncode == -9 and result.stdout == ""
