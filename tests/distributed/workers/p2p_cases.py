"""Point-to-point sections for collectives.py: blocking and non-blocking send and
receive over every dtype and size, receive from any rank, message order, and
posted receives (irecv before the matching send is possible)."""

import numpy as np

import distnn
import distnn.distributed as dist
from cases import DTYPES, check, data, reduced, wrap


def ring_exchange_case(rank, world, dtype, n, kind):
    """Even ranks send first, odd ranks receive first (blocking send/recv)."""
    right, left = (rank + 1) % world, (rank - 1) % world
    out = wrap(np.zeros(n, dtype), kind)
    mine = wrap(data(rank, n, dtype), kind)
    if rank % 2 == 0:
        dist.send(mine, right)
        got = dist.recv(out, left)
    else:
        got = dist.recv(out, left)
        dist.send(mine, right)
    check(out, data(left, n, dtype), f"recv from {left}")
    if got != left:
        raise AssertionError(f"recv returned {got!r}, expected the sender {left}")
    return None


def isend_irecv_case(rank, world, dtype, n):
    right, left = (rank + 1) % world, (rank - 1) % world
    out = np.zeros(n, dtype)
    payload = data(rank, n, dtype)
    send_work = dist.isend(payload, right)
    payload[...] = 0  # isend must have taken what it sends already
    recv_work = dist.irecv(out, left)
    for work in (recv_work, send_work):
        if work.wait() is not True or not work.is_completed():
            raise AssertionError("wait() must return True and leave is_completed() True")
    check(out, data(left, n, dtype), f"irecv from {left}")
    return None


def recv_any_case(rank, world, dtype, n):
    """Rank 0 receives one message from every other rank with recv(t) (no src).
    Ends with a barrier: a sender's next message must not match this case's recv."""
    if rank != 0:
        dist.send(data(rank, n, dtype, salt=rank), 0)
        dist.barrier()
        return None
    senders = []
    for _ in range(world - 1):
        out = distnn.from_numpy(np.zeros(n, dtype))
        src = dist.recv(out)
        if not isinstance(src, int):
            raise AssertionError(f"recv() without src must return the sender rank, got {src!r}")
        check(out, data(src, n, dtype, salt=src), f"recv from any (sender {src})")
        senders.append(src)
    dist.barrier()
    if sorted(senders) != list(range(1, world)):
        raise AssertionError(f"senders {senders}, expected each of 1..{world - 1} once")
    return None


def ordered_case(rank, world):
    """Rank 1 sends several messages of different dtypes and sizes; rank 0 gets them in order."""
    plan = [("float32", 7), ("int64", 0), ("uint8", 3), ("float32", 70000), ("bool", 5), ("float64", 1)]
    if rank == 1:
        works = [dist.isend(distnn.from_numpy(data(1, n, dt, salt=i)), 0) for i, (dt, n) in enumerate(plan)]
        for w in works:
            w.wait()
    elif rank == 0:
        for i, (dt, n) in enumerate(plan):
            out = np.zeros(n, dt)
            assert dist.recv(out, 1) == 1
            check(out, data(1, n, dt, salt=i), f"message {i} from rank 1")
    return None


def send_to_self_case(rank, world):
    try:
        dist.send(np.zeros(3, np.float32), rank)
    except ValueError:
        return None
    raise AssertionError("send to this rank itself must raise ValueError")


def section_p2p(run, rank, world, large):
    run.case("send.to_self", send_to_self_case)
    if world == 1:
        return
    for dtype in DTYPES:
        for n in (0, 1, 7):
            kind = ("tensor", "numpy")[n % 2]
            run.case(f"sendrecv.ring.{dtype}.n{n}", ring_exchange_case, dtype, n, kind)
            run.case(f"isend_irecv.{dtype}.n{n}", isend_irecv_case, dtype, n)
    run.case(f"sendrecv.ring.float32.n{large}", ring_exchange_case, "float32", large, "tensor")
    run.case(f"isend_irecv.float64.n{large}", isend_irecv_case, "float64", large)
    for dtype, n in (("float32", 7), ("int8", 1), ("float64", 100003)):
        run.case(f"recv_any.{dtype}.n{n}", recv_any_case, dtype, n)
    run.case("p2p.ordered", ordered_case)


def all_to_all_posted_first_case(rank, world):
    """Every rank posts a receive from every peer before sending to any (as a
    hand-written all-to-all does), then waits for all of them."""
    peers = [q for q in range(world) if q != rank]
    outs = {q: np.zeros(5, np.int32) for q in peers}
    works = [dist.irecv(outs[q], q) for q in peers]
    works += [dist.isend(data(rank, 5, "int32", salt=q), q) for q in peers]
    for w in works:
        w.wait()
    for q in peers:
        check(outs[q], data(q, 5, "int32", salt=rank), f"all-to-all message from {q}")
    dist.barrier()
    return None


def any_then_specific_case(rank, world):
    """Posted receives match messages in the order they were posted (MPI's rule):
    rank 0 posts recv-from-any, then recv-from-1; rank 1 sends two messages."""
    if rank == 1:
        dist.send(data(1, 3, "float32", salt=0), 0)
        dist.send(data(1, 3, "float32", salt=1), 0)
    elif rank == 0:
        first, second = np.zeros(3, np.float32), np.zeros(3, np.float32)
        w_any, w_one = dist.irecv(first), dist.irecv(second, 1)
        w_any.wait()
        w_one.wait()
        check(first, data(1, 3, "float32", salt=0), "the receive posted first gets the first message")
        check(second, data(1, 3, "float32", salt=1), "the receive posted second gets the second message")
        if w_any.result() != 1:
            raise AssertionError(f"irecv from any: result() must be the sender 1, got {w_any.result()!r}")
    dist.barrier()
    return None


def any_source_segmented_case(rank, world):
    """Receives from any rank, all posted before messages of twelve segments arrive
    from every peer at once: each receive ends with one sender's whole message."""
    n = 3000017  # float32: twelve segments of at most 1 MiB
    if rank != 0:
        dist.send(data(rank, n, "float32", salt=rank), 0)
    else:
        outs = [np.zeros(n, np.float32) for _ in range(world - 1)]
        works = [dist.irecv(out) for out in outs]
        senders = [w.result() for w in works]
        if sorted(senders) != list(range(1, world)):
            raise AssertionError(f"senders {senders}, expected each of 1..{world - 1} once")
        for out, src in zip(outs, senders):
            check(out, data(src, n, "float32", salt=src), f"segmented message from {src}")
    dist.barrier()
    return None


def irecv_across_collectives_case(rank, world):
    """A receive stays posted across collectives of every kind, sync and async."""
    out = np.zeros(4, np.float64)
    pending = dist.irecv(out, 0) if rank == world - 1 else None
    x = data(rank, 100003, "float32")
    dist.all_reduce(x)
    b = data(rank, 6, "int64")
    dist.broadcast(b, 0)
    w = dist.all_reduce(data(rank, 7, "float32"), async_op=True)
    dist.barrier()
    w.wait()
    if rank == 0:
        dist.send(data(0, 4, "float64", salt=9), world - 1)
    if pending is not None:
        pending.wait()
        check(out, data(0, 4, "float64", salt=9), "irecv posted before four collectives")
    check(x, reduced(world, 100003, "float32", "sum"), "all_reduce while a receive was posted", terms=world)
    check(b, data(0, 6, "int64"), "broadcast while a receive was posted")
    dist.barrier()
    return None


def subgroup_case(rank, world):
    """send/recv inside a subgroup address peers by global rank; the group's
    messages never mix with the world's, even between the same two ranks."""
    first, last = 0, world - 1
    group = dist.new_group([first, last])
    if rank == first:
        dist.send(data(first, 6, "int16", salt=1), last, group=group)
        dist.send(data(first, 6, "int16", salt=2), last)  # same pair, world group
    elif rank == last:
        from_world, from_group = np.zeros(6, np.int16), np.zeros(6, np.int16)
        assert dist.recv(from_world, first) == first  # posted first, but only the world's message matches
        assert dist.recv(from_group, first, group=group) == first
        check(from_world, data(first, 6, "int16", salt=2), "world message")
        check(from_group, data(first, 6, "int16", salt=1), "subgroup message")
    dist.barrier()
    return None


def section_p2p_patterns(run, rank, world, large):
    if world > 1:
        run.case("p2p.all_to_all_posted_first", all_to_all_posted_first_case)
        run.case("p2p.irecv_across_collectives", irecv_across_collectives_case)
        run.case("p2p.any_then_specific", any_then_specific_case)
        run.case("p2p.any_source_segmented", any_source_segmented_case)
        run.case("p2p.subgroup", subgroup_case)


SECTIONS = {"p2p": section_p2p}
EXTRA_SECTIONS = {"p2p_patterns": section_p2p_patterns}
