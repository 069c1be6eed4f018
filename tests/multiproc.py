"""The one helper every multiprocess test uses: start N rank processes (or any
command) in their own sessions, enforce a timeout, and always kill whatever is
left, grandchildren included.

    results = run_ranks("tests/distributed/workers/collectives.py", world_size=3, timeout=60)
    assert all(r.returncode == 0 for r in results), format_results(results)
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RankResult:
    rank: int
    returncode: int
    stdout: str
    stderr: str


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank, world_size, port, token="test-token", extra=None):
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
               LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               DISTNN_JOB_TOKEN=token, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def start(cmd, env, cwd=REPO):
    """A process in its own session (so the whole tree can be killed at once)."""
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def kill_tree(proc, grace=2.0):
    """SIGTERM the process's session, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def session_alive(pid):
    """True while any process of session/group ``pid`` exists."""
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def run_ranks(script, world_size, args=(), timeout=60.0, env=None, per_rank_env=None, token="test-token",
              port=None):
    """Run ``python script *args`` as ranks 0..world_size-1; returns their RankResults.

    Never leaves a process behind: on timeout (or any error) every rank's
    session is killed, and the timeout is reported as a failure.
    """
    port = port or free_port()
    procs = []
    try:
        for rank in range(world_size):
            extra = dict(env or {})
            extra.update((per_rank_env or {}).get(rank, {}))
            procs.append(start([sys.executable, str(REPO / script), *map(str, args)],
                               rank_env(rank, world_size, port, token, extra)))
        deadline = time.monotonic() + timeout
        outputs = []
        for rank, proc in enumerate(procs):
            try:
                out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for p in procs:
                    kill_tree(p, grace=0.5)
                out, err = proc.communicate()
                err += f"\n[multiproc] rank {rank} killed after the {timeout:.0f}s test timeout"
                proc.returncode = -9 if proc.returncode in (None, 0) else proc.returncode
            outputs.append(RankResult(rank, proc.returncode, out, err))
        return outputs
    finally:
        for p in procs:
            if p.poll() is None or session_alive(p.pid):
                kill_tree(p, grace=0.5)


def format_results(results):
    return "\n".join(f"--- rank {r.rank} (exit {r.returncode})\n{r.stdout}\n{r.stderr}" for r in results)
