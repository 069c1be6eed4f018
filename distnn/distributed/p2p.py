"""Point-to-point ``torch.distributed`` calls: ``isend``/``irecv``, their blocking
forms, and ``batch_isend_irecv`` of ``P2POp``s. Messages are numbered per peer pair and direction; a posted
receive completes whenever its message arrives, so it never blocks later work."""

import time

import numpy as np

from . import collectives
from .errors import DistributedError
from .host_buffer import HostBuffer
from .registry import resolve_group
from .wire import check_expected
from .work import Work


def isend(tensor, dst, group=None, tag=0):
    g, buf = resolve_group(group), HostBuffer(tensor)
    peer = g.index_of(dst, "dst")
    if peer == g.rank:
        raise ValueError(f"rank {g.rank} cannot send to itself")
    payload = buf.flat.copy()  # the caller may reuse its tensor as soon as isend returns

    def run(ex):
        collectives.send_segmented(ex, peer, payload)
        ex.finish()
    return g.submit_p2p(peer, "send", run, True, buf.dtype, buf.shape)


def irecv(tensor, src=None, group=None, tag=0):
    """Post a receive (from ``src``, or from whichever peer sends first); the returned
    work's ``result()`` is the sender's rank. Later calls are not held up meanwhile."""
    g, buf = resolve_group(group), HostBuffer(tensor)
    world = g.world
    if src is not None:
        peer = g.index_of(src, "src")
        if peer == g.rank:
            raise ValueError(f"rank {g.rank} cannot receive from itself")
        sources = [src]
    else:
        sources = [r for r in g.ranks if r != world.rank]
    work = Work(f"recv from {'rank %d' % src if src is not None else 'any rank'} on rank {world.rank}",
                world.timeout)
    pieces = collectives.message_segments(buf.flat)
    got = {"sender": None, "seq": None, "segments": 0}  # the message being taken, once begun

    def attempt():
        """Take what has arrived of the message; True once all its segments are in."""
        # Posted receives are tried in posting order after each drain of the socket, so a
        # receive that has begun a sender's message takes all of it that has arrived before
        # a later receive looks at that sender: segments of two messages never mix.
        while got["segments"] < len(pieces):
            found = world.transport.take(g.id, sources if got["sender"] is None else [got["sender"]], "p2p")
            if found is None:
                if src is not None and time.monotonic() >= got.setdefault("check_at", time.monotonic() + 0.5):
                    got["check_at"] = time.monotonic() + 0.5  # a dead sender is named, not waited for
                    world.transport.check_alive([src], work.description)
                return False
            sender, header, payload = found
            if got["sender"] is None:
                # Numbered when matched: posted receives take each peer's messages in posting order.
                got.update(sender=sender, seq=g.next_p2p_seq(g.ranks.index(sender), received=True))
            seq, index = got["seq"], got["segments"]
            if header["seq"] != seq or header["seg"] != index:
                raise DistributedError(f"rank {world.rank}: rank {sender} sent segment {header['seg']} of its "
                                       f"message number {header['seq']}, this rank expected segment {index} of "
                                       f"number {seq} (sends and receives between them do not pair up)")
            sl = pieces[index]
            check_expected(header, {"op": "send", "seq": seq, "dtype": buf.dtype.name, "shape": list(buf.shape),
                                    "nbytes": (sl.stop - sl.start) * buf.dtype.itemsize}, world.rank)
            buf.flat[sl] = np.frombuffer(payload, dtype=buf.dtype, count=sl.stop - sl.start)
            got["segments"] = index + 1
        buf.commit()
        work._result = got["sender"]
        return True
    world.comm.post(work, attempt)
    return work


def send(tensor, dst, group=None, tag=0):
    isend(tensor, dst, group, tag).wait()


def recv(tensor, src=None, group=None, tag=0):
    """Blocking receive; returns the sender's rank."""
    return irecv(tensor, src, group, tag).result()


class P2POp:
    """One point-to-point operation for ``batch_isend_irecv``: ``op`` (``isend`` or
    ``irecv``) on ``tensor`` with global rank ``peer`` (or group rank ``group_peer``)."""

    def __init__(self, op, tensor, peer=None, group=None, tag=0, group_peer=None):
        if op is not isend and op is not irecv:
            raise ValueError(f"Invalid ``op``: Expect: distnn.distributed.isend or distnn.distributed.irecv, "
                             f"Actual: {getattr(op, '__name__', op)!r}")
        self.op, self.tensor, self.tag = op, tensor, tag
        self.group = resolve_group(group)
        if (peer is None) == (group_peer is None):
            raise ValueError(f"Expect: exactly one of peer and group_peer, Actual: peer={peer}, "
                             f"group_peer={group_peer}")
        if peer is None:
            if not 0 <= group_peer < self.group.size:
                raise ValueError(f"Expect: group_peer within [0, {self.group.size}), Actual: {group_peer}")
            peer = self.group.ranks[group_peer]
        self.group_peer = self.group.index_of(peer, "peer")
        self.peer = peer
        if self.group_peer == self.group.rank:
            raise ValueError(f"rank {peer} cannot {'send to' if op is isend else 'receive from'} itself")

    def __repr__(self):
        return (f"P2POp({self.op.__name__}, peer={self.peer}, group={self.group!r}, "
                f"shape={tuple(self.tensor.shape)}, dtype={self.tensor.dtype})")


def batch_isend_irecv(p2p_op_list):
    """Start every ``P2POp`` of the list, in order, and return their Works. Sends are
    asynchronous and receives posted, so the order of sends and receives does not
    matter; between two ranks, messages in one direction pair up in list order."""
    if not isinstance(p2p_op_list, list):
        raise ValueError(f"Expect: p2p_op_list a list of P2POp, Actual: {type(p2p_op_list).__name__}")
    for i, p in enumerate(p2p_op_list):
        if not isinstance(p, P2POp):
            raise ValueError(f"Expect: p2p_op_list a list of P2POp, Actual: p2p_op_list[{i}] of type "
                             f"{type(p).__name__}")
    if not p2p_op_list:
        raise ValueError("Expect: p2p_op_list of at least one P2POp, Actual: an empty list")
    group = p2p_op_list[0].group
    for i, p in enumerate(p2p_op_list):
        if p.group is not group:
            raise ValueError(f"All ops need to use the same group: Expect: p2p_op_list[{i}].group {group!r} "
                             f"(as p2p_op_list[0]), Actual: {p.group!r}")
    return [p.op(p.tensor, p.peer, p.group, p.tag) for p in p2p_op_list]
