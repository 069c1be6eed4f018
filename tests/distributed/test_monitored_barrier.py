"""``monitored_barrier`` (distnn/distributed/monitored_barrier.py): on in-process worlds
it passes on 1-5 ranks, in subgroups, and leaves the group working; when ranks stay
away rank 0 names the first of them (or, with ``wait_all_ranks``, all) in torch's
words within the timeout, and the ranks that arrived fail too, quoting it. Across real
processes, rank 0's message is torch's gloo's, word for word (workers/exchanges.py)."""

import importlib
import sys
import time
from datetime import timedelta

import numpy as np
import pytest

import distnn.distributed as dist
from distnn.distributed.inprocess import run_threads
from multiproc import REPO, format_results, json_lines, run_ranks

sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
from exchange_oracle import WORKER, outcome  # noqa: E402

TIMEOUT = 10.0
GRACE = importlib.import_module("distnn.distributed.monitored_barrier").RELEASE_GRACE_S


@pytest.mark.parametrize("wait_all", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
def test_passes_and_leaves_the_group_working(world, wait_all):
    def body(rank):
        for timeout in (timedelta(seconds=5), 5, None):
            assert dist.monitored_barrier(timeout=timeout, wait_all_ranks=wait_all) is None
            x = np.full(2, rank, "int64")
            dist.all_reduce(x)
            assert x.tolist() == [world * (world - 1) // 2] * 2
        dist.barrier()
        return True
    assert run_threads(world, body, timeout=TIMEOUT) == [True] * world


def test_in_a_subgroup_rank_0_is_the_groups_first():
    """In a group of world ranks 2, 3 and 4, world rank 2 collects; it names a missing
    member by its world rank."""
    def body(rank):
        group = dist.new_group([2, 3, 4])
        if rank >= 2:
            dist.monitored_barrier(group, timeout=5)
            if rank != 4:
                with pytest.raises(dist.DistributedError) as info:
                    dist.monitored_barrier(group, timeout=0.3)
                return str(info.value)
        return None
    results = run_threads(5, body, timeout=TIMEOUT)
    assert results[2] == "[Rank 2]: Rank 4 failed to pass monitoredBarrier in 300 ms"
    assert results[3].startswith("Rank 3 successfully reached monitoredBarrier, but received errors while "
                                 "waiting for send/recv from rank 2."), results[3]


MISSING = [  # (world, the ranks that never call it, wait_all_ranks, rank 0's message)
    (2, [1], False, "[Rank 0]: Rank 1 failed to pass monitoredBarrier in 400 ms"),
    (3, [2], False, "[Rank 0]: Rank 2 failed to pass monitoredBarrier in 400 ms"),
    (4, [1, 3], False, "[Rank 0]: Rank 1 failed to pass monitoredBarrier in 400 ms"),
    (4, [1, 3], True, "[Rank 0]: Ranks 1, 3 failed to pass monitoredBarrier in 400 ms"),
    (5, [4], True, "[Rank 0]: Rank 4 failed to pass monitoredBarrier in 400 ms"),
    (5, [1, 2, 3, 4], True, "[Rank 0]: Ranks 1, 2, 3, 4 failed to pass monitoredBarrier in 400 ms"),
]


@pytest.mark.parametrize("world, missing, wait_all, message", MISSING)
def test_rank_0_names_the_ranks_that_did_not_arrive(world, missing, wait_all, message):
    """Rank 0 fails at its deadline with torch's message; every rank that arrived fails
    then too (not at its own timeout), quoting rank 0; a missing rank that comes late
    finds the group failed."""
    def call(rank):
        if rank in missing:
            time.sleep(0.8)
        dist.monitored_barrier(timeout=timedelta(milliseconds=400), wait_all_ranks=wait_all)

    results = run_threads(world, outcome(call), timeout=TIMEOUT)
    error, elapsed = results[0]
    assert isinstance(error, dist.DistributedTimeoutError) and str(error) == message, f"{error!r}"
    assert 0.4 <= elapsed < 0.4 + 0.5, elapsed
    for rank, (error, elapsed) in enumerate(results[1:], 1):
        context = f"rank {rank}: {error!r} after {elapsed:.1f}s"
        assert isinstance(error, dist.DistributedError), context
        assert str(error).startswith(f"Rank {rank} successfully reached monitoredBarrier, but received errors "
                                     f"while waiting for send/recv from rank 0. Please check rank 0 logs for "
                                     f"faulty rank.\n Original exception: \n"), context
        assert message in str(error), context
        if rank not in missing:
            assert elapsed < 0.4 + GRACE, context


@pytest.mark.parametrize("rank_0", ["busy", "gone"])
def test_ranks_waiting_for_rank_0_fail(rank_0):
    """Ranks that arrived but get no release say so after the timeout and a grace, naming
    rank 0; at once if rank 0 has left the group."""
    def call(rank):
        if rank != 0:
            dist.monitored_barrier(timeout=0.2)
        elif rank_0 == "busy":
            time.sleep(0.2 + GRACE + 0.5)
    results = run_threads(3, outcome(call), timeout=TIMEOUT)
    assert results[0][0] is None
    for rank in (1, 2):  # the first to fail tells the other, which may quote it instead
        error, elapsed = results[rank]
        context = f"rank {rank}: {error!r} after {elapsed:.1f}s"
        assert str(error).startswith(f"Rank {rank} successfully reached monitoredBarrier"), context
        if rank_0 == "busy":
            assert "no release from rank 0 within" in str(error), context
            assert 0.2 + GRACE - 0.1 <= elapsed < 0.2 + GRACE + 0.5, context
        else:
            assert "rank 0 left the process group" in str(error), context
            assert elapsed < 0.2 + GRACE, context
    if rank_0 == "busy":
        assert any(isinstance(results[rank][0], dist.DistributedTimeoutError) for rank in (1, 2)), results


@pytest.mark.parametrize("timeout", [0, -1, timedelta(seconds=-2)])
def test_refuses_a_timeout_that_is_not_positive(timeout):
    def body(rank):
        with pytest.raises(ValueError, match="Expect: a positive timeout"):
            dist.monitored_barrier(timeout=timeout)
        dist.monitored_barrier(timeout=5)
        return True
    assert run_threads(2, body, timeout=TIMEOUT) == [True, True]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world, missing, wait_all", [(3, "2", "0"), (4, "1,3", "1")])
def test_rank_0_says_what_torch_gloo_says(world, missing, wait_all):
    """A passing monitored_barrier and an all_reduce, then one that ``missing`` skip (1 s
    timeout): rank 0's message is gloo's first line; the arrived ranks begin as gloo's."""
    pytest.importorskip("torch")
    errors = {}
    for lib in ("distnn", "torch"):
        results = run_ranks(WORKER, world, [lib, "-", "monitored", 1000, wait_all, missing], timeout=60)
        assert all(r.returncode == 0 for r in results), format_results(results)[-4000:]
        errors[lib] = [[rec["monitored"] for rec in json_lines(r.stdout) if "monitored" in rec][0] for r in results]
    skipped = {int(r) for r in missing.split(",")}
    mine, theirs = errors["distnn"], errors["torch"]
    assert mine[0] == theirs[0].split("\n")[0], (mine[0], theirs[0])
    for rank in range(1, world):
        if rank in skipped:
            assert mine[rank] is None and theirs[rank] is None
        else:
            assert mine[rank].split("\n")[0] == theirs[rank].split("\n")[0], (mine[rank], theirs[rank])
