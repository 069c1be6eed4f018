"""``P2POp`` and ``batch_isend_irecv`` (distnn/distributed/p2p.py) on in-process worlds
of 2-5 ranks: rings both ways, every rank to every other, receives listed before or
after the sends, several messages between one pair (paired in list order),
multi-segment messages, subgroups addressed by global or group rank; torch's argument
checks; and across real processes, the same results as torch's gloo
(workers/exchanges.py). isend/irecv themselves: rings posting receives first, receives
from any source, order across collectives (in-process here, across real processes in
test_collective_ops.py)."""

import sys

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from distnn.distributed import collectives
from collective_check import assert_equal, inputs, layout, one_host, sockets
from distnn.distributed.inprocess import run_threads
from multiproc import REPO

sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
from exchange_oracle import assert_same_as_torch, run_both, values  # noqa: E402

TIMEOUT = 10.0
SEG = collectives.SEGMENT_BYTES


def wait_all(works):
    for work in works:
        assert isinstance(work, dist.Work) and work.wait() is True and work.is_completed()


@pytest.mark.parametrize("recv_first", [True, False], ids=["recv_first", "send_first"])
@pytest.mark.parametrize("dtype, n", [("float32", 7), ("int64", 0), ("bool", 5), ("float16", int(2.5 * SEG / 2))])
@pytest.mark.parametrize("world", [2, 3, 4, 5])
def test_ring_both_ways(world, dtype, n, recv_first):
    def body(rank):
        right, left = (rank + 1) % world, (rank - 1) % world
        from_left, from_right = np.zeros(n, dtype), np.zeros(n + 1, dtype)
        sends = [dist.P2POp(dist.isend, values(rank, n, dtype), right),
                 dist.P2POp(dist.isend, distnn.from_numpy(values(rank, n + 1, dtype, salt=1)), left)]
        recvs = [dist.P2POp(dist.irecv, from_left, left), dist.P2POp(dist.irecv, from_right, right)]
        wait_all(dist.batch_isend_irecv(recvs + sends if recv_first else sends + recvs))
        return from_left, from_right

    for rank, (from_left, from_right) in enumerate(run_threads(world, body, timeout=TIMEOUT)):
        right, left = (rank + 1) % world, (rank - 1) % world
        assert np.array_equal(from_left, values(left, n, dtype)), rank
        assert np.array_equal(from_right, values(right, n + 1, dtype, salt=1)), rank


@pytest.mark.parametrize("world", [2, 3, 5])
def test_every_rank_to_every_other_with_several_messages_per_pair(world):
    """Two messages each way between every pair (of different sizes, so a wrong pairing
    fails), receives before or after the sends; list order pairs them."""
    def body(rank):
        got = {(p, i): np.zeros(3 + i, "int32") for p in range(world) if p != rank for i in range(2)}
        recvs = [dist.P2POp(dist.irecv, got[p, i], p) for (p, i) in sorted(got)]
        sends = [dist.P2POp(dist.isend, values(rank, 3 + i, "int32", salt=10 * p + i), p)
                 for p in range(world) if p != rank for i in range(2)]
        wait_all(dist.batch_isend_irecv(sends + recvs if rank % 2 else recvs + sends))
        return got

    for rank, got in enumerate(run_threads(world, body, timeout=TIMEOUT)):
        for (p, i), arr in got.items():
            assert np.array_equal(arr, values(p, 3 + i, "int32", salt=10 * rank + i)), (rank, p, i)


def test_subgroup_by_global_or_group_rank():
    """A group of world ranks 3, 1 and 4 (group ranks by world rank: 1, 3, 4): ``peer`` is
    a global rank, ``group_peer`` a group rank; the same ring either way."""
    members = [1, 3, 4]

    def body(rank):
        group = dist.new_group(members)
        if rank not in members:
            return None
        me = members.index(rank)
        nxt, prev = (me + 1) % 3, (me - 1) % 3
        a, b = np.zeros(2, "float64"), np.zeros(2, "float64")
        ops = [dist.P2POp(dist.isend, np.full(2, rank, "float64"), members[nxt], group=group),
               dist.P2POp(dist.irecv, a, members[prev], group=group),
               dist.P2POp(dist.isend, np.full(2, -rank, "float64"), group=group, group_peer=nxt),
               dist.P2POp(dist.irecv, b, group=group, group_peer=prev)]
        assert (ops[1].peer, ops[1].group_peer, ops[3].peer) == (members[prev], prev, members[prev])
        wait_all(dist.batch_isend_irecv(ops))
        return a, b

    for rank, got in enumerate(run_threads(5, body, timeout=TIMEOUT)):
        if rank in members:
            prev = members[(members.index(rank) - 1) % 3]
            assert got[0].tolist() == [prev] * 2 and got[1].tolist() == [-prev] * 2, (rank, got)


BAD = {  # name: (a call on rank 0 of a world of 3 with a subgroup ``sub`` of ranks 0 and 1, its error, its text)
    "op": (lambda sub: dist.P2POp(dist.send, np.zeros(1), 1), ValueError, r"Invalid ``op``: .*Actual: 'send'"),
    "self": (lambda sub: dist.P2POp(dist.isend, np.zeros(1), 0), ValueError, "rank 0 cannot send to itself"),
    "self_recv": (lambda sub: dist.P2POp(dist.irecv, np.zeros(1), 0), ValueError, "cannot receive from itself"),
    "outside_group": (lambda sub: dist.P2POp(dist.isend, np.zeros(1), 2, group=sub), ValueError,
                      r"peer among the group's ranks \[0, 1\], Actual: 2"),
    "both_peers": (lambda sub: dist.P2POp(dist.isend, np.zeros(1), 1, group_peer=1), ValueError,
                   "exactly one of peer and group_peer"),
    "no_peer": (lambda sub: dist.P2POp(dist.isend, np.zeros(1)), ValueError, "exactly one of peer and group_peer"),
    "group_peer_range": (lambda sub: dist.P2POp(dist.isend, np.zeros(1), group=sub, group_peer=2), ValueError,
                         r"group_peer within \[0, 2\), Actual: 2"),
    "not_a_list": (lambda sub: dist.batch_isend_irecv((dist.P2POp(dist.isend, np.zeros(1), 1),)), ValueError,
                   "p2p_op_list a list of P2POp, Actual: tuple"),
    "not_p2pop": (lambda sub: dist.batch_isend_irecv([dist.P2POp(dist.isend, np.zeros(1), 1), "x"]), ValueError,
                  r"Actual: p2p_op_list\[1\] of type str"),
    "empty": (lambda sub: dist.batch_isend_irecv([]), ValueError, "at least one P2POp"),
    "groups": (lambda sub: dist.batch_isend_irecv([dist.P2POp(dist.isend, np.zeros(1), 1),
                                                   dist.P2POp(dist.isend, np.zeros(1), 1, group=sub)]), ValueError,
               r"All ops need to use the same group: .*p2p_op_list\[1\]\.group"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_argument_errors_start_nothing(name):
    """Checked as torch checks them, before any operation of the batch starts: the ranks
    then exchange as usual."""
    call, error, text = BAD[name]

    def body(rank):
        sub = dist.new_group([0, 1])
        if rank == 0:
            with pytest.raises(error, match=text):
                call(sub)
        x = np.full(1, rank, "int64")
        dist.all_reduce(x)
        return int(x[0])
    assert run_threads(3, body, timeout=TIMEOUT) == [3, 3, 3]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world", [2, 3])
def test_same_results_as_torch_gloo(world, tmp_path):
    """Rings both ways (two messages each way on two ranks), 2.5 MiB around the ring, every
    rank to every other: bit-identical to torch's gloo."""
    pytest.importorskip("torch")
    assert_same_as_torch(run_both("p2p", world, tmp_path), min_cases=4)


# --- isend / irecv -----------------------------------------------------------------------------

P2P_SIZES = (0, 7, int(2.5 * SEG / 4) + 1)  # the last: three messages of one send


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool"])
@pytest.mark.parametrize("world_size, hosts", [one_host(2), sockets(2), one_host(3), layout(4, [0, 0, 1, 1])])
def test_ring_exchange_posting_receives_first(world_size, hosts, dtype):
    """Every rank posts its irecv from the left before its isend to the right (as torch
    allows), for each size; then blocking send/recv the other way round the ring."""
    def body(rank):
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        got = {}
        for n in P2P_SIZES:
            out = np.zeros(n, dtype)
            incoming = dist.irecv(out, src=left)
            outgoing = dist.isend(inputs(rank, n, dtype), dst=right)
            assert outgoing.wait() is True and incoming.wait() is True
            assert incoming.result() == left
            back = np.zeros(n, dtype)
            if rank % 2 == 0:
                dist.send(inputs(rank, n, dtype, salt=1), dst=left)
                assert dist.recv(back, src=right) == right
            else:
                assert dist.recv(back, src=right) == right
                dist.send(inputs(rank, n, dtype, salt=1), dst=left)
            got[n] = out, back
        return got
    results = run_threads(world_size, body, hosts)
    for rank, got in enumerate(results):
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        for n in P2P_SIZES:
            assert_equal(got[n][0], inputs(left, n, dtype), f"isend/irecv of {n} {dtype} at rank {rank}")
            assert_equal(got[n][1], inputs(right, n, dtype, salt=1), f"send/recv of {n} {dtype} at rank {rank}")


@pytest.mark.parametrize("world_size, hosts", [one_host(3), sockets(4), layout(5, [0, 0, 0, 1, 1])])
def test_irecv_from_any_source(world_size, hosts):
    """Rank 0 posts one receive per peer from any source; every peer sends a message of
    several segments, all at once. Each receive takes one whole message, and says whose."""
    n = P2P_SIZES[-1]

    def body(rank):
        if rank != 0:
            dist.send(inputs(rank, n, "float32"), dst=0)
            return None
        bufs = [np.zeros(n, "float32") for _ in range(world_size - 1)]
        works = [dist.irecv(b) for b in bufs]
        return [(w.result(), b) for w, b in zip(works, bufs)]
    received = run_threads(world_size, body, hosts)[0]
    assert sorted(sender for sender, _ in received) == list(range(1, world_size))
    for sender, buf in received:
        assert_equal(buf, inputs(sender, n, "float32"), f"message received from rank {sender} (any source)")


def test_messages_between_two_ranks_keep_their_order_and_wait_across_collectives():
    """A receive posted before a barrier completes after it; sends pair with receives in
    order; sending to oneself is refused."""
    def body(rank):
        if rank == 0:
            with pytest.raises(ValueError, match="cannot send to itself"):
                dist.isend(np.zeros(1, "float32"), 0)
            dist.barrier()
            for salt in range(3):
                dist.send(inputs(0, 5, "int32", salt=salt), 1)
            return None
        first = np.zeros(5, "int32")
        pending = dist.irecv(first, src=0)
        dist.barrier()
        rest = [np.zeros(5, "int32") for _ in range(2)]
        for b in rest:
            dist.recv(b, src=0)
        pending.wait()
        return [first] + rest
    received = run_threads(2, body)[1]
    for salt, buf in enumerate(received):
        assert_equal(buf, inputs(0, 5, "int32", salt=salt), f"message {salt} from rank 0")
