"""How collectives among ranks on one host move data through shared memory.

Sockets copy every byte into the kernel and out again, which caps a ring at the
speed of one stream. Ranks that share a host instead stage their data in their
own region (``shm_regions``) and read each other's halves in place. A
collective's ``Staging`` is the whole protocol the algorithms follow:
``stage`` (this rank's half for the next step), ``sync`` (every peer has
reached the same point), ``peer`` (a peer's staged half), ``release`` (our
region's name goes once every peer has mapped it) and ``step_done``.

The first step is ordered by ZeroMQ messages, with their checked headers. Once
it has mapped every region, steps are ordered by signals in the regions: a
waiting peer spins on the count for up to ``DISTNN_SHM_SPIN_US`` microseconds
(default 1000), then sleeps on the futex, waking every ``WAKE_CHECK_S`` to check
for abort notices, a dead owner, a peer that ran a socket collective instead,
and the timeout, so mismatches, timeouts and dead peers end in the same errors
as on the socket path. A socket hop wakes two ZeroMQ I/O threads and costs
100-200 us on a busy host; the signal costs a store and a system call.
"""

import hashlib
import time

from . import wire
from .errors import DistributedError, DistributedTimeoutError

_SIGNAL_KINDS_KEPT = 256  # a program cycling through shapes keeps no more signal fingerprints than this


class Staging:
    """One collective's use of the shared-memory regions ``regions`` (a
    ``SharedMemoryGroup``) of the members of exchange ``ex``."""

    def __init__(self, regions, ex):
        self.regions, self.ex = regions, ex
        self.parity = 0

    @property
    def signals(self):
        """Whether steps are ordered by signals (after the first step, which maps every region)."""
        return self.regions.signals

    def half_elems(self, itemsize):
        """The most elements of ``itemsize`` bytes one step stages per rank."""
        return self.regions.half_elems(itemsize)

    def stage(self, dtype, count):
        """This rank's half for the next step, ``count`` elements of ``dtype``. Successive
        steps alternate halves: a peer announcing step k+1 has finished reading step k, so
        the half of step k+2 (the same as k's) is free to write."""
        self.parity = self.regions.next_parity()
        return self.regions.own(self.parity, dtype, count)

    def peer(self, src, dtype, count):
        """Rank ``src``'s half of this step. A region that is gone means its owner failed,
        and its abort notice (on its way) says best why."""
        try:
            return self.regions.peer(src, self.parity, dtype, count)
        except DistributedError as exc:
            transport = self.ex.transport
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                transport.drain()  # raises the abort notice once it is here
                transport.wait_readable(100)
            raise DistributedError(f"rank {self.ex.world.rank}: {self.ex.describe()}: {exc}") from None

    def sync(self):
        """Return once every peer has reached this point: by signals once every region is
        mapped (where signals work), else by a handshake of messages."""
        if not self.signals:
            return self.ex.handshake()
        count = self._post()
        for src in range(self.ex.size):
            if src != self.ex.rank:
                self._await(src, count)

    def release(self):
        """Remove our region's name: the caller has synced after every peer read this step,
        so every peer has mapped our region. A killed job now leaves no file."""
        self.regions.unlink()

    def release_after_first_step(self):
        """``release`` for a step whose peers may not have read our half yet: on the group's
        first step only, sync once more first. Unlinking under a slower peer that has yet
        to map the region would fail it; a rank that closes right after this collective
        would otherwise do exactly that."""
        if not self.regions.steps_done:
            self.sync()
            self.regions.unlink()

    def step_done(self):
        self.regions.steps_done += 1

    # --- signals ----------------------------------------------------------------------

    def _signal_id(self):
        """(fingerprint, header) of this kind of collective's signals, made once per (op,
        dtype, shape): 63 bits of a hash that peers compare, and the header a message would
        carry (sequence number 0: the slot holds the real one), for a peer to name a mismatch."""
        ex = self.ex
        key = (ex.op, ex.dtype_name, tuple(ex.shape))
        known = self.regions.signal_ids
        found = known.get(key)
        if found is None:
            text = f"{ex.op}|{ex.dtype_name}|{ex.shape}".encode()
            fingerprint = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
            header = wire.encode_header(ex.world.job, ex.group_id, ex.op, 0, ex.world.rank, ex.dtype_name,
                                        ex.shape, 0, 0)
            if len(known) >= _SIGNAL_KINDS_KEPT:
                known.clear()
            found = known[key] = (fingerprint, header)
        return found

    def _post(self):
        """Signal the next step to every peer; returns its count."""
        fingerprint, header = self._signal_id()
        return self.regions.post(self.ex.seq, fingerprint, header)

    def _await(self, src, count):
        """Wait for rank ``src``'s signal ``count``, and check it is for this collective.
        Between sleeps: abort notices, a dead peer, the timeout, and a message from ``src``
        (a peer that ran a socket collective instead) end the wait with their error."""
        ex = self.ex
        world, transport = ex.world, ex.transport
        peer = ex.global_rank(src)
        deadline = time.monotonic() + world.timeout

        def check():
            transport.drain()  # raises an abort notice
            if transport.has_message(ex.group_id, peer, "coll") and not self.regions.reached(src, count):
                ex.recv_array(src, 0)  # names what differs
                raise DistributedError(f"rank {world.rank}: {ex.describe()}: rank {peer} sent a message where "
                                       "a shared-memory signal was expected")
            transport.check_alive([peer], ex.describe())
            if time.monotonic() > deadline:
                raise DistributedTimeoutError(f"rank {world.rank}: timed out after {world.timeout:.1f}s in "
                                              f"{ex.describe()} waiting for rank(s) [{peer}]"
                                              f"{transport.stopped_peers()}")

        seq, fingerprint = self.regions.wait(src, count, check)
        if seq != ex.seq or fingerprint != self._signal_id()[0]:
            self._mismatch(src, seq, self.regions.signal_header(src, count))

    def check_no_signal(self, src):
        """While this rank waits for a message from ``src``: a signal of this very collective
        in ``src``'s region means ``src`` staged it in shared memory, which this rank did not."""
        raw = self.regions.latest_signal(src, self.ex.seq)
        if raw is not None:
            self._mismatch(src, self.ex.seq, raw)

    def _mismatch(self, src, seq, raw):
        """Raise the error for rank ``src``'s signal of collective ``seq`` with header ``raw``
        that differs from ours."""
        ex = self.ex
        world, peer = ex.world, ex.global_rank(src)
        try:
            header = wire.decode_header(raw, world.job, world.size)
        except wire.MalformedMessage as exc:
            raise DistributedError(f"rank {world.rank}: {ex.describe()}: rank {peer}'s shared-memory signal "
                                   f"is unreadable: {exc}") from None
        header["seq"] = seq
        if seq != ex.seq:
            raise ex.explain_out_of_order(header) or DistributedError(
                f"rank {world.rank}: out-of-order signal from rank {peer}: got {header['op']} sequence "
                f"{seq}, expected {ex.op} sequence {ex.seq} (ranks called collectives in different orders)")
        wire.check_expected(header, ex.expect(0, 0), world.rank)
        raise DistributedError(f"rank {world.rank}: {ex.describe()}: rank {peer}'s signal does not match")
