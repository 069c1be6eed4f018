"""launcher/cli.py: every bad value gets a one-line usage error, --help reads
like torchrun's, and the launcher never imports the engine."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from launcher.cli import parse_args
from multiproc import REPO

SCRIPT = str(REPO / "tests" / "launcher" / "workers" / "probe.py")


def usage_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m launcher"), err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["--workers", "-2", SCRIPT], "Expect: --workers >= 1, Actual: -2"),
    (["--nproc-per-node", "0", SCRIPT], "Expect: --workers >= 1, Actual: 0"),
    (["--nnodes", "0", SCRIPT], "Expect: --nnodes >= 1, Actual: 0"),
    (["--nnodes", "2", "--node-rank", "2", "--master-port", "29500", SCRIPT],
     "Expect: 0 <= --node-rank < --nnodes, Actual: --node-rank 2 with --nnodes 2"),
    (["--node-rank", "-1", SCRIPT], "Expect: 0 <= --node-rank < --nnodes, Actual: --node-rank -1 with --nnodes 1"),
    (["--nnodes", "2", "--node-rank", "1", SCRIPT], "--master-port is required with --nnodes 2"),
    (["--master-port", "70000", SCRIPT], "Expect: 1 <= --master-port <= 65535, Actual: 70000"),
    (["--max-restarts", "-1", SCRIPT], "Expect: --max-restarts >= 0, Actual: -1"),
    (["--timeout", "0", SCRIPT], "Expect: --timeout > 0 seconds, Actual: 0"),
    (["--monitor-interval", "-0.5", SCRIPT], "Expect: --monitor-interval > 0 seconds, Actual: -0.5"),
    (["--grace-period", "-1", SCRIPT], "Expect: --grace-period >= 0 seconds, Actual: -1"),
    (["--workers", "two", SCRIPT], "argument --workers/--nproc-per-node/--nproc_per_node: invalid int value: 'two'"),
    ([], "Expect: a script to run (or -m module), Actual: none"),
    (["--workers", "2"], "Expect: a script to run (or -m module), Actual: none"),
    (["-m"], "Expect: a module name after -m, Actual: none"),
    (["-m", "not a module"], "Expect: a dotted module name after -m, Actual: 'not a module'"),
    (["no_such_script.py"], "script 'no_such_script.py' does not exist"),
    ([str(REPO / "tests")], "is not a file"),
    (["--tee", SCRIPT], "--tee only makes sense with --log-dir"),
    (["--tee", "--quiet", "--log-dir", "x", SCRIPT], "not allowed with argument"),
])
def test_bad_values_get_a_clear_error(capsys, argv, message):
    assert message in usage_error(capsys, argv)


def test_unreadable_script_is_refused():
    # root reads anything: check as an unprivileged user then, once everything is imported,
    # in a directory that user can enter
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)
        script = Path(directory) / "secret.py"
        script.write_text("print('hi')\n")
        script.chmod(0)
        # argparse imports shutil lazily: load it before dropping to a user who may not
        # be able to read this interpreter's standard library (a venv under /root, say)
        code = ("import os, locale, shutil, gettext, textwrap; from launcher.cli import parse_args; "
                f"os.geteuid() == 0 and os.setuid(65534); parse_args([{str(script)!r}])")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"script '{script}' is not readable: Permission denied" in result.stderr


@pytest.mark.parametrize("argv, expected", [
    ([SCRIPT, "--lr", "0.1", "-m", "x"], dict(workers=1, module=False, target=SCRIPT, args=["--lr", "0.1", "-m", "x"])),
    (["--nproc_per_node", "3", "-m", "pkg.train", "--epochs", "2"],
     dict(workers=3, module=True, target="pkg.train", args=["--epochs", "2"])),
    (["--nnodes", "2", "--node-rank", "1", "--master-port", "29500", "--master-addr", "10.0.0.1", SCRIPT],
     dict(nnodes=2, node_rank=1, master_port=29500, master_addr="10.0.0.1", world_size=2)),
    ([SCRIPT], dict(echo=True, master_port=None, master_addr="127.0.0.1", max_restarts=0, timeout=300.0)),
    (["--log-dir", "logs", SCRIPT], dict(echo=False, log_dir="logs")),
    (["--log-dir", "logs", "--tee", SCRIPT], dict(echo=True)),
    (["--quiet", SCRIPT], dict(echo=False)),
])
def test_good_command_lines(argv, expected):
    cfg = parse_args(argv)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_help_reads_like_torchrun(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for expected in ["usage: python -m launcher [options] script.py [script args]", "-m module [module args]",
                     "--workers N, --nproc-per-node N", "--nnodes M", "--node-rank R", "--master-addr A",
                     "--master-port P", "--max-restarts K", "--log-dir D", "--tee", "--quiet", "--timeout S",
                     "--monitor-interval S", "DISTNN_JOB_TOKEN", "DISTNN_TIMEOUT", "OMP_NUM_THREADS",
                     "DISTNN_RESTART_COUNT", "exit status", "130 Ctrl-C"]:
        assert expected in text, expected


def test_launcher_imports_only_the_standard_library():
    code = ("import json, sys; before = set(sys.modules); import launcher.__main__, launcher._bootstrap; "
            "print(json.dumps(sorted(m for m in set(sys.modules) - before "
            "if m.split('.')[0] not in sys.stdlib_module_names)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    outside = [m for m in json.loads(result.stdout) if m != "launcher" and not m.startswith("launcher.")]
    assert outside == [], f"the launcher imported {outside}"


def test_no_arguments_from_the_shell():
    result = subprocess.run([sys.executable, "-m", "launcher"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "python -m launcher: error: Expect: a script to run (or -m module), Actual: none" in result.stderr
