"""Point-to-point ``torch.distributed`` calls: ``isend``/``irecv`` and their
blocking forms. Messages are numbered per peer pair and direction; a posted
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
