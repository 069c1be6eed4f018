"""Nothing of a job outlives its launcher, whichever launcher process dies and
however it ends: no process (not even a grandchild in its own session with an
empty environment), no temp folder, no runtime dir, no job cgroup.

Every test gives the launcher its own ``TMPDIR``, so the folders it leaves
(or not) are told apart from those of launchers other tests run meanwhile."""

import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from launcher import process_tree, workspace
from multiproc import read_pid_files, wait_for_files, wait_gone

BEHAVE = "tests/launcher/workers/behave.py"
SCRUBBED = "grandchild_*_scrubbed.pid"


def launcher_dirs(tmpdir):
    return sorted(p for p in os.listdir(tmpdir) if p.startswith("distnn-launcher-"))


def job_cgroups(name):
    """Cgroup folders named after the job's temp folder, in every mounted hierarchy."""
    return glob.glob(f"/sys/fs/cgroup/**/{name}", recursive=True)


def parent_of(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def tmpdir_env():
    """A TMPDIR for the launcher, short like /tmp (an ipc socket's path has at most 107 bytes)."""
    tmpdir = Path(tempfile.mkdtemp(prefix="dl-", dir="/tmp"))
    yield tmpdir, {"TMPDIR": str(tmpdir)}
    workspace.sweep(str(tmpdir))  # after a failed test: the job cgroup of launchers it killed outright
    shutil.rmtree(tmpdir, ignore_errors=True)


def start_job(launch, tmp_path, env, *flags):
    """A 2-worker job whose every worker leaves SIGTERM-ignoring grandchildren, one of
    them in its own session with an empty environment; (launcher, processes of the job)."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    proc = launch.start("--workers", 2, *flags, BEHAVE, "--pid-dir", pid_dir, "--sleep", 60, "--grandchildren",
                        env=env)
    wait_for_files(pid_dir, "ready_*", 2)
    job = read_pid_files(pid_dir, "worker_*.pid") + read_pid_files(pid_dir, "grandchild_*.pid")
    assert len(job) == 8 and len(read_pid_files(pid_dir, SCRUBBED)) == 2
    return proc, job


def cgroup_env(kind):
    """The environment that makes the launcher use cgroups of ``kind``; skips where they do not work here."""
    from launcher import cgroup
    if kind not in ("auto", "none"):
        probe = cgroup.JobCgroup.create(f"distnn-launcher-probe-{os.getpid()}", kinds=(kind,))
        if probe is None:
            pytest.skip(f"no writable {kind} cgroup here")
        probe.remove()
    return {"DISTNN_LAUNCHER_CGROUP": kind}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["auto", "v1-freezer"])
@pytest.mark.parametrize("victims", [("supervisor",), ("front", "supervisor"), ("front",)])
def test_sigkill_of_launcher_processes_leaves_nothing(launch, tmp_path, tmpdir_env, victims, kind):
    tmpdir, env = tmpdir_env
    proc, job = start_job(launch, tmp_path, {**env, **cgroup_env(kind)})
    [name] = launcher_dirs(tmpdir)
    pids = {"front": proc.pid, "supervisor": parent_of(job[0])}
    for victim in victims:
        os.kill(pids[victim], signal.SIGKILL)
    launch.finish(proc, timeout=10)
    assert wait_gone(job, 5.0) == [], f"left running after SIGKILL of the {' and '.join(victims)}"
    assert wait_until(lambda: not launcher_dirs(tmpdir), 5.0), launcher_dirs(tmpdir)
    assert wait_until(lambda: not job_cgroups(name), 5.0), job_cgroups(name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["success", "failure", "SIGTERM", "log-dir"])
def test_every_ending_removes_the_temp_dir(launch, tmp_path, tmpdir_env, ending):
    tmpdir, env = tmpdir_env
    flags = {"failure": ["--fail-rank", "1", "--sleep", "60"], "log-dir": ["--fail-rank", "0", "--sleep", "60"]}
    launcher_flags = ["--log-dir", tmp_path / "logs"] if ending == "log-dir" else []
    proc = launch.start("--workers", 2, *launcher_flags, BEHAVE, "--pid-dir", tmp_path,
                        *flags.get(ending, ["--sleep", 60 if ending == "SIGTERM" else 0]), env=env)
    if ending == "SIGTERM":
        wait_for_files(tmp_path, "ready_*", 2)
        proc.send_signal(signal.SIGTERM)
    result = launch.finish(proc, timeout=20)
    assert result.returncode == {"success": 0, "SIGTERM": 143}.get(ending, 1), result
    assert launcher_dirs(tmpdir) == []
    if ending == "log-dir":
        assert (tmp_path / "logs" / "attempt_0" / "rank_0" / "error.json").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("log_dir", [False, True])
def test_workers_get_a_private_runtime_dir_removed_with_the_job(launch, tmp_path, tmpdir_env, log_dir):
    """Where distnn.distributed puts its ipc sockets: inside the launcher's temp folder
    (even with --log-dir), so that they go whichever launcher process dies."""
    tmpdir, env = tmpdir_env
    proc, job = start_job(launch, tmp_path, env, *(["--log-dir", tmp_path / "logs"] if log_dir else []))
    [name] = launcher_dirs(tmpdir)
    seen = [json.loads(p.read_text())["DISTNN_RUNTIME_DIR"] for p in sorted((tmp_path / "pids").glob("env_*"))]
    runtime_dir = seen[0]
    assert seen == [runtime_dir] * 2
    assert os.path.dirname(runtime_dir) == str(tmpdir / name)
    assert os.stat(runtime_dir).st_mode & 0o777 == 0o700
    assert os.stat(tmpdir / name).st_mode & 0o777 == 0o700
    with socket.socket(socket.AF_UNIX) as sock:  # what a rank's ipc endpoint leaves there
        sock.bind(os.path.join(runtime_dir, "rank0.sock"))
        os.kill(parent_of(job[0]), signal.SIGKILL)
        launch.finish(proc, timeout=10)
    assert not os.path.exists(runtime_dir)
    assert wait_gone(job, 5.0) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["v2", "v1-freezer"])
def test_workers_run_in_the_job_cgroup_where_cgroups_work(launch, tmp_path, tmpdir_env, kind):
    """The net that catches what escaped every other one, once the supervisor is gone."""
    tmpdir, env = tmpdir_env
    proc, job = start_job(launch, tmp_path, {**env, **cgroup_env(kind)})
    [name] = launcher_dirs(tmpdir)
    with open(f"/proc/{job[-1]}/cgroup") as f:  # a grandchild in its own session, with an empty environment
        memberships = f.read().splitlines()
    hierarchy = "0::" if kind == "v2" else "freezer:"
    assert any(hierarchy in line and line.endswith(f"/{name}") for line in memberships), memberships
    proc.send_signal(signal.SIGTERM)
    assert launch.finish(proc, timeout=20).returncode == 143
    assert job_cgroups(name) == []


@pytest.mark.timeout(60)
def test_without_cgroups_the_other_nets_still_catch_every_marked_process(launch, tmp_path, tmpdir_env):
    """The fallback (no cgroups mounted, none writable): the supervisor SIGKILLed, the
    front kills everything that carries the job's marker; only a process that left
    the session, the environment and the subreaper's reach all at once survives."""
    tmpdir, env = tmpdir_env
    proc, job = start_job(launch, tmp_path, {**env, **cgroup_env("none")})
    scrubbed = read_pid_files(tmp_path / "pids", SCRUBBED)
    try:
        os.kill(parent_of(job[0]), signal.SIGKILL)
        result = launch.finish(proc, timeout=10)
        assert result.returncode == 137 and re.search(r"SIGKILLed \d+ process\(es\) of the job", result.stderr), result
        assert wait_gone([pid for pid in job if pid not in scrubbed], 5.0) == []
        assert launcher_dirs(tmpdir) == []
    finally:
        for pid in wait_gone(scrubbed, 0.0):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_a_later_launcher_sweeps_what_launchers_killed_outright_left(launch, tmp_path, tmpdir_env):
    """All three launcher processes SIGKILLed at once (front, supervisor and the
    watchdog that outlives both): nobody of that job is left to act, so the next
    launcher started with the same temp folder kills its remains and removes them."""
    tmpdir, env = tmpdir_env
    proc, job = start_job(launch, tmp_path, env)
    [name] = launcher_dirs(tmpdir)
    launcher_processes = [proc.pid, *children_of(proc.pid)]
    assert len(launcher_processes) == 3, "front, supervisor, watchdog"
    for signum in (signal.SIGSTOP, signal.SIGKILL):  # stopped first, so none of them can act on the others' end
        for pid in launcher_processes:
            os.kill(pid, signum)
    launch.finish(proc, timeout=10)
    scrubbed = read_pid_files(tmp_path / "pids", SCRUBBED)
    assert wait_gone(scrubbed, 0.5) == scrubbed  # out of every net but the cgroup
    result = launch.run("--workers", 1, BEHAVE, "--pid-dir", tmp_path, env=env)
    assert result.returncode == 0, result
    assert wait_gone(job, 5.0) == []
    assert launcher_dirs(tmpdir) == [] and job_cgroups(name) == []


@pytest.mark.timeout(60)
def test_the_sweep_spares_live_locked_and_foreign_folders(launch, tmp_path, tmpdir_env):
    """A folder is swept only when its front pid is gone, nobody holds its lock
    (a launcher process of that job still running does) and it is this user's."""
    tmpdir, env = tmpdir_env
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    zombie = subprocess.Popen([sys.executable, "-c", ""])  # exited, not yet reaped: gone too
    while process_tree.is_running(zombie.pid):
        time.sleep(0.01)
    alive = tmpdir / f"distnn-launcher-{os.getpid()}-alive123"
    locked = tmpdir / f"distnn-launcher-{dead.pid}-locked12"
    stale = [tmpdir / f"distnn-launcher-{pid}-stale123" for pid in (dead.pid, zombie.pid)]
    unrelated = tmpdir / "distnn-launcher-notapid"
    for path in (alive, locked, *stale, unrelated):
        path.mkdir(mode=0o700)
    foreign = []
    if os.getuid() == 0:
        foreign.append(tmpdir / f"distnn-launcher-{dead.pid}-nobody12")
        foreign[0].mkdir(mode=0o700)
        os.chown(foreign[0], 65534, 65534)
    lock = os.open(locked, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = launch.run("--workers", 1, BEHAVE, "--pid-dir", tmp_path, env=env)
    finally:
        os.close(lock)
        zombie.wait()
    assert result.returncode == 0, result
    assert launcher_dirs(tmpdir) == sorted(p.name for p in (alive, locked, unrelated, *foreign))
