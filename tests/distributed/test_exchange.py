"""The checks every message of a collective passes (distnn/distributed/exchange.py,
with wire.py's header comparison and shm.py's signals) on in-process worlds: ranks
that disagree about a collective's op, dtype, shape, root or order, or that leave,
end with a DistributedError on every rank, fast, naming what differs and the rank
it differs with. test_faults.py checks the same across real processes."""

import re
import sys
import threading

import numpy as np
import pytest

import distnn.distributed as dist
from distnn.distributed.inprocess import run_threads
from multiproc import REPO

sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
from exchange_oracle import outcome  # noqa: E402

TIMEOUT = 10.0  # the group timeout: a rank that waits this long instead of failing fails the test
FIELD = {"shape": "shape", "empty": "shape", "dtype": "dtype", "op": "op", "collective": "op", "src": "src",
         "dst": "dst", "order": "dtype", "missing": "op"}


def data(rank, n, dtype="float32"):
    return (np.arange(n) % 13 + rank).astype(dtype)


def mismatched_call(kind, rank, world_size, odd, n, async_op):
    """Rank ``odd``'s collective differs from the others' in ``kind``; returns its Work."""
    differs = rank == odd
    x = data(rank, {"shape": n + 1, "empty": 0}.get(kind, n) if differs else n,
             "float64" if differs and kind == "dtype" else "float32")
    if kind == "collective" and differs:
        return dist.broadcast(x, 0, async_op=async_op)
    if kind == "src":  # every rank broadcasts; the odd one names itself the root
        return dist.broadcast(x, odd if differs else (odd + 1) % world_size, async_op=async_op)
    if kind == "dst":  # every rank gathers; the odd one names itself the destination
        dst = odd if differs else (odd + 1) % world_size
        outs = [np.empty_like(x) for _ in range(world_size)] if rank == dst else None
        return dist.gather(x, outs, dst=dst, async_op=async_op)
    if kind == "order":  # the same two all_reduces, the odd rank's in the other order
        calls = [data(rank, n, "int64"), x]
        for y in reversed(calls) if differs else calls:
            work = dist.all_reduce(y, async_op=async_op)
        return work
    if kind == "missing" and not differs:  # the odd rank skips a barrier
        dist.barrier()
    op = dist.ReduceOp.MAX if differs and kind == "op" else dist.ReduceOp.SUM
    return dist.all_reduce(x, op=op, async_op=async_op)


MISMATCHES = [  # (kind, elements, world size, the rank that differs, how the call is made)
    ("shape", 7, 3, 1, "sync"), ("shape", 100000, 3, 1, "sync"), ("shape", 100000, 2, 0, "sync"),
    ("dtype", 7, 3, 1, "sync"), ("dtype", 100000, 3, 1, "sync"),
    ("op", 7, 3, 1, "sync"), ("op", 100000, 3, 2, "sync"),
    ("collective", 7, 3, 1, "sync"), ("collective", 100000, 3, 1, "sync"), ("collective", 100000, 2, 0, "sync"),
    ("empty", 7, 3, 1, "sync"), ("empty", 100000, 2, 0, "sync"),
    ("shape", 7, 3, 1, "async"), ("dtype", 100000, 3, 2, "async"),
    ("shape", 7, 4, 1, "sync"), ("dtype", 7, 4, 3, "async"),  # recursive doubling: not all ranks meet
    # After a matching all_reduce large enough for shared memory, whose later steps are
    # ordered by signals in the regions.
    ("shape", 100000, 2, 0, "warm"), ("dtype", 100000, 3, 1, "warm"), ("op", 100000, 2, 1, "warm"),
    ("collective", 100000, 2, 1, "warm"), ("empty", 100000, 3, 2, "warm"), ("shape", 7, 2, 1, "warm"),
    ("src", 7, 2, 1, "sync"), ("src", 7, 3, 2, "sync"), ("src", 100000, 3, 0, "sync"), ("src", 7, 4, 1, "async"),
    ("dst", 7, 2, 0, "sync"), ("dst", 100000, 3, 1, "sync"),
    ("order", 7, 3, 1, "sync"), ("order", 100000, 4, 0, "warm"),
    ("missing", 7, 3, 2, "sync"), ("missing", 100000, 4, 0, "warm"),
]


@pytest.mark.parametrize("shared_memory", [True, False], ids=["one_host", "sockets"])
@pytest.mark.parametrize("kind, n, world_size, odd, mode", MISMATCHES)
def test_mismatched_collective_fails_on_every_rank(kind, n, world_size, odd, mode, shared_memory):
    def call(rank):
        if mode == "warm":  # a fast rank may fail its next call before a slow one has left this
            dist.all_reduce(np.ones(100000, np.float32))
        work = mismatched_call(kind, rank, world_size, odd, n, async_op=mode == "async")
        if work is not None:
            try:
                work.wait()
            except Exception as exc:  # the failed Work reports it through its own methods too
                assert work.is_completed() and work.exception() is exc and not work.is_success()
                raise
        dist.barrier()  # a rank whose own call could not notice still hears of it here

    hosts = None if shared_memory else list(range(world_size))
    for rank, (error, elapsed) in enumerate(run_threads(world_size, outcome(call), hosts, timeout=TIMEOUT)):
        context = f"rank {rank}: {error!r} after {elapsed:.1f}s"
        assert isinstance(error, dist.DistributedError), context
        assert not isinstance(error, dist.DistributedTimeoutError), context
        message = str(error)
        assert message.startswith(f"rank {rank}:"), context
        blamed = [odd] if rank != odd else [p for p in range(world_size) if p != rank]
        assert any(f"rank {p}" in message.split(":", 1)[1] for p in blamed), context
        assert f"{FIELD[kind]} differs" in message, context
        assert elapsed < TIMEOUT / 2, context


def test_a_mismatch_breaks_the_group_for_later_calls():
    """After a failed collective every later call on that rank fails at once, naming the
    first failure, instead of meeting peers that are out of step."""
    def call(rank):
        try:
            dist.all_reduce(data(rank, 7 + rank))
        except dist.DistributedError:
            pass
        dist.all_reduce(data(rank, 7))
    for rank, (error, _) in enumerate(run_threads(2, outcome(call), timeout=TIMEOUT)):
        assert isinstance(error, dist.DistributedError), f"rank {rank}: {error!r}"
        assert "earlier failure" in str(error) and "shape differs" in str(error), f"rank {rank}: {error}"


@pytest.mark.parametrize("shared_memory, n, warm", [(True, 7, False), (True, 100000, False), (True, 100000, True),
                                                   (False, 100000, False)],
                         ids=["direct", "shm", "shm-signals", "ring"])
def test_a_rank_that_leaves_is_named_by_the_others(shared_memory, n, warm):
    """Rank 1 returns without calling the collective the others wait in: they fail naming it
    as gone, well within the group timeout."""
    def call(rank):
        if warm:
            dist.all_reduce(np.ones(100000, np.float32))
        if rank != 1:
            dist.all_reduce(data(rank, n))
    results = run_threads(3, outcome(call), None if shared_memory else [0, 1, 2], timeout=TIMEOUT)
    assert results[1][0] is None
    for rank in (0, 2):
        error, elapsed = results[rank]
        context = f"rank {rank}: {error!r} after {elapsed:.1f}s"
        assert isinstance(error, dist.DistributedError) and not isinstance(error, dist.DistributedTimeoutError), context
        # Named by this rank, or by a peer that noticed first and told this one.
        assert str(error).startswith(f"rank {rank}:") and re.search(r"rank 1 (exited|left)", str(error)), context
        assert elapsed < TIMEOUT / 2, context


def test_a_rank_that_fails_tells_the_others_why():
    """Rank 2 raises between collectives: the others, waiting for it, fail with its reason."""
    errors = {}

    def body(rank):
        dist.barrier()
        if rank == 2:
            raise ValueError("out of data")
        try:
            dist.all_reduce(data(rank, 100000))
        except dist.DistributedError as exc:
            errors[rank] = exc
    with pytest.raises(ValueError, match="out of data"):
        run_threads(3, body, timeout=TIMEOUT)
    assert sorted(errors) == [0, 1]
    for rank, error in errors.items():
        assert str(error).startswith(f"rank {rank}: rank 2 failed: out of data"), f"rank {rank}: {error}"


def test_a_rank_that_never_arrives_times_out_the_others_naming_it():
    """Rank 2 stays away (without leaving) until ranks 0 and 1 have failed."""
    failed = threading.Semaphore(0)

    def call(rank):
        if rank == 2:
            for _ in range(2):
                assert failed.acquire(timeout=30), "ranks 0 and 1 did not time out"
            return
        try:
            dist.all_reduce(data(rank, 7))
        finally:
            failed.release()
    results = run_threads(3, outcome(call), timeout=0.5)
    assert results[2][0] is None, results[2]
    for rank in (0, 1):
        error, elapsed = results[rank]
        # Its own timeout, or the abort notice of the other rank that timed out first.
        assert isinstance(error, dist.DistributedError), f"rank {rank}: {error!r}"
        assert str(error).startswith(f"rank {rank}:"), str(error)
        assert "timed out after 0.5s" in str(error) and "waiting for rank(s) [2]" in str(error), str(error)
        assert 0.4 < elapsed < 5, f"rank {rank} failed after {elapsed:.1f}s"
