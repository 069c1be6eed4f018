"""``Exchange``: one collective's messages. Addressing by group rank, the header
every message carries and every receiver checks (op, sequence number, dtype,
shape, segment), and the zero-copy sends that must leave before the caller may
reuse its buffers. The collective algorithms (``collectives.py``) are written
against it alone."""

import copy
import time

import numpy as np
import zmq

from . import wire
from .errors import DistributedTimeoutError
from .shm import Staging
from .transport import OutOfOrderMessage


class Exchange:
    """Collective ``op`` number ``seq`` of ``group`` on ``dtype`` data of ``shape``."""

    def __init__(self, group, op, seq, dtype, shape):
        self.group, self.op, self.seq = group, op, seq
        self.world = group.world
        self.transport = self.world.transport
        self.group_id = group.id
        self.members = group.ranks  # global rank of each member, by index
        self.size, self.rank = group.size, group.rank
        self.dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.uint8)
        self.dtype_name = wire.dtype_name(self.dtype) or self.dtype.name
        self.shape = [int(s) for s in shape]
        regions = group.shm
        self.shm = None if regions is None else Staging(regions, self)
        self.hierarchy = group.hierarchy  # hosts and lanes, when the group spans hosts (``hierarchical``)
        self._sent, self._received = {}, {}  # messages per peer's global rank, numbering segments
        self._trackers = []
        self.empty = np.empty(0, self.dtype)

    def subset(self, members, regions=None):
        """This collective among ``members`` (indexes of this exchange, this rank among
        them), indexed 0..len-1 in that order, staging through ``regions`` if given.
        Messages keep their numbering across the two, so one collective may use both."""
        sub = copy.copy(self)  # shares the message counters and trackers
        sub.members = [self.members[m] for m in members]
        sub.size, sub.rank = len(members), list(members).index(self.rank)
        sub.shm = None if regions is None else Staging(regions, sub)
        sub.hierarchy = None
        return sub

    def global_rank(self, index):
        return self.members[index]

    def send(self, dst, payload):
        peer = self.members[dst]
        seg = self._sent.get(peer, 0)
        self._sent[peer] = seg + 1
        header = wire.encode_header(self.world.job, self.group_id, self.op, self.seq, self.world.rank,
                                    self.dtype_name, self.shape, seg, payload.nbytes)
        tracker = self.transport.send(peer, header, payload)
        if tracker is not None:
            self._trackers.append(tracker)

    def recv_array(self, src, count, dtype=None, channel="coll", seg=None):
        dtype = self.dtype if dtype is None else dtype
        peer = self.members[src]
        if seg is None:
            seg = self._received.get(peer, 0)
            self._received[peer] = seg + 1
        expect = self.expect(seg, count * dtype.itemsize)
        watch = None
        if channel == "coll" and self.shm is not None and self.shm.signals:
            watch = lambda: self.shm.check_no_signal(src)  # noqa: E731
        try:
            payload = self.transport.recv(self.group_id, peer, channel, expect, self.world.timeout,
                                          self.describe(), watch)
        except OutOfOrderMessage as exc:
            raise self.explain_out_of_order(exc.header) or exc from None
        return np.frombuffer(payload, dtype=dtype, count=count)

    def expect(self, seg, nbytes):
        """The header a peer's message (or signal) for this collective must carry."""
        return {"op": self.op, "seq": self.seq, "dtype": self.dtype_name, "shape": self.shape, "seg": seg,
                "nbytes": nbytes}

    def explain_out_of_order(self, header):
        return self.group.explain_out_of_order(header)

    def handshake(self):
        """An empty message to and from every peer: even a collective with nothing to
        move compares op, dtype and shape with every rank."""
        for peer in range(self.size):
            if peer != self.rank:
                self.send(peer, self.empty)
        for peer in range(self.size):
            if peer != self.rank:
                self.recv_array(peer, 0)

    def finish(self):
        """Wait until every zero-copy payload has left, so the caller may reuse its buffers;
        a receiver that died meanwhile is noticed, rather than waited for until the timeout."""
        deadline = time.monotonic() + self.world.timeout
        receivers = list(self._sent)
        for tracker in self._trackers:
            while not tracker.done:
                if time.monotonic() > deadline:
                    raise DistributedTimeoutError(
                        f"rank {self.world.rank}: {self.describe()}: sends to rank(s) {sorted(receivers)} "
                        f"did not complete within {self.world.timeout:.1f}s")
                try:
                    tracker.wait(0.5)
                except zmq.NotDone:
                    self.transport.check_alive(receivers, self.describe())
        self._trackers.clear()

    def describe(self):
        return f"{self.op} (sequence {self.seq}, group {self.group_id})"
