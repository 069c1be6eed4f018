"""One attempt's workers on this node: start them (each through the bootstrap,
in its own process group), notice failures as they happen, and stop every
process they leave behind, however it tried to escape.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from . import process_tree
from .worker_env import worker_env

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap.py")
_POLL = 0.02  # seconds between checks while stopping


@dataclass
class WorkerFailure:
    """A worker that failed on its own (not one the launcher stopped); JSON-able for the node channel."""
    rank: int
    local_rank: int
    node_rank: int
    pid: int
    returncode: int  # negative: killed by that signal
    time: float  # wall-clock seconds, comparable across the ranks of one node
    error: dict | None = None  # the bootstrap's error file: exc_type, message, traceback
    stderr_tail: list = field(default_factory=list)
    frozen_state: str | None = None  # "T" or "t": found stopped, not exited, when the launcher stopped the group

    @property
    def exit_description(self):
        if self.frozen_state is not None:
            how = ("SIGSTOP or another stop signal, state T" if self.frozen_state == "T"
                   else "by a tracer such as a debugger, state t")
            return f"stopped ({how}) and made no progress"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = "unknown signal"
            return f"killed by signal {name} ({-self.returncode})"
        return f"exit code {self.returncode}"

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, record):
        return cls(**record)


class _Worker:
    """One worker process. Its exit is noticed with waitid(WNOWAIT), which leaves
    it unreaped: while it is a zombie its pid cannot be reused, so signalling
    its process group (pgid == its pid) can never hit a stranger. It is reaped
    as soon as nothing else is left in its group (an empty group can never be
    joined again, so it is never signalled again): peers that check whether
    it is alive then see it gone at once."""

    def __init__(self, local_rank, rank, process, error_file):
        self.local_rank = local_rank
        self.rank = rank
        self.process = process
        self.pid = process.pid
        self.error_file = error_file
        self.returncode = None  # negative: killed by that signal
        self.exit_time = None
        self.reaped = False

    def check_exit(self):
        """True once the worker has exited (it stays unreaped)."""
        if self.returncode is None:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
                self.returncode = self.process.wait()
            if info is not None:
                self.returncode = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
            if self.returncode is not None:
                self.exit_time = time.time()
        return self.returncode is not None


class WorkerGroup:
    """The local workers of one attempt."""

    def __init__(self, cfg, restart_count, master_port, token, *, launch_id, pump, run_dir, run_id, runtime_dir):
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.run_id = run_id
        self.restart_count = restart_count
        self.master_port = master_port
        self.token = token
        self.launch_id = launch_id
        self.pump = pump
        self.attempt_dir = os.path.join(run_dir, f"attempt_{restart_count}")
        self.workers = []
        self.stopping = False
        self._failed = []  # _Workers that failed before any stop began, in the order seen
        self._frozen = {}  # _Worker -> (state, time): stopped (SIGSTOP, a debugger) when the stop began

    def start(self):
        """Spawn every local worker, from the main thread: PR_SET_PDEATHSIG is
        tied to the thread that forked, and only the main thread lives as long
        as the launcher."""
        cmd = [sys.executable, BOOTSTRAP, *(["-m"] if self.cfg.module else []), self.cfg.target, *self.cfg.args]
        for local_rank in range(self.cfg.workers):
            rank = self.cfg.node_rank * self.cfg.workers + local_rank
            rank_dir = os.path.join(self.attempt_dir, f"rank_{rank}")
            os.makedirs(rank_dir, exist_ok=True)
            error_file = os.path.join(rank_dir, "error.json")
            env = worker_env(os.environ, self.cfg, local_rank, restart_count=self.restart_count,
                             master_port=self.master_port, token=self.token, error_file=error_file,
                             launch_id=self.launch_id, launcher_pid=os.getpid(), run_id=self.run_id,
                             runtime_dir=self.runtime_dir)
            process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
            self.workers.append(_Worker(local_rank, rank, process, error_file))
            logs = self.cfg.log_dir is not None
            self.pump.add(rank, process.stdout, "stdout", os.path.join(rank_dir, "stdout.log") if logs else None)
            self.pump.add(rank, process.stderr, "stderr", os.path.join(rank_dir, "stderr.log") if logs else None)

    def poll(self):
        """(workers that newly failed, whether every worker has exited with 0)."""
        newly_failed = []
        for worker in self.workers:
            if worker.exit_time is None and worker.check_exit() and worker.returncode != 0 and not self.stopping:
                self._failed.append(worker)
                newly_failed.append(worker)
        self._reap_finished()
        done = all(w.check_exit() and w.returncode == 0 for w in self.workers)
        return newly_failed, done

    def _reap_finished(self):
        """Reap exited workers whose process group has nobody else left in it."""
        waiting = [w for w in self.workers if not w.reaped and w.check_exit()]
        if not waiting:
            return
        table = process_tree.processes()
        busy = {proc.pgid for pid, proc in table.items() if proc.state != "Z"}
        for worker in waiting:
            if worker.pid not in busy:
                worker.process.wait()
                worker.reaped = True

    def running_ranks(self):
        return [w.rank for w in self.workers if not w.check_exit()]

    def stop(self, signum=signal.SIGTERM, grace=None, hurry=lambda: False):
        """Send ``signum`` to every worker's process group and every process
        carrying our marker; SIGKILL whatever is left after ``grace`` seconds
        (or at once when ``hurry()`` turns true), orphans reparented to us
        included; return once all of it is gone, with the workers reaped.
        Returns the ranks that were still running when the stop began."""
        self.poll()  # a failure that raced the stop is still a failure
        self.stopping = True
        grace = self.cfg.grace_period if grace is None else grace
        stopped = self.running_ranks()
        table = process_tree.processes()
        self._note_frozen(table)
        self._signal_all(signum, table, orphans=False)
        self._continue_groups()
        deadline = time.monotonic() + grace
        while self._leftovers() and time.monotonic() < deadline and not hurry():
            time.sleep(_POLL)
        for _ in range(250):  # SIGKILL rounds: a killed process's children become our orphans
            table = self._leftovers()
            if not table:
                break
            self._signal_all(signal.SIGKILL, table, orphans=True)
            time.sleep(_POLL)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=5)  # everything is gone: reap the rest
                worker.reaped = True
            except subprocess.TimeoutExpired:
                pass  # unkillable (stuck in the kernel): never hang the launcher on it
        return stopped

    def _note_frozen(self, table):
        """Remember the running workers that are stopped (/proc state T or t in the snapshot
        ``table``): while the others time out waiting, such a worker is what they wait on, and
        it never fails by itself."""
        for worker in self.workers:
            proc = table.get(worker.pid)
            if not worker.check_exit() and proc is not None and proc.state in ("T", "t"):
                self._frozen[worker] = (proc.state, time.time())

    def _continue_groups(self):
        """SIGCONT every worker's group: a stopped process acts on a SIGTERM only once continued."""
        for worker in self.workers:
            if not worker.reaped:
                process_tree.signal_group(worker.pid, signal.SIGCONT)

    def _signal_all(self, signum, table, orphans):
        for worker in self.workers:
            if not worker.reaped:  # a reaped worker's pid may belong to a stranger by now
                process_tree.signal_group(worker.pid, signum)
        for pid in process_tree.marked(self.launch_id, table):
            process_tree.signal_if(pid, signum, lambda p: process_tree.has_marker(p, self.launch_id))
        if orphans:
            for pid in process_tree.children(table, exclude=self._pids()):
                process_tree.signal_if(pid, signum, process_tree.is_child)

    def _pids(self):
        return {w.pid for w in self.workers}

    def _leftovers(self):
        """A fresh process snapshot if anything of this group still runs, else None."""
        table = process_tree.processes()
        process_tree.reap_zombie_children(table, exclude=self._pids())
        if not all(w.check_exit() for w in self.workers):
            return table
        pgids = {w.pid for w in self.workers if not w.reaped}
        if any(proc.pgid in pgids and proc.state != "Z" for proc in table.values()):
            return table
        if process_tree.children(table, exclude=self._pids()) or process_tree.marked(self.launch_id, table):
            return table
        return None

    def failures(self):
        """The failures seen before any stop, and the workers found stopped (frozen) when it
        began, with their error files and stderr tails (call after ``stop``, when every pipe
        has reached end of file)."""
        self.pump.wait_closed([w.rank for w in [*self._failed, *self._frozen]], timeout=2.0)
        reports = []
        for worker in [*self._failed, *self._frozen]:
            error = _read_error_file(worker.error_file)
            state, when = self._frozen.get(worker, (None, worker.exit_time))
            if error is not None and isinstance(error.get("timestamp"), (int, float)):
                when = min(when, error["timestamp"])
            reports.append(WorkerFailure(rank=worker.rank, local_rank=worker.local_rank,
                                         node_rank=self.cfg.node_rank, pid=worker.pid,
                                         returncode=worker.returncode, time=when, error=error,
                                         stderr_tail=self.pump.tail(worker.rank, "stderr"), frozen_state=state))
        return sorted(reports, key=lambda f: f.time)


def _read_error_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
