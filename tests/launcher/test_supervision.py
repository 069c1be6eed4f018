"""``python -m launcher`` on one node, end to end: output, the environment
contract, failures and their summary, signals, restarts, and no process ever
left behind (each test's ``launch`` fixture also checks that last point)."""

import json
import os
import re
import signal
import socket
import time

import pytest

from multiproc import free_port, read_pid_files, wait_for_files, wait_gone
from launcher.worker_env import threads_per_worker

BEHAVE = "tests/launcher/workers/behave.py"


def envs(pid_dir, restart=0):
    return {int(p.name.split("_")[1]): json.loads(p.read_text())
            for p in sorted(pid_dir.glob(f"env_*_{restart}.json"))}


def test_all_ranks_succeed_with_prefixed_output(launch, tmp_path):
    result = launch.run("--workers", 4, BEHAVE, "--pid-dir", tmp_path)
    assert result.returncode == 0, result
    out, err = result.stdout.splitlines(), result.stderr.splitlines()
    for rank in range(4):
        assert f"[rank {rank}] hello from rank {rank}" in out
        assert f"[rank {rank}] note from rank {rank}" in err
    assert all(line.startswith("[rank ") for line in out + err), result
    assert len(out) == len(err) == 4
    assert wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0.5) == []


def test_an_exited_worker_is_reaped_at_once(launch, tmp_path):
    """So that peers checking whether it is alive (as distnn.distributed does) see it gone."""
    result = launch.run("--workers", 3, BEHAVE, "--pid-dir", tmp_path, "--watch-rank", 1)
    assert result.returncode == 0, result
    assert "[rank 0] rank 0 saw rank 1 gone" in result.stdout and "[rank 2] rank 2 saw rank 1 gone" in result.stdout


def test_worker_environment_contract(launch, tmp_path):
    result = launch.run("--workers", 3, BEHAVE, "--pid-dir", tmp_path)
    assert result.returncode == 0, result
    seen = envs(tmp_path)
    assert sorted(seen) == [0, 1, 2]
    for rank, env in seen.items():
        assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["LOCAL_WORLD_SIZE"], env["GROUP_RANK"]) == \
            (str(rank), str(rank), "3", "3", "0")
        assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == str(threads_per_worker(3))
        assert (env["MASTER_ADDR"], env["DISTNN_TIMEOUT"], env["DISTNN_RESTART_COUNT"]) == ("127.0.0.1", "300", "0")
    assert len({env["MASTER_PORT"] for env in seen.values()}) == 1
    token = seen[0]["DISTNN_JOB_TOKEN"]
    assert {env["DISTNN_JOB_TOKEN"] for env in seen.values()} == {token}
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert token not in result.stdout + result.stderr


def test_user_settings_win(launch, tmp_path):
    result = launch.run("--workers", 2, BEHAVE, "--pid-dir", tmp_path,
                        env={"OMP_NUM_THREADS": "3", "DISTNN_JOB_TOKEN": "my-token"})
    assert result.returncode == 0, result
    for env in envs(tmp_path).values():
        assert (env["OMP_NUM_THREADS"], env["DISTNN_JOB_TOKEN"]) == ("3", "my-token")
        assert env["MKL_NUM_THREADS"] == str(threads_per_worker(2))


@pytest.mark.parametrize("flags, rank, exit_text, error_lines", [
    (["--fail-rank", "2"], 2, "exit code 1",
     ["error: ValueError: boom on rank 2", 'raise ValueError(f"boom on rank {rank}")', "ValueError: boom on rank 2"]),
    (["--kill-rank", "1"], 1, "killed by signal SIGKILL (9)", ["last 1 line of its stderr:", "    note from rank 1"]),
    (["--exit-rank", "3", "--exit-code", "7"], 3, "exit code 7",
     ["last 1 line of its stderr:", "    note from rank 3"]),
])
def test_first_failure_stops_the_rest_and_is_named(launch, tmp_path, flags, rank, exit_text, error_lines):
    result = launch.run("--workers", 4, BEHAVE, "--pid-dir", tmp_path, "--sleep", 60, *flags)
    assert result.returncode == 1, result
    assert result.elapsed < 5, result
    assert re.search(rf"^root cause: rank {rank} \(node 0, local rank {rank}, pid \d+\): {re.escape(exit_text)}$",
                     result.stderr, re.M), result
    for line in error_lines:
        assert line in result.stderr, result
    others = ", ".join(str(r) for r in range(4) if r != rank)
    assert f"stopped by the launcher: ranks {others}" in result.stderr
    assert wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0.5) == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_to_the_launcher_stops_every_worker(launch, tmp_path, signum, status):
    proc = launch.start("--workers", 3, BEHAVE, "--pid-dir", tmp_path, "--sleep", 60)
    wait_for_files(tmp_path, "ready_*", 3)
    proc.send_signal(signum)
    result = launch.finish(proc, timeout=10)
    assert result.returncode == status, result
    assert f"interrupted by {signal.Signals(signum).name}; all workers stopped" in result.stderr
    assert wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0.2) == []


@pytest.mark.parametrize("second_signal, grace", [(False, 0.5), (True, 60)])
def test_workers_that_ignore_the_signal_are_killed(launch, tmp_path, second_signal, grace):
    """After the grace period, or at once on a second Ctrl-C."""
    proc = launch.start("--workers", 2, "--grace-period", grace, BEHAVE, "--pid-dir", tmp_path, "--sleep", 60,
                        "--ignore-signals")
    wait_for_files(tmp_path, "ready_*", 2)
    proc.send_signal(signal.SIGINT)
    if second_signal:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
    result = launch.finish(proc, timeout=10)
    assert result.returncode == 130, result
    assert result.elapsed < 5, result
    assert wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0.2) == []


def test_sigkill_to_the_launcher_takes_workers_and_grandchildren_down(launch, tmp_path):
    proc = launch.start("--workers", 2, BEHAVE, "--pid-dir", tmp_path, "--sleep", 60, "--grandchildren")
    wait_for_files(tmp_path, "ready_*", 2)
    workers = read_pid_files(tmp_path, "worker_*.pid")
    grandchildren = read_pid_files(tmp_path, "grandchild_*.pid")
    assert len(grandchildren) == 6
    proc.kill()
    launch.finish(proc, timeout=5)
    assert wait_gone(workers, 2.0) == []
    assert wait_gone(grandchildren, 2.0) == []


@pytest.mark.parametrize("flags, status", [(["--fail-rank", "0"], 1), ([], 0)])
def test_grandchildren_that_ignore_sigterm_are_gone_when_the_launcher_exits(launch, tmp_path, flags, status):
    result = launch.run("--workers", 2, "--grace-period", 0.3, BEHAVE, "--pid-dir", tmp_path, "--grandchildren",
                        "--sleep", 60 if flags else 0, *flags)
    assert result.returncode == status, result
    grandchildren = read_pid_files(tmp_path, "grandchild_*.pid")
    assert len(grandchildren) == 6
    assert wait_gone(grandchildren + read_pid_files(tmp_path, "worker_*.pid"), 0.1) == []


def test_restart_recovers_from_a_first_attempt_failure(launch, tmp_path):
    result = launch.run("--workers", 2, "--max-restarts", 2, BEHAVE, "--pid-dir", tmp_path, "--fail-first-attempt")
    assert result.returncode == 0, result
    assert "[launcher] rank 1 failed (exit code 1); restarting all workers (restart 1 of 2)" in result.stderr
    first, second = envs(tmp_path, 0), envs(tmp_path, 1)
    assert not list(tmp_path.glob("env_*_2.json"))
    assert {e["DISTNN_RESTART_COUNT"] for e in second.values()} == {"1"}
    assert {e["DISTNN_MAX_RESTARTS"] for e in second.values()} == {"2"}
    assert first[0]["DISTNN_JOB_TOKEN"] != second[0]["DISTNN_JOB_TOKEN"]
    assert first[0]["MASTER_PORT"] != second[0]["MASTER_PORT"]


def test_restarts_exhausted_summarise_every_attempt(launch, tmp_path):
    result = launch.run("--workers", 2, "--max-restarts", 2, BEHAVE, "--pid-dir", tmp_path, "--fail-rank", 1,
                        "--sleep", 60)
    assert result.returncode == 1, result
    assert "distnn launcher: job failed after 3 attempts (--max-restarts 2)" in result.stderr
    for attempt in range(3):
        assert f"--- attempt {attempt} (DISTNN_RESTART_COUNT={attempt}) ---" in result.stderr
    assert result.stderr.count("root cause: rank 1 ") == 3
    assert [sorted(envs(tmp_path, a)) for a in range(3)] == [[0, 1]] * 3


def test_two_launchers_at_once_do_not_collide(launch, tmp_path):
    dirs = [tmp_path / str(i) for i in range(3)]
    procs = []
    for d in dirs:
        d.mkdir()
        procs.append(launch.start("--workers", 2, BEHAVE, "--pid-dir", d, "--meet"))
    results = [launch.finish(p) for p in procs]
    assert [r.returncode for r in results] == [0, 0, 0], "\n".join(map(str, results))
    ports = {envs(d)[0]["MASTER_PORT"] for d in dirs}
    assert len(ports) == 3


@pytest.mark.parametrize("flags, console", [([], False), (["--tee"], True)])
def test_log_dir_keeps_each_ranks_output(launch, tmp_path, flags, console):
    logs = tmp_path / "logs"
    result = launch.run("--workers", 2, "--log-dir", logs, *flags, BEHAVE, "--pid-dir", tmp_path)
    assert result.returncode == 0, result
    for rank in range(2):
        assert (logs / "attempt_0" / f"rank_{rank}" / "stdout.log").read_text() == f"hello from rank {rank}\n"
        assert (logs / "attempt_0" / f"rank_{rank}" / "stderr.log").read_text() == f"note from rank {rank}\n"
        assert (f"[rank {rank}] hello from rank {rank}" in result.stdout) == console


def test_quiet_still_prints_the_summary(launch, tmp_path):
    result = launch.run("--quiet", "--workers", 2, BEHAVE, "--pid-dir", tmp_path, "--fail-rank", 1, "--sleep", 60)
    assert result.returncode == 1
    assert result.stdout == "" and "[rank " not in result.stderr
    assert "root cause: rank 1" in result.stderr and "ValueError: boom on rank 1" in result.stderr


def test_lines_are_never_interleaved(launch, tmp_path):
    result = launch.run("--workers", 4, BEHAVE, "--pid-dir", tmp_path, "--lines", 150, "--width", 3000)
    assert result.returncode == 0
    for stream, text in (("out", result.stdout), ("err", result.stderr)):
        counts = {}
        for line in text.splitlines():
            match = re.fullmatch(rf"\[rank (\d)\] {stream} \1 \d+ (\d)+", line)
            if match is None:
                assert re.fullmatch(r"\[rank \d\] (hello|note) from rank \d", line), line[:200]
                continue
            assert line.endswith(match.group(1) * 3000)
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        assert counts == {str(r): 150 for r in range(4)}


def test_module_mode(launch, tmp_path):
    result = launch.run("--workers", 2, "-m", "behave", "--pid-dir", tmp_path,
                        cwd=os.path.join(os.path.dirname(__file__), "workers"))
    assert result.returncode == 0, result
    assert "[rank 1] hello from rank 1" in result.stdout


def test_fixed_master_port_in_use_is_refused(launch, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = launch.run("--workers", 2, "--master-port", port, BEHAVE, "--pid-dir", tmp_path)
    assert result.returncode == 1
    assert f"[launcher] error: Expect: --master-port {port} free on this host, Actual: Address already in use" \
        in result.stderr
    assert not list(tmp_path.glob("worker_*"))


def test_fixed_master_port_is_what_workers_get(launch, tmp_path):
    port = free_port()
    result = launch.run("--workers", 2, "--master-port", port, BEHAVE, "--pid-dir", tmp_path, "--meet")
    assert result.returncode == 0, result
    assert {e["MASTER_PORT"] for e in envs(tmp_path).values()} == {str(port)}
