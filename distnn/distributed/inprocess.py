"""In-process worlds for unit tests: every rank is a thread of this process with a
distributed state of its own (``registry.thread_state``), and messages travel
through queues (``InProcessTransport``) with the very headers, checks, process
groups, communication threads and shared-memory staging of a real job. So the
collective algorithms and DDP's bucketing are tested over world size x message
size x dtype x op in milliseconds, without spawning processes.

``run_threads(world_size, fn, hosts=...)`` runs ``fn(rank)`` on every rank and
returns the results in rank order; ``hosts`` puts ranks on pretend hosts (ranks
of one host stage data in shared memory, and a group spanning several hosts
reduces hierarchically), as ``launcher`` runs on real ones would.
"""

import os
import queue
import threading

from . import auth, hierarchical, locality, registry, shm_regions
from .comm_thread import CommThread
from .process_group import ProcessGroup
from .transport import Transport
from .world import World


class _Frame:
    """A received frame as ZeroMQ gives it (``bytes`` and ``buffer``)."""

    __slots__ = ("bytes", "buffer")

    def __init__(self, data):
        self.bytes = self.buffer = data


class _Hub:
    """What the ranks of one in-process job share: an inbox per rank, the job id, and
    and every rank's rendezvous entry."""

    def __init__(self, world_size, hosts):
        self.inboxes = [queue.SimpleQueue() for _ in range(world_size)]
        self.job = os.urandom(8)
        shm_dir, pid_ns = locality.file_id(shm_regions.SHM_DIR), locality.file_id("/proc/self/ns/pid")
        self.members = [{"pid": os.getpid(), "host": f"{locality.host_identity()}#host{hosts[r]}",
                         "shm_dir": shm_dir, "pid_ns": pid_ns, "tcp_only": False, "rank": r, "world": world_size,
                         "shm": shm_regions.available(), "shm_signals": shm_regions.signals_available(),
                         "hierarchical": hierarchical.enabled()}
                        for r in range(world_size)]


class InProcessTransport(Transport):
    """``Transport``'s queues and checks, fed from this rank's inbox instead of a socket."""

    def __init__(self, hub, rank):  # no sockets: Transport's constructor is not called
        self.rank, self.world_size = rank, len(hub.inboxes)
        self.job = hub.job
        self.drops = auth.DropLog(f"rank {rank}: ")
        self._hub = hub
        self._ready = None  # a message taken from the inbox by _poll, not yet received
        self._queues, self._aborted, self._heard, self._peer_pids, self._left = {}, None, {}, {}, set()

    def send(self, dst, header, payload):
        self._hub.inboxes[dst].put((header, b"" if payload is None else payload.tobytes()))
        return None  # copied: nothing to track

    def _notify_all(self, frame):
        for dst, inbox in enumerate(self._hub.inboxes):
            if dst != self.rank:
                inbox.put((frame, b""))

    def _poll(self, timeout_ms):
        if self._ready is None:
            try:
                self._ready = self._hub.inboxes[self.rank].get(timeout=max(timeout_ms, 0) / 1000)
            except queue.Empty:
                return False
        return True

    def _receive(self):
        header, payload = self._ready
        self._ready = None
        return [_Frame(header), _Frame(payload)]

    def leave(self, seconds):
        self._announce_leaving()
        return set()  # the notices are in the peers' inboxes already: nothing lingers

    def check_alive(self, ranks, describe):
        self._raise_if_left(ranks, describe)

    def stopped_peers(self):
        return ""

    def close(self, linger=0, gone=()):
        pass


class InProcessWorld(World):
    """``World`` on an in-process hub: no store, no sockets, the same groups and thread."""

    def __init__(self, hub, rank, timeout):  # no rendezvous: World's constructor is not called
        self.rank, self.size = rank, len(hub.inboxes)
        self.members = hub.members
        host = self.members[rank]["host"]
        same_host = [r for r in range(self.size) if self.members[r]["host"] == host]
        self.local_rank, self.local_size = same_host.index(rank), len(same_host)
        self.timeout = timeout
        self.broken = None
        self.shared_memory = []
        self.job, self.generation = hub.job, 1
        self.transport = InProcessTransport(hub, rank)
        self.store = self._server = self.context = None
        self._group_ids = 0
        self.comm = CommThread(self)


def run_threads(world_size, fn, hosts=None, timeout=30.0):
    """Run ``fn(rank)`` on ``world_size`` threads, each one rank of a fresh in-process
    job with the default group initialised; returns the results in rank order.
    ``hosts[r]`` names rank r's pretend host (default: all on one). The first rank's
    error is raised once every thread has ended; a thread still running after
    ``timeout`` (and its group's own timeout) is named in a ``TimeoutError``."""
    hosts = [0] * world_size if hosts is None else list(hosts)
    if len(hosts) != world_size:
        raise ValueError(f"Expect: hosts for {world_size} ranks, Actual: {len(hosts)}")
    hub = _Hub(world_size, hosts)
    results, errors = [None] * world_size, [None] * world_size

    def body(rank):
        with registry.thread_state():
            world = InProcessWorld(hub, rank, timeout)
            registry.join(world, ProcessGroup(world, range(world_size), 0))
            try:
                results[rank] = fn(rank)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[rank] = exc
                world.fail(exc)
            finally:
                registry.leave()
                world.close()

    threads = [threading.Thread(target=body, args=(r,), name=f"distnn-rank{r}", daemon=True)
               for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    stuck = [r for r, t in enumerate(threads) if t.is_alive()]
    if stuck:
        raise TimeoutError(f"in-process ranks {stuck} still running after {timeout + 10:.0f}s")
    failed = [r for r, e in enumerate(errors) if e is not None]
    if failed:
        raise errors[failed[0]]
    return results
