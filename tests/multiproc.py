"""The one helper every multiprocess test uses: start N rank processes (or any
command) in their own sessions, enforce a timeout, and always kill whatever is
left, grandchildren included.

    results = run_ranks("tests/distributed/workers/collectives.py", world_size=3, timeout=60)
    assert all(r.returncode == 0 for r in results), format_results(results)
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
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
    elapsed: float = None  # seconds from collect() starting to wait until this process was reaped


def free_port():
    """A TCP port free on 127.0.0.1 now. Picked below the kernel's ephemeral range
    (32768+), where outgoing connections and ZeroMQ's random data ports live, so
    nothing else is likely to take it before the rank meant to bind it does."""
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_id(token, port, host="127.0.0.1"):
    """The id distnn derives for a job (it names the ipc folder and shared-memory files)."""
    import hashlib
    return hashlib.sha256(token.encode() + f"{host}:{port}".encode()).digest()[:8].hex()


def shm_files(token, port):
    """Shared-memory region files of a job still present in /dev/shm."""
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    return sorted(name for name in names if name.startswith(f"distnn-{job_id(token, port)}-"))


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


def pid_alive(pid):
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_gone(pids, timeout):
    """Wait up to ``timeout`` seconds for every pid to be gone; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def read_pid_files(directory, pattern):
    """The pids written (one per file) to files matching ``pattern`` in ``directory``."""
    return [int(p.read_text()) for p in sorted(Path(directory).glob(pattern))]


def wait_for_files(directory, pattern, count, timeout=15.0):
    """Wait until ``count`` files match ``pattern`` (a worker's way of saying it is ready)."""
    deadline = time.monotonic() + timeout
    while len(list(Path(directory).glob(pattern))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Expect: {count} files {pattern} in {directory} within {timeout}s, "
                               f"Actual: {len(list(Path(directory).glob(pattern)))}")
        time.sleep(0.02)


def processes_with_env(name, value):
    """Live processes whose environment has ``name=value`` (Linux /proc; the way to find every
    process a test started, however deep or detached, when the test tagged their environment)."""
    marker = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read().split(b"\0") and pid_alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def start_rank(script, rank, world_size, port, args=(), token="test-token", env=None, prefix=()):
    """``python script *args`` as one rank (for tests that start ranks one by one); ``prefix``:
    a command that runs it elsewhere, e.g. on a host of tests/netns.py."""
    return start([*prefix, sys.executable, str(REPO / script), *map(str, args)],
                 rank_env(rank, world_size, port, token, env))


def collect(procs, timeout=60.0, ranks=None):
    """Wait for started processes, reaping each as soon as it exits (as a launcher
    does); returns their RankResults (``ranks`` labels them, 0.. by default). At the
    deadline every process's session is killed and the timeout reported as a
    failure; nothing is ever left running."""
    ranks = list(range(len(procs))) if ranks is None else list(ranks)
    outputs = [None] * len(procs)

    started = time.monotonic()

    def reap(i):
        out, err = procs[i].communicate()
        outputs[i] = RankResult(ranks[i], procs[i].returncode, out, err, time.monotonic() - started)

    threads = [threading.Thread(target=reap, args=(i,), daemon=True) for i in range(len(procs))]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        late = [i for i, t in enumerate(threads) if t.is_alive()]
        for p in procs:
            if late:
                kill_tree(p, grace=0.5)
        for i in late:
            threads[i].join()
            outputs[i].stderr += f"\n[multiproc] rank {ranks[i]} killed after the {timeout:.0f}s test timeout"
            if outputs[i].returncode in (None, 0):
                outputs[i].returncode = -9
        return outputs
    finally:
        for p in procs:
            if p.poll() is None or session_alive(p.pid):
                kill_tree(p, grace=0.5)


def run_ranks(script, world_size, args=(), timeout=60.0, env=None, per_rank_env=None, token="test-token",
              port=None, prefixes=None):
    """Run ``python script *args`` as ranks 0..world_size-1; returns their RankResults.
    ``prefixes[rank]``: the command prefix that starts that rank (see ``start_rank``).

    Never leaves a process behind: on timeout (or any error) every rank's
    session is killed, and the timeout is reported as a failure.
    """
    port = port or free_port()
    procs = []
    try:
        for rank in range(world_size):
            extra = dict(env or {})
            extra.update((per_rank_env or {}).get(rank, {}))
            procs.append(start_rank(script, rank, world_size, port, args, token, extra,
                                    prefixes[rank] if prefixes else ()))
    except BaseException:
        for p in procs:
            kill_tree(p, grace=0.5)
        raise
    return collect(procs, timeout)


def json_lines(text):
    """The JSON objects a worker printed one per line (other lines are skipped)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def check_cases(results, min_cases=1):
    """For workers that print {"case": name, "hash": h} or {"case": name, "fail": why}
    per case: every rank exited 0, ran the same cases, none failed, and every
    non-null hash is the same on every rank (bit-identical results).
    Returns {case: hash} for the caller's own checks."""
    problems, per_rank = [], []
    for r in results:
        cases = {rec["case"]: rec for rec in json_lines(r.stdout) if "case" in rec}
        per_rank.append(cases)
        problems += [f"rank {r.rank} {name}: {rec['fail']}" for name, rec in cases.items() if "fail" in rec]
        if r.returncode != 0 and not problems:
            problems.append(f"rank {r.rank} exited {r.returncode}:\n{r.stderr[-3000:]}")
    names = set(per_rank[0]) if per_rank else set()
    for r, cases in zip(results, per_rank):
        if set(cases) != names:
            problems.append(f"rank {r.rank} ran different cases: {sorted(set(cases) ^ names)[:10]}")
    hashes = {}
    for name in sorted(names):
        seen = {cases[name].get("hash") for cases in per_rank if name in cases}
        if None not in seen and len(seen) > 1:
            problems.append(f"{name}: results differ between ranks (hashes {sorted(seen)})")
        hashes[name] = per_rank[0][name].get("hash")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:25]) + \
        ("\n" + format_results(results)[-4000:] if any("exited" in p for p in problems) else "")
    assert len(names) >= min_cases, f"only {len(names)} cases ran, expected at least {min_cases}"
    return hashes


def format_results(results):
    return "\n".join(f"--- rank {r.rank} (exit {r.returncode})\n{r.stdout}\n{r.stderr}" for r in results)


def reports(results):
    """Each rank's last JSON report (a line with "ok" or "error"), keyed by rank; fails
    naming a rank that printed none."""
    found = {}
    for r in results:
        lines = [rec for rec in json_lines(r.stdout) if "ok" in rec or "error" in rec]
        assert lines, f"rank {r.rank} reported nothing\n{format_results(results)}"
        found[r.rank] = lines[-1]
    return found
