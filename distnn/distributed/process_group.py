"""``ProcessGroup``: a set of ranks that run collectives together (the world, or
one made by ``new_group``). Collectives are numbered per group in program order
on the calling thread and run one at a time, in that order, on the world's
communication thread (or inline, when nothing asynchronous is pending)."""

from . import hierarchical, wire
from .exchange import Exchange
from .shm_regions import SharedMemoryGroup
from .work import Work

_HISTORY = 64  # collectives remembered per group, to explain a peer that fell out of step


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
        self._shm_capable = self.size > 1 and world.shares_memory_with(self.ranks)
        self._shm = None
        self.hierarchy = None if self._shm_capable else self._hierarchy()

    @property
    def shm(self):
        """This group's shared-memory regions (mapped on first use), or None when some
        member is on another host or cannot use shared memory."""
        if self._shm is None and self._shm_capable:
            self._shm = self._regions(self.ranks, self.rank)
        return self._shm

    def _hierarchy(self):
        """The ``hierarchical.Hierarchy`` of a group spanning hosts with several ranks on
        some, with the shared-memory regions of this rank's host; else None."""
        layout = hierarchical.host_layout([self.world.members[r] for r in self.ranks])
        if layout is None:
            return None
        return hierarchical.Hierarchy(layout, self.rank,
                                      lambda host, local: self._regions([self.ranks[i] for i in host], local))

    def _regions(self, global_ranks, rank):
        """Shared-memory regions among ``global_ranks`` (this process is ``rank`` of them),
        closed with the world. A group spanning hosts has none of its own, so its hosts'
        regions take its id."""
        regions = SharedMemoryGroup(self.world.job.hex(), self.world.generation, self.id,
                                    [(r, self.world.members[r]["pid"]) for r in global_ranks], rank,
                                    self.world.signals_with(global_ranks))
        self.world.shared_memory.append(regions)
        return regions

    def index_of(self, global_rank, what):
        """The group rank of global rank ``global_rank`` (named ``what`` in the error)."""
        if global_rank not in self.ranks:
            raise ValueError(f"Expect: {what} among the group's ranks {self.ranks}, Actual: {global_rank}")
        return self.ranks.index(global_rank)

    def __repr__(self):
        return f"ProcessGroup(id={self.id}, ranks={self.ranks}, rank={self.rank})"

    def submit(self, op, fn, async_op, dtype=None, shape=(), outputs=None):
        """Run ``fn(exchange)`` on the communication thread as collective ``op``; the
        returned Work's future completes with ``outputs`` (the output tensors)."""
        seq = self._seq
        self._seq += 1
        ex = Exchange(self, op, seq, dtype, shape)
        self._history[seq] = {"op": op, "dtype": ex.dtype_name, "shape": ex.shape}
        self._history.pop(seq - _HISTORY, None)
        work = self._start(lambda: f"{op} (sequence {seq}) on rank {self.world.rank}", lambda: fn(ex), async_op)
        if work is not None and outputs is not None:
            work.outputs = list(outputs)
        return work

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
