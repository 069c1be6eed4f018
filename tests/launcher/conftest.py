"""Fixtures for launcher tests: ``launch`` starts ``python -m launcher`` (through
tests/multiproc.py, so the launcher itself is never left behind) with a tag in
its environment that every process it starts inherits; after the test, any
tagged process still alive fails the test (and is killed)."""

import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass

import pytest

from multiproc import REPO, free_port, kill_tree, processes_with_env, start

TAG = "DISTNN_LAUNCHER_TEST_TAG"
BEHAVE = "tests/launcher/workers/behave.py"
_SCRUBBED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "DISTNN_JOB_TOKEN", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED")


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    def __str__(self):
        return f"exit {self.returncode} after {self.elapsed:.1f}s\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Launch:
    """Starts launchers for one test and remembers them."""

    def __init__(self, tag):
        self.tag = tag
        self.procs = []

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **{TAG: self.tag})
        env.update(extra or {})
        return env

    def start(self, *args, env=None, cwd=REPO, prefix=()):
        proc = start([*prefix, sys.executable, "-m", "launcher", *map(str, args)], self.env(env), cwd=cwd)
        proc.started = time.monotonic()
        self.procs.append(proc)
        return proc

    @staticmethod
    def finish(proc, timeout=30.0):
        try:
            out, err = proc.communicate(timeout=timeout)
        except Exception:
            kill_tree(proc, grace=0.5)
            out, err = proc.communicate()
            pytest.fail(f"the launcher did not finish within {timeout}s\n{out}\n{err}")
        return Finished(proc.returncode, out, err, time.monotonic() - proc.started)

    def run(self, *args, timeout=30.0, **kwargs):
        return self.finish(self.start(*args, **kwargs), timeout)

    def start_nodes(self, tmp_path, nnodes, flags=(), worker_flags=(), nodes=None, port=None, env=None):
        """One launcher of workers/behave.py per node rank (``nodes``: which ranks to start; all by
        default), ``env[node]`` added to that node's environment; their processes and pid dirs."""
        port = port or free_port()
        procs, dirs = {}, {}
        for node in (range(nnodes) if nodes is None else nodes):
            dirs[node] = tmp_path / f"node{node}"
            dirs[node].mkdir(exist_ok=True)
            procs[node] = self.start("--nnodes", nnodes, "--node-rank", node, "--master-port", port, *flags,
                                     BEHAVE, "--pid-dir", dirs[node], *worker_flags, env=(env or {}).get(node))
        return procs, dirs


@pytest.fixture
def launch():
    launcher = Launch(uuid.uuid4().hex)
    yield launcher
    for proc in launcher.procs:
        if proc.poll() is None:
            kill_tree(proc, grace=0.5)
    left = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        left = processes_with_env(TAG, launcher.tag)
        if not left:
            break
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind by the test: {left}"
