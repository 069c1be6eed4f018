"""What the tests of all_to_all, batch_isend_irecv and monitored_barrier and their
worker (exchanges.py) share: the inputs, every rank's outcome of an in-process run, and
the worker's run on distnn and on torch's gloo, whose results must be bit-identical."""

import time

import numpy as np

WORKER = "tests/distributed/workers/exchanges.py"


def values(rank, n, dtype, salt=0):
    """``n`` values of ``dtype``, distinct per rank, position and salt, exact in every dtype."""
    v = (np.arange(n, dtype=np.int64) * 7 + rank * 31 + salt * 3) % 101
    if np.dtype(dtype).kind == "b":
        return v % 3 == 0
    return (v - 50 if np.dtype(dtype).kind in "if" else v).astype(dtype)


def outcome(fn):
    """``fn(rank)`` made to return, on every rank, (its error or None, seconds it took)."""
    def body(rank):
        started = time.monotonic()
        try:
            fn(rank)
        except Exception as exc:  # noqa: BLE001 - judged by the test
            return exc, time.monotonic() - started
        return None, time.monotonic() - started
    return body


def run_both(section, world, tmp_path):
    """Run the worker's ``section`` on distnn and on torch's gloo; returns per rank the two
    libraries' {case: output}."""
    from multiproc import format_results, run_ranks  # tests/ is on the tests' path, not the worker's
    for lib in ("distnn", "torch"):
        results = run_ranks(WORKER, world, [lib, tmp_path, "data", section], timeout=100)
        assert all(r.returncode == 0 for r in results), format_results(results)[-4000:]
    return [(np.load(tmp_path / f"distnn-rank{r}.npz"), np.load(tmp_path / f"torch-rank{r}.npz"))
            for r in range(world)]


def assert_same_as_torch(per_rank, min_cases):
    for rank, (mine, torch_out) in enumerate(per_rank):
        assert sorted(mine.files) == sorted(torch_out.files) and len(mine.files) >= min_cases, (
            rank, sorted(mine.files), sorted(torch_out.files))
        for case in torch_out.files:
            a, b = mine[case], torch_out[case]
            assert a.dtype == b.dtype and a.shape == b.shape, (rank, case, a.dtype, a.shape, b.dtype, b.shape)
            assert a.tobytes() == b.tobytes(), f"rank {rank} {case}: distnn {a.reshape(-1)[:8]}, " \
                                               f"torch {b.reshape(-1)[:8]}"
