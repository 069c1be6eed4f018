"""Process groups (distnn/distributed/process_group.py) on in-process worlds: subgroups
reduce by the hosts they span (shared memory, sockets or two levels), disjoint
subgroups run at once, new_group checks its ranks, and asynchronous collectives of
every kind queued together each keep their own result."""

import numpy as np
import pytest

import distnn.distributed as dist
from collective_check import (F32, HALF, SEG, ReduceOp, assert_equal, assert_reduced, inputs, layout, one_host,
                              pairwise, reduced, sockets)
from distnn.distributed.inprocess import run_threads


SUBGROUPS = [(0, 1), (2, 3), (1, 2), (0, 2, 3), (0, 1, 2, 3)]


def test_subgroups_reduce_by_the_hosts_they_span(algorithms):
    """Hosts [0, 0, 1, 1]: groups within a host reduce through shared memory, a group of one
    rank per host through sockets, the others on two levels; every member agrees, and
    non-members get NON_GROUP_MEMBER."""
    n = 100000  # past every direct limit

    def body(rank):
        groups = [dist.new_group(list(ranks)) for ranks in SUBGROUPS]  # every rank, in one order
        got = {}
        for ranks, group in zip(SUBGROUPS, groups):
            if rank not in ranks:
                assert group is dist.GroupMember.NON_GROUP_MEMBER and dist.get_rank(group) == -1
                with pytest.raises(dist.DistributedError, match="not a member"):
                    dist.all_reduce(np.zeros(1, "float32"), group=group)
                continue
            assert (dist.get_rank(group), dist.get_world_size(group)) == (ranks.index(rank), len(ranks))
            assert dist.get_global_rank(group, len(ranks) - 1) == ranks[-1]
            for size in (7, n):
                x = inputs(rank, size, "float32", salt=len(ranks))
                dist.all_reduce(x, group=group)
                got[ranks, size] = x
            b = inputs(rank, 9, "int64")
            dist.broadcast(b, src=ranks[-1], group=group)
            got[ranks, "broadcast"] = b
        return got
    results = run_threads(4, body, hosts=[0, 0, 1, 1])
    for ranks in SUBGROUPS:
        for size in (7, n):
            parts = [inputs(q, size, "float32", salt=len(ranks)) for q in ranks]
            assert_reduced([results[q][ranks, size] for q in ranks], parts, ReduceOp.SUM,
                           f"all_reduce of {size} in group {ranks}")
        for q in ranks:
            assert_equal(results[q][ranks, "broadcast"], inputs(ranks[-1], 9, "int64"), f"broadcast in {ranks}")
    for ranks, name in zip(SUBGROUPS, ["shm_one_round", "shm_one_round", "ring", "hierarchical", "hierarchical"]):
        assert {used for used, members in algorithms if members == ranks} == {pairwise(len(ranks)), name}, ranks


def test_disjoint_subgroups_run_at_once():
    """Ranks {0, 2} and {1, 3} of one host each reduce in their own group, concurrently and
    with several steps of shared memory, then the world reduces the results."""
    n = int(1.5 * HALF / F32)

    def body(rank):
        evens, odds = dist.new_group([0, 2]), dist.new_group([1, 3])
        group = evens if rank % 2 == 0 else odds
        x = inputs(rank, n, "float32")
        dist.all_reduce(x, op=ReduceOp.MAX, group=group)
        dist.all_reduce(x, op=ReduceOp.MIN)
        return x
    results = run_threads(4, body)
    pairs = [reduced([inputs(q, n, "float32") for q in (p, p + 2)], ReduceOp.MAX) for p in (0, 1)]
    assert_reduced(results, pairs, ReduceOp.MIN, "world MIN of the subgroups' MAX")


def test_new_group_refuses_ranks_outside_the_world():
    def body(rank):
        with pytest.raises(ValueError, match=r"Expect: ranks within \[0, 2\), Actual: \[0, 2\]"):
            dist.new_group([0, 2])
        return dist.get_world_size(dist.new_group())
    assert run_threads(2, body) == [2, 2]


@pytest.mark.parametrize("world_size, hosts", [one_host(2), one_host(3), sockets(3), layout(4, [0, 0, 1, 1])])
def test_several_collectives_in_flight(world_size, hosts):
    """Asynchronous collectives of every kind queued at once (and a posted receive), then a
    synchronous one behind them; waited for in reverse order, each holds its own result."""
    big = int(1.5 * SEG / F32)

    def body(rank):
        a = inputs(rank, big, "float32")
        b = inputs(rank, 7, "int64")
        gathered = np.zeros(world_size * 1000, "float64")
        rs_out = np.zeros(3, "int32")
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        p2p = np.zeros(5, "float16")
        works = [dist.all_reduce(a, op=ReduceOp.AVG, async_op=True),
                 dist.irecv(p2p, src=left),
                 dist.broadcast(b, src=world_size - 1, async_op=True),
                 dist.all_gather_into_tensor(gathered, inputs(rank, 1000, "float64"), async_op=True),
                 dist.reduce_scatter_tensor(rs_out, inputs(rank, 3 * world_size, "int32"), op=ReduceOp.MAX,
                                            async_op=True),
                 dist.barrier(async_op=True),
                 dist.isend(inputs(rank, 5, "float16"), dst=right)]
        c = inputs(rank, 100, "float32")
        dist.all_reduce(c)
        for work in reversed(works):
            assert work.wait() is True
            assert work.is_completed() and work.is_success() and work.exception() is None
        return a, b, gathered, rs_out, p2p, c
    results = run_threads(world_size, body, hosts)
    assert_reduced([r[0] for r in results], [inputs(q, big, "float32") for q in range(world_size)],
                   ReduceOp.AVG, "async all_reduce AVG")
    assert_reduced([r[5] for r in results], [inputs(q, 100, "float32") for q in range(world_size)],
                   ReduceOp.SUM, "sync all_reduce behind async ones")
    gathered = np.concatenate([inputs(q, 1000, "float64") for q in range(world_size)])
    maxima = reduced([inputs(q, 3 * world_size, "int32") for q in range(world_size)], ReduceOp.MAX)
    for rank, (_, b, got, rs_out, p2p, _) in enumerate(results):
        assert_equal(b, inputs(world_size - 1, 7, "int64"), f"async broadcast on rank {rank}")
        assert_equal(got, gathered, f"async all_gather_into_tensor on rank {rank}")
        assert_equal(rs_out, maxima[3 * rank:3 * rank + 3], f"async reduce_scatter on rank {rank}")
        assert_equal(p2p, inputs((rank - 1) % world_size, 5, "float16"), f"irecv on rank {rank}")
