"""What the in-process collective tests share (test_collectives.py, test_p2p.py,
test_object_collectives.py, test_process_group.py): world layouts (ranks on one host,
a host per rank, mixed hosts), inputs per rank, numpy's reduction in rank order with
its round-off bound, the checks that results are bit-identical on every rank and
equal to it. The ``algorithms`` fixture (a spy on the all-reduce algorithms) is in
tests/distributed/conftest.py."""

import functools

import numpy as np
import pytest

import distnn.distributed as dist
from distnn.distributed import collectives, shm_regions

ReduceOp = dist.ReduceOp
DTYPES = ("float32", "float64", "float16", "int64", "int32", "uint8", "bool")
BITWISE = (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)
UFUNCS = {ReduceOp.SUM: np.add, ReduceOp.AVG: np.add, ReduceOp.PRODUCT: np.multiply, ReduceOp.MIN: np.minimum,
          ReduceOp.MAX: np.maximum, ReduceOp.BAND: np.bitwise_and, ReduceOp.BOR: np.bitwise_or,
          ReduceOp.BXOR: np.bitwise_xor}
SEG = collectives.SEGMENT_BYTES
DIRECT = collectives.DIRECT_MAX_BYTES
ONE_ROUND = collectives.SHM_ONE_ROUND_MAX_BYTES
HALF = shm_regions.HALF_BYTES
F32 = np.dtype("float32").itemsize


def allows(op, dtype):
    """torch's dtype rules: AVG needs floats, the bitwise ops integers or bool."""
    kind = np.dtype(dtype).kind
    if op is ReduceOp.AVG:
        return kind == "f"
    if op in BITWISE:
        return kind in "iub"
    return True


OP_DTYPES = [(op, dtype) for op in ReduceOp for dtype in DTYPES if allows(op, dtype)]


def layout(world_size, hosts):
    return pytest.param(world_size, hosts, id=f"w{world_size}-hosts{''.join(map(str, hosts))}")


def one_host(n):
    return layout(n, [0] * n)


def sockets(n):
    return layout(n, list(range(n)))


LAYOUTS = [one_host(1), one_host(2), sockets(2), one_host(3), sockets(3), one_host(4), sockets(4),
           layout(4, [0, 0, 1, 1]), layout(4, [0, 1, 0, 1]), one_host(5), sockets(5), layout(5, [0, 0, 0, 1, 1])]
FEW_LAYOUTS = [one_host(2), sockets(3), one_host(4), layout(4, [0, 0, 1, 1]), one_host(5), sockets(5)]


# --- inputs and checks ----------------------------------------------------------------------

def inputs(rank, n, dtype, op=ReduceOp.SUM, salt=0):
    """Rank ``rank``'s ``n`` values of ``dtype``, different per rank and salt: floats
    irrational-looking (so the summation order shows as round-off), near 1 for products;
    integers small enough that numpy and the collective wrap alike (a pattern of period
    77, repeated: fast at any size)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = np.sin(np.arange(n, dtype=np.float64) * 0.37 + rank * 1.3 + salt * 0.11)
        return (1 + 0.25 * x if op is ReduceOp.PRODUCT else x).astype(dt)
    i = np.arange(min(n, 77), dtype=np.int64)
    if dt.kind == "b":
        period = ((i * 5 + rank * 7 + salt) % 3 == 0) | ((i + rank) % 7 == 0)
    else:
        v = (i * 7 + rank * 13 + salt * 5) % 11
        period = (v - 5 if dt.kind == "i" else v * 23).astype(dt)
    return np.resize(period, n)


def reduced(parts, op):
    """numpy's reduction of ``parts`` in rank order (AVG: the sum divided in the dtype)."""
    total = functools.reduce(UFUNCS[op], parts)
    if op is ReduceOp.AVG:
        return (total / np.array(len(parts), total.dtype)).astype(total.dtype)
    return total


def tolerance(parts, op):
    """Round-off bound of reducing ``parts`` in another order, or None when the result is
    exact whatever the order (integers, bool, MIN, MAX)."""
    dtype = parts[0].dtype
    if dtype.kind != "f" or op in (ReduceOp.MIN, ReduceOp.MAX):
        return None
    eps, magnitudes = np.finfo(dtype).eps, [np.abs(p.astype(np.float64)) for p in parts]
    if op is ReduceOp.PRODUCT:
        return 2 * len(parts) * eps * functools.reduce(np.multiply, magnitudes)
    return len(parts) * eps * functools.reduce(np.add, magnitudes)


def assert_equal(actual, expected, what, tol=None):
    """Exact, or within ``tol`` (an array or scalar) for floats; names the first bad element."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        f"{what}: Expect: {expected.dtype} {expected.shape}, Actual: {actual.dtype} {actual.shape}")
    if tol is None:
        bad = actual != expected
    else:
        bad = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) > tol
    if bad.any():
        first = np.flatnonzero(bad.reshape(-1))[0]
        raise AssertionError(f"{what}: {int(bad.sum())} of {expected.size} elements differ; first at flat "
                             f"index {first}: Expect: {expected.reshape(-1)[first]!r}, "
                             f"Actual: {actual.reshape(-1)[first]!r}")


def assert_bit_identical(results, what):
    for rank, result in enumerate(results[1:], 1):
        assert result.dtype == results[0].dtype and result.shape == results[0].shape, (
            f"{what}: rank {rank} has {result.dtype} {result.shape}, rank 0 {results[0].dtype} {results[0].shape}")
        if result.tobytes() != results[0].tobytes():
            first = np.flatnonzero(result.view(np.uint8) != results[0].view(np.uint8))[0] // result.itemsize
            raise AssertionError(f"{what}: rank {rank}'s result differs from rank 0's first at flat index "
                                 f"{first}: {result.reshape(-1)[first]!r} vs {results[0].reshape(-1)[first]!r}")


def assert_reduced(results, parts, op, what):
    """Every rank's ``results`` bit-identical, and equal to numpy's reduction of ``parts``."""
    assert_bit_identical(results, what)
    assert_equal(results[0], reduced(parts, op), what, tolerance(parts, op))


def world_algorithms(used, world_size):
    """The names of the algorithms the world group itself ran (not its hosts or lanes)."""
    return {name for name, members in used if members == tuple(range(world_size))}


def pairwise(world_size):
    return "recursive_doubling" if world_size & (world_size - 1) == 0 else "direct"
