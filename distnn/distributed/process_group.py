"""Process groups: the rendezvous that builds the world, the communication thread
that owns every socket, ``Work`` handles for asynchronous collectives, and the
per-collective ``Exchange`` that stamps and checks message headers.

Collectives are numbered per group in program order on the calling thread and
run one at a time, in that order, on the communication thread. A failure there
is broadcast to every peer as an abort notice, so all ranks raise instead of
waiting for the timeout.
"""

import atexit
import hashlib
import os
import queue
import threading
import time

import numpy as np
import zmq
# pyzmq starts its garbage-collector thread (which frees zero-copy buffers) on first
# use and registers its own exit handler then; loaded before this module registers
# its own, it is torn down after ours, so closing a world at exit never waits on a
# collector that is already gone.
import zmq.utils.garbage  # noqa: F401

from . import locality, network, shm, wire
from .errors import DistributedError, DistributedTimeoutError
from .store import StoreClient, StoreServer
from .transport import OutOfOrderMessage, Transport

_LINGER_MS = 5000  # closing waits this long for queued messages to leave
_ABORT_LINGER_MS = 1000  # and this long for a failed rank's abort notices
_HISTORY = 64  # collectives remembered per group, to explain a peer that fell out of step


class Work:
    """Handle of an asynchronous collective, as returned with ``async_op=True``."""

    def __init__(self, description, default_timeout):
        self.description = description
        self._timeout = default_timeout
        self._done = threading.Event()
        self._error = None
        self._result = None

    def wait(self, timeout=None):
        timeout = self._timeout if timeout is None else _seconds(timeout)
        if not self._done.wait(timeout):
            raise DistributedTimeoutError(f"{self.description} did not complete within {timeout:.1f}s")
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self):
        return self._done.is_set()

    def is_success(self):
        return self._done.is_set() and self._error is None

    def exception(self):
        return self._error

    def result(self):
        self.wait()
        return self._result

    def _finish(self, result=None, error=None):
        self._result, self._error = result, error
        self._done.set()


class _CommThread:
    """Runs collectives in submission order. Sockets are used by one thread at a
    time, under ``_lock``: this thread for asynchronous work, or the caller itself
    for a synchronous collective when nothing asynchronous is pending (which
    saves two thread hand-offs per call).

    Point-to-point receives are *posted*: they wait on the side while later work
    runs, and complete whenever their message arrives, so ``irecv`` followed by
    ``isend`` or a barrier never deadlocks (as with torch's backends)."""

    _POSTED_POLL_MS = 1  # while receives are posted, how often newly submitted work is looked at

    def __init__(self, world):
        self._world = world
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._posted = []  # (work, attempt, deadline): attempt() -> True once complete
        self._thread = threading.Thread(target=self._loop, name="distnn-comm", daemon=True)
        self._thread.start()

    def submit(self, work, fn):
        with self._lock:
            self._pending += 1
        self._queue.put((work, fn, False))

    def post(self, work, attempt):
        """Queue a receive that completes when ``attempt()`` finds its message."""
        with self._lock:
            self._pending += 1
        self._queue.put((work, attempt, True))

    def run_inline(self, fn):
        """Run ``fn`` on this thread and return True if nothing is queued, else return False."""
        with self._lock:
            if self._pending:
                return False
            if self._world.broken is not None:
                raise self._broken_error()
            try:
                fn()
            except Exception as exc:  # every peer hears of it too
                self._world.fail(exc)
                raise
            return True

    def stop(self):
        self._queue.put(None)
        self._thread.join(timeout=_LINGER_MS / 1000 + 5)

    def _loop(self):
        while True:
            if self._posted:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    with self._lock:  # wakes as soon as a message lands, or to check the queue
                        self._world.transport.wait_readable(self._POSTED_POLL_MS)
                    item = ()
            else:
                item = self._queue.get()
            if item is None:
                return
            with self._lock:
                if item:
                    work, fn, posted = item
                    if posted:
                        self._posted.append((work, fn, time.monotonic() + self._world.timeout))
                    else:
                        self._execute(work, fn)
                        self._pending -= 1
                if self._posted:
                    self._service_posted()

    def _service_posted(self):
        try:
            self._world.transport.drain()
        except Exception as exc:
            for work, _, _ in self._posted:
                work._finish(error=exc)
            self._pending -= len(self._posted)
            self._posted.clear()
            return
        still = []
        for work, attempt, deadline in self._posted:
            try:
                if attempt():
                    work._finish(result=work._result)
                elif time.monotonic() > deadline:
                    raise DistributedTimeoutError(f"{work.description} timed out after "
                                                  f"{self._world.timeout:.1f}s")
                else:
                    still.append((work, attempt, deadline))
                    continue
            except Exception as exc:
                self._world.fail(exc)
                work._finish(error=exc)
            self._pending -= 1
        self._posted = still

    def _broken_error(self):
        return DistributedError(f"{self._world.broken} (earlier failure; this process group can no longer be used)")

    def _execute(self, work, fn):
        if self._world.broken is not None:
            work._finish(error=self._broken_error())
            return
        try:
            work._finish(result=fn())
        except Exception as exc:  # handed to the waiting thread, and to every peer
            self._world.fail(exc)
            work._finish(error=exc)


class World:
    """This process's membership in a job: sockets, store, communication thread."""

    generation = 0
    _spare_sockets = {}  # (job, rank, world size) -> (context, transport) of a failed rendezvous

    def __init__(self, rank, world_size, local_rank, local_world_size, master, token, timeout):
        self.rank, self.size = rank, world_size
        self.local_rank, self.local_size = local_rank, local_world_size
        self.timeout = timeout
        self.broken = None
        self.shared_memory = []  # SharedMemoryGroup of every group that staged data, closed with us
        host, port = master.host, master.port
        # The key under which a rank whose rendezvous timed out keeps its data sockets for the
        # retry: peers may already have been told these endpoints, and must still reach it there.
        claim = (hashlib.sha256(token + f"{host}:{port}".encode()).digest(), rank, world_size)
        spare = World._spare_sockets.pop(claim, None)
        if spare is not None:
            self.context, self.transport = spare
        else:
            bind_host, note = network.data_host(master, spans_hosts=local_world_size < world_size)
            if note and local_rank == 0:
                network.note(note)
            self.context = zmq.Context()
            self.context.setsockopt(zmq.IPV6, 1)  # sockets made from it reach IPv6 masters (and IPv4 too)
            try:
                self.transport = Transport(self.context, rank, world_size, bind_host, local_rank=local_rank)
            except BaseException:
                self.context.term()
                raise
        self._server = None
        self.store = None
        try:
            if rank == 0:
                # A name that is loopback only here (Debian's "127.0.1.1 <hostname>") is how the
                # other hosts reach this one by another address: serve the store on every interface.
                store_host = "*" if network.names_loopback_by_accident(master) and world_size > 1 else host
                self._server = StoreServer(self.context, store_host, port, token, world_size)
            self.store = StoreClient(self.context, f"tcp://{network.bracket(host)}:{port}", token, timeout)
            self._rendezvous(host, port)
        except BaseException:
            if self.store is not None:
                self.store.close()
            if self._server is not None:
                self._server.close()
            World._spare_sockets[claim] = (self.context, self.transport)
            raise
        self.comm = _CommThread(self)
        self._group_ids = 0

    def _rendezvous(self, host, port):
        info = dict(self.transport.endpoint_info(), world=self.size, rank=self.rank, shm=shm.available(),
                    shm_signals=shm.signals_available())
        # Keys name the generation (this process's count of worlds joined so far), so a rank
        # that re-initialises fast never meets the previous generation's members in a store
        # that has not shut down yet, while a retried join keeps its generation.
        generation = World.generation + 1
        keys = [f"gen{generation}/member/{r}" for r in range(self.size)]
        try:
            members = self.store.join(keys[self.rank], info, keys, what=f"ranks to join (world_size={self.size})")
        except DistributedTimeoutError as exc:
            raise DistributedTimeoutError(str(exc).replace(f"gen{generation}/member/", "rank ")) from None
        for r, m in enumerate(members):
            if m["world"] != self.size:
                raise DistributedError(f"rank {self.rank}: world_size mismatch: this rank has {self.size}, "
                                       f"rank {r} has {m['world']}")
        if members[self.rank]["pid"] != os.getpid() or members[self.rank]["host"] != info["host"]:
            raise DistributedError(f"rank {self.rank} was claimed by two processes (pid {os.getpid()} and "
                                   f"pid {members[self.rank]['pid']}): check RANK of every worker")
        # The job id names the job in every header and shared-memory file; it derives from the
        # secret (the token, or the one the store handed out), so it is not guessable.
        self.job = hashlib.sha256(self.store.secret + f"{host}:{port}".encode()).digest()[:8]
        self.transport.authenticate(self.job, self.store.secret)
        self.transport.connect(members)
        self.members = members
        self.generation = World.generation = generation

    def shares_memory_with(self, ranks):
        """Whether every rank in ``ranks`` can map this rank's shared memory and it theirs
        (the same host and /dev/shm, checked by ``locality``; every member agrees)."""
        keys = {locality.memory_key(self.members[r]) for r in ranks}
        return len(keys) == 1 and None not in keys

    def signals_with(self, ranks):
        """Whether every rank in ``ranks`` can order shared-memory steps by signals."""
        return all(self.members[r].get("shm_signals") is True for r in ranks)

    def next_group_id(self):
        self._group_ids += 1
        return self._group_ids

    def fail(self, exc):
        """Record the first failure and tell every peer (unless a peer told us)."""
        if self.broken is None:
            self.broken = str(exc)
            self.transport.broadcast_abort(str(exc))
            for regions in self.shared_memory:
                regions.unlink()

    def close(self, flush=True):
        # A failed job has nothing worth waiting to deliver but its abort notices: without a
        # moment's linger, a rank that exits at once would drop them, and its peers would
        # learn only that it exited, not why.
        linger = _ABORT_LINGER_MS if self.broken is not None else _LINGER_MS if flush else 0
        if getattr(self, "comm", None) is not None:
            self.comm.stop()
            self.comm = None
        for regions in self.shared_memory:
            regions.close()
        self.transport.close(linger=linger)
        self.store.close()
        if self._server is not None:
            self._server.close()
        self.context.term()


class ProcessGroup:
    """A set of ranks that run collectives together (the world, or ``new_group``)."""

    def __init__(self, world, ranks, group_id):
        self.world = world
        self.ranks = list(ranks)
        self.id = group_id
        self.size = len(self.ranks)
        self.rank = self.ranks.index(world.rank)
        self._seq = 0
        self._p2p_sent = {}
        self._p2p_received = {}
        self._history = {}  # recent sequence numbers -> (op, dtype, shape), to explain mismatches
        self._signal_ids = {}  # (op, dtype, shape) -> (fingerprint, header) of shared-memory signals
        self._shm_capable = self.size > 1 and world.shares_memory_with(self.ranks)
        self._shm = None

    @property
    def shm(self):
        """This group's shared-memory regions (mapped on first use), or None when some
        member is on another host or cannot use shared memory."""
        if self._shm is None and self._shm_capable:
            self._shm = shm.SharedMemoryGroup(self.world.job.hex(), self.world.generation, self.id,
                                              [(r, self.world.members[r]["pid"]) for r in self.ranks], self.rank,
                                              self.world.signals_with(self.ranks))
            self.world.shared_memory.append(self._shm)
        return self._shm

    def __repr__(self):
        return f"ProcessGroup(id={self.id}, ranks={self.ranks}, rank={self.rank})"

    def submit(self, op, fn, async_op, dtype=None, shape=()):
        """Run ``fn(exchange)`` on the communication thread as collective ``op``."""
        seq = self._seq
        self._seq += 1
        ex = Exchange(self, op, seq, dtype, shape)
        self._history[seq] = {"op": op, "dtype": ex.dtype_name, "shape": ex.shape}
        self._history.pop(seq - _HISTORY, None)
        return self._start(lambda: f"{op} (sequence {seq}) on rank {self.world.rank}", lambda: fn(ex), async_op)

    def _start(self, describe, fn, async_op):
        """Queue ``fn`` for the communication thread, or run it here when the call is
        synchronous and nothing is queued (no Work, no thread hand-off)."""
        comm = self.world.comm
        if not async_op and comm.run_inline(fn):
            return None
        work = Work(describe(), self.world.timeout)
        comm.submit(work, fn)
        if async_op:
            return work
        work.wait(timeout=self.world.timeout + 5)
        return None

    def explain_out_of_order(self, header):
        """A peer's message for a collective this rank ran differently: say which field
        differs, as for any mismatch (None when this rank never ran that sequence)."""
        mine = self._history.get(header["seq"])
        return None if mine is None else wire.mismatch(header, mine, self.world.rank, header["seq"])

    def next_p2p_seq(self, peer, received):
        """Point-to-point messages are numbered per peer pair and direction."""
        counters = self._p2p_received if received else self._p2p_sent
        seq = counters.get(peer, 0)
        counters[peer] = seq + 1
        return seq

    def submit_p2p(self, peer, op, fn, async_op, dtype, shape):
        """A send to ``peer``, numbered per peer pair rather than per group."""
        ex = Exchange(self, "send", self.next_p2p_seq(peer, received=False), dtype, shape)
        return self._start(lambda: f"{op} with rank {peer} on rank {self.world.rank}", lambda: fn(ex), async_op)


class Exchange:
    """One collective's messages: group-rank addressing, headers, validation, trackers."""

    def __init__(self, group, op, seq, dtype, shape):
        self.group, self.op, self.seq = group, op, seq
        self.size, self.rank = group.size, group.rank
        self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.uint8)
        self.dtype_name = wire.dtype_name(self.dtype) or self.dtype.name
        self.shape = [int(s) for s in shape]
        self._transport = group.world.transport
        self.shm = group.shm
        self._sent, self._received = {}, {}
        self._trackers = []
        self.empty = np.empty(0, self.dtype)

    def send(self, dst, payload):
        seg = self._sent.get(dst, 0)
        self._sent[dst] = seg + 1
        header = wire.encode_header(self.group.world.job, self.group.id, self.op, self.seq,
                                    self.group.world.rank, self.dtype_name, self.shape, seg, payload.nbytes)
        tracker = self._transport.send(self.group.ranks[dst], header, payload)
        if tracker is not None:
            self._trackers.append(tracker)

    def recv_array(self, src, count, dtype=None, channel="coll", seg=None):
        dtype = self.dtype if dtype is None else dtype
        if seg is None:
            seg = self._received.get(src, 0)
            self._received[src] = seg + 1
        expect = self._expect(seg, count * dtype.itemsize)
        watch = None
        if channel == "coll" and self.shm is not None and self.shm.signals:
            watch = lambda: self._check_no_signal(src)  # noqa: E731
        try:
            payload = self._transport.recv(self.group.id, self.group.ranks[src], channel, expect,
                                           self.group.world.timeout, self.describe(), watch)
        except OutOfOrderMessage as exc:
            raise self.group.explain_out_of_order(exc.header) or exc from None
        return np.frombuffer(payload, dtype=dtype, count=count)

    def _expect(self, seg, nbytes):
        """The header a peer's message (or signal) for this collective must carry."""
        return {"op": self.op, "seq": self.seq, "dtype": self.dtype_name, "shape": self.shape, "seg": seg,
                "nbytes": nbytes}

    def _signal_id(self):
        """(fingerprint, header) of this kind of collective's shared-memory signals, made
        once per (op, dtype, shape): 63 bits of a hash that peers compare, and the header a
        message would carry (sequence number 0: the slot holds the real one), for a peer to
        name a mismatch."""
        key = (self.op, self.dtype_name, tuple(self.shape))
        known = self.group._signal_ids
        found = known.get(key)
        if found is None:
            text = f"{self.op}|{self.dtype_name}|{self.shape}".encode()
            fingerprint = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
            world = self.group.world
            header = wire.encode_header(world.job, self.group.id, self.op, 0, world.rank, self.dtype_name,
                                        self.shape, 0, 0)
            if len(known) >= 256:  # a program cycling through shapes keeps no more than this
                known.clear()
            found = known[key] = (fingerprint, header)
        return found

    def post_signal(self):
        """Signal the next shared-memory step to every peer (see shm.py); returns its count."""
        fingerprint, header = self._signal_id()
        return self.shm.post(self.seq, fingerprint, header)

    def await_signal(self, src, count):
        """Wait for rank ``src``'s signal ``count``, and check it is for this collective.
        Between sleeps: abort notices, a dead peer, the timeout, and a message from ``src``
        (a peer that ran a socket collective instead) end the wait with their error."""
        world, transport = self.group.world, self._transport
        peer = self.group.ranks[src]
        deadline = time.monotonic() + world.timeout

        def check():
            transport.drain()  # raises an abort notice
            if transport.has_message(self.group.id, peer, "coll") and not self.shm.reached(src, count):
                self.recv_array(src, 0)  # names what differs
                raise DistributedError(f"rank {world.rank}: {self.describe()}: rank {peer} sent a message where "
                                       "a shared-memory signal was expected")
            transport.check_alive([peer], self.describe())
            if time.monotonic() > deadline:
                raise DistributedTimeoutError(f"rank {world.rank}: timed out after {world.timeout:.1f}s in "
                                              f"{self.describe()} waiting for rank(s) [{peer}]"
                                              f"{transport.stopped_peers()}")

        seq, fingerprint = self.shm.wait(src, count, check)
        if seq != self.seq or fingerprint != self._signal_id()[0]:
            self._signal_mismatch(src, seq, self.shm.signal_header(src, count))

    def _check_no_signal(self, src):
        """While this rank waits for a message from ``src``: a signal of this very collective
        in ``src``'s region means ``src`` staged it in shared memory, which this rank did not."""
        raw = self.shm.latest_signal(src, self.seq)
        if raw is not None:
            self._signal_mismatch(src, self.seq, raw)

    def _signal_mismatch(self, src, seq, raw):
        """Raise the error for rank ``src``'s signal of collective ``seq`` with header ``raw``
        that differs from ours."""
        world, peer = self.group.world, self.group.ranks[src]
        try:
            header = wire.decode_header(raw, world.job, world.size)
        except wire.MalformedMessage as exc:
            raise DistributedError(f"rank {world.rank}: {self.describe()}: rank {peer}'s shared-memory signal "
                                   f"is unreadable: {exc}") from None
        header["seq"] = seq
        if header["seq"] != self.seq:
            raise self.group.explain_out_of_order(header) or DistributedError(
                f"rank {world.rank}: out-of-order signal from rank {peer}: got {header['op']} sequence "
                f"{header['seq']}, expected {self.op} sequence {self.seq} (ranks called collectives in "
                "different orders)")
        wire.check_expected(header, self._expect(0, 0), world.rank)
        raise DistributedError(f"rank {world.rank}: {self.describe()}: rank {peer}'s signal does not match")

    def shm_peer(self, src, parity, dtype, count):
        """Rank ``src``'s staging half, as ``SharedMemoryGroup.peer``. A region that is gone
        means its owner failed, and its abort notice (on its way) says best why."""
        try:
            return self.shm.peer(src, parity, dtype, count)
        except DistributedError as exc:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                self._transport.drain()  # raises the abort notice once it is here
                self._transport.wait_readable(100)
            raise DistributedError(f"rank {self.group.world.rank}: {self.describe()}: {exc}") from None

    def finish(self):
        """Wait until every zero-copy payload has left, so the caller may reuse its buffers;
        a receiver that died meanwhile is noticed, rather than waited for until the timeout."""
        deadline = time.monotonic() + self.group.world.timeout
        receivers = [self.group.ranks[dst] for dst in self._sent]
        for tracker in self._trackers:
            while not tracker.done:
                if time.monotonic() > deadline:
                    raise DistributedTimeoutError(
                        f"rank {self.group.world.rank}: {self.describe()}: sends to rank(s) {sorted(receivers)} "
                        f"did not complete within {self.group.world.timeout:.1f}s")
                try:
                    tracker.wait(0.5)
                except zmq.NotDone:
                    self._transport.check_alive(receivers, self.describe())
        self._trackers.clear()

    def describe(self):
        return f"{self.op} (sequence {self.seq}, group {self.group.id})"


def _seconds(timeout):
    return timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)


_active_worlds = []


@atexit.register
def _close_at_exit():
    for world in list(_active_worlds):
        world.close()
    _active_worlds.clear()
