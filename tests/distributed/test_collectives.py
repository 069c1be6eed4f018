"""The collective algorithms (distnn/distributed/collectives.py, and the two-level
all-reduce of hierarchical.py) on in-process worlds (``inprocess.run_threads``: every
rank a thread, with the real groups, headers, communication threads and shared-memory
staging), over world size x message size x dtype x op, with shared memory (one host),
without it (a host per rank) and on mixed hosts. Sizes sit on either side of every
threshold, and a spy on the algorithm functions checks that each branch was taken.
Every result must be bit-identical on every rank and equal to numpy's reduction in
rank order: exactly for integers and bool, to float round-off otherwise.
test_collective_ops.py runs the same calls across real processes."""

import functools
import time

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from distnn.distributed import collectives, hierarchical, shm_regions
from distnn.distributed.inprocess import run_threads

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


ALGORITHMS = {"_recursive_doubling_all_reduce": "recursive_doubling", "_direct_all_reduce": "direct",
              "ring_all_reduce": "ring", "_shm_one_round": "shm_one_round", "_shm_two_rounds": "shm_two_rounds"}


@pytest.fixture
def algorithms(monkeypatch):
    """The all-reduce algorithms that ran, as (name, global ranks of the exchange): those of
    ``collectives`` and the two-level one of ``hierarchical`` (whose lanes run the former)."""
    used = set()

    def spy(original, name):
        def run(ex, *args):
            used.add((name, tuple(ex.members)))
            return original(ex, *args)
        return run
    for function, name in ALGORITHMS.items():
        monkeypatch.setattr(collectives, function, spy(getattr(collectives, function), name))
    monkeypatch.setattr(hierarchical, "all_reduce", spy(hierarchical.all_reduce, "hierarchical"))
    return used


def world_algorithms(used, world_size):
    """The names of the algorithms the world group itself ran (not its hosts or lanes)."""
    return {name for name, members in used if members == tuple(range(world_size))}


# --- all_reduce -----------------------------------------------------------------------------

def threshold_sizes(dtype, world_size, hosts):
    """0, 1, 7, then either side of the limit of the direct paths for this layout: with
    shared memory a quarter of DIRECT_MAX_BYTES, over sockets DIRECT_MAX_BYTES, and over
    sockets between two ranks four times it; in elements of ``dtype``."""
    direct = DIRECT // np.dtype(dtype).itemsize
    if len(set(hosts)) == 1:
        limits = [direct // 4]
    elif len(set(hosts)) == world_size:
        limits = [4 * direct if world_size == 2 else direct]
    else:
        limits = [direct // 4, direct]  # the world over sockets; its hosts' subgroups may use memory
    return (0, 1, 7) + tuple(n for limit in limits for n in (limit, limit + 1))


def pairwise(world_size):
    return "recursive_doubling" if world_size & (world_size - 1) == 0 else "direct"


def expected_small_algorithms(world_size, hosts):
    """The algorithms the world group takes at ``threshold_sizes``: pairwise exchanges up to
    the direct limit, then shared memory (one host), the ring (a host per rank), or the
    two-level all-reduce (hosts of several ranks)."""
    if world_size == 1:
        return set()
    if len(set(hosts)) == 1:
        return {pairwise(world_size), "shm_one_round"}
    if len(set(hosts)) == world_size:
        return {pairwise(world_size), "ring"}
    return {pairwise(world_size), "hierarchical"}


def run_all_reduce(world_size, hosts, op, dtype, sizes, kind="numpy"):
    """Every rank all-reduces its ``inputs`` of each size; returns per size every rank's result."""
    def body(rank):
        results = []
        for n in sizes:
            x = inputs(rank, n, dtype, op)
            assert dist.all_reduce(distnn.from_numpy(x) if kind == "tensor" else x, op=op) is None
            results.append(x)
        return results
    per_rank = run_threads(world_size, body, hosts)
    return [[results[i] for results in per_rank] for i in range(len(sizes))]


def check_all_reduce(world_size, hosts, op, dtype, sizes, kind="numpy"):
    for n, results in zip(sizes, run_all_reduce(world_size, hosts, op, dtype, sizes, kind)):
        parts = [inputs(r, n, dtype, op) for r in range(world_size)]
        assert_reduced(results, parts, op, f"all_reduce {op.name} of {n} {dtype} on hosts {hosts}")


@pytest.mark.parametrize("op, dtype", OP_DTYPES, ids=[f"{op.name}-{dtype}" for op, dtype in OP_DTYPES])
@pytest.mark.parametrize("world_size, hosts", LAYOUTS)
def test_all_reduce_on_either_side_of_every_threshold(world_size, hosts, op, dtype, algorithms):
    check_all_reduce(world_size, hosts, op, dtype, threshold_sizes(dtype, world_size, hosts))
    assert world_algorithms(algorithms, world_size) == expected_small_algorithms(world_size, hosts)


SOME_OP_DTYPES = [(ReduceOp.SUM, "float32"), (ReduceOp.AVG, "float64"), (ReduceOp.MAX, "int32"),
               (ReduceOp.BXOR, "uint8"), (ReduceOp.PRODUCT, "bool"), (ReduceOp.MIN, "float16")]


@pytest.mark.parametrize("op, dtype", SOME_OP_DTYPES, ids=[f"{op.name}-{dtype}" for op, dtype in SOME_OP_DTYPES])
@pytest.mark.parametrize("world_size, hosts", [one_host(8), sockets(8), layout(8, [0, 0, 0, 1, 1, 2, 2, 2]),
                                               layout(3, [0, 1, 1]), layout(4, [0, 0, 0, 1]),
                                               layout(5, [0, 0, 1, 2, 2]), layout(5, [1, 0, 0, 1, 2])])
def test_all_reduce_on_eight_ranks_and_uneven_hosts(world_size, hosts, op, dtype, algorithms):
    check_all_reduce(world_size, hosts, op, dtype, threshold_sizes(dtype, world_size, hosts))
    assert world_algorithms(algorithms, world_size) == expected_small_algorithms(world_size, hosts)


F32 = np.dtype("float32").itemsize
LARGE = [  # (world size, hosts, op, dtype, elements, algorithm), each a few MiB
    # Ring: chunks of ~2.5 segments, and a size no world size divides.
    pytest.param(3, [0, 1, 2], ReduceOp.SUM, "float32", int(3 * 2.5 * SEG / F32) + 2, "ring", id="ring-w3-f32"),
    pytest.param(5, list(range(5)), ReduceOp.MAX, "int64", int(5 * 1.5 * SEG / 8) + 3, "ring", id="ring-w5-i64"),
    pytest.param(2, [0, 1], ReduceOp.AVG, "float16", 2 * SEG + 1, "ring", id="ring-w2-f16"),
    pytest.param(4, [0, 1, 2, 3], ReduceOp.BXOR, "uint8", int(4 * 1.5 * SEG) + 1, "ring", id="ring-w4-u8"),
    pytest.param(8, list(range(8)), ReduceOp.SUM, "int32", int(8 * 1.2 * SEG / 4) + 5, "ring", id="ring-w8-i32"),
    # Shared memory, one round: two ranks at any size (here several staging steps), more
    # ranks up to SHM_ONE_ROUND_MAX_BYTES.
    pytest.param(2, [0, 0], ReduceOp.SUM, "float32", int(2.5 * HALF / F32) + 1, "shm_one_round", id="shm1-w2-f32"),
    pytest.param(2, [0, 0], ReduceOp.BOR, "bool", 2 * HALF + 3, "shm_one_round", id="shm1-w2-bool"),
    pytest.param(4, [0] * 4, ReduceOp.PRODUCT, "float64", ONE_ROUND // 8 - 1, "shm_one_round", id="shm1-w4-f64"),
    pytest.param(5, [0] * 5, ReduceOp.SUM, "float16", ONE_ROUND // 2, "shm_one_round", id="shm1-w5-f16"),
    # Shared memory, two rounds: more than SHM_ONE_ROUND_MAX_BYTES, several staging steps,
    # the last one short (and smaller than the world size in one case).
    pytest.param(3, [0] * 3, ReduceOp.SUM, "float32", int(2.5 * HALF / F32) + 1, "shm_two_rounds", id="shm2-w3-f32"),
    pytest.param(5, [0] * 5, ReduceOp.MIN, "int32", ONE_ROUND // 4 + 3, "shm_two_rounds", id="shm2-w5-i32"),
    pytest.param(3, [0] * 3, ReduceOp.BAND, "uint8", ONE_ROUND + 5, "shm_two_rounds", id="shm2-w3-u8"),
    pytest.param(8, [0] * 8, ReduceOp.AVG, "float32", int(1.2 * ONE_ROUND / F32), "shm_two_rounds", id="shm2-w8-f32"),
    # Hosts of several ranks: two levels, several staging steps, uneven hosts (one lane).
    pytest.param(4, [0, 0, 1, 1], ReduceOp.SUM, "float32", int(1.5 * HALF / F32), "hierarchical", id="2lvl-w4-f32"),
    pytest.param(5, [0, 0, 0, 1, 1], ReduceOp.MAX, "float64", HALF // 8 + 7, "hierarchical", id="2lvl-w5-f64"),
    pytest.param(4, [1, 0, 0, 1], ReduceOp.PRODUCT, "float32", int(1.2 * HALF / F32), "hierarchical",
                 id="2lvl-w4-interleaved-f32"),
    pytest.param(3, [0, 1, 1], ReduceOp.BXOR, "int32", HALF // 4 + 2, "hierarchical", id="2lvl-w3-uneven-i32"),
    pytest.param(5, [0, 0, 1, 2, 2], ReduceOp.AVG, "float16", int(1.1 * HALF / 2), "hierarchical",
                 id="2lvl-w5-uneven-f16"),
    pytest.param(6, [0, 0, 0, 1, 1, 1], ReduceOp.MIN, "float32", HALF // F32 + 2, "hierarchical",
                 id="2lvl-w6-last-step-shorter-than-lanes"),
]


@pytest.mark.parametrize("world_size, hosts, op, dtype, n, algorithm", LARGE)
def test_large_all_reduce(world_size, hosts, op, dtype, n, algorithm, algorithms):
    check_all_reduce(world_size, hosts, op, dtype, [n], kind="tensor")
    assert world_algorithms(algorithms, world_size) == {algorithm}


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("shape", [(), (3, 4, 5), (2, 0, 3), (1, 1, 7, 1)], ids=str)
def test_all_reduce_keeps_shape_and_writes_in_place(shape, kind):
    """The result lands in the caller's own tensor or array (a Tensor's version counts
    the write), whatever its shape, and in a non-contiguous view's base."""
    size = int(np.prod(shape))

    def body(rank):
        x = inputs(rank, size, "float64").reshape(shape)
        t = distnn.from_numpy(x) if kind == "tensor" else x
        version = t._version if kind == "tensor" else None
        dist.all_reduce(t)
        if kind == "tensor":
            assert t._version > version
        base = np.zeros((size, 2), "int32")
        base[:, 0] = inputs(rank, size, "int32")
        dist.all_reduce(base[:, 0], op=ReduceOp.MAX)  # a strided view: reduced in a copy, written back
        return (t.numpy() if kind == "tensor" else t), base

    results = run_threads(3, body)
    assert_reduced([r[0] for r in results], [inputs(q, size, "float64").reshape(shape) for q in range(3)],
                   ReduceOp.SUM, f"all_reduce of shape {shape}")
    strided = [r[1] for r in results]
    assert_reduced([s[:, 0].copy() for s in strided], [inputs(q, size, "int32") for q in range(3)],
                   ReduceOp.MAX, "all_reduce of a strided view")
    assert all(not s[:, 1].any() for s in strided), "all_reduce of a column wrote outside it"


@pytest.mark.parametrize("op, dtype", [(ReduceOp.AVG, "int32"), (ReduceOp.AVG, "bool"), (ReduceOp.BAND, "float32"),
                                       (ReduceOp.BXOR, "float16"), (ReduceOp.BOR, "float64")])
def test_ops_refuse_dtypes_they_cannot_reduce(op, dtype):
    """Refused before anything is sent, so the group still works afterwards."""
    def body(rank):
        for call in (lambda x: dist.all_reduce(x, op=op), lambda x: dist.reduce(x, 0, op=op),
                     lambda x: dist.reduce_scatter_tensor(x[:1], x, op=op)):
            with pytest.raises(TypeError, match=f"ReduceOp.{op.name} needs .*, got {dtype}"):
                call(np.zeros(2, dtype))
        x = inputs(rank, 5, "float32")
        dist.all_reduce(x)
        return x
    results = run_threads(2, body)
    assert_reduced(results, [inputs(q, 5, "float32") for q in range(2)], ReduceOp.SUM, "all_reduce after refusals")


# --- broadcast, reduce ----------------------------------------------------------------------

def chain_sizes(dtype):
    """Empty, tiny, the direct limit, just past it (a chain of one segment), and a chain of
    2.5 segments (the last one short)."""
    direct, seg = DIRECT // np.dtype(dtype).itemsize, SEG // np.dtype(dtype).itemsize
    return (0, 1, 7, direct, direct + 1, int(2.5 * seg))


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool", "float16"])
@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS)
def test_broadcast_from_every_root(world_size, hosts, dtype):
    sizes = chain_sizes(dtype) if dtype == "float32" else chain_sizes(dtype)[:-1]

    def body(rank):
        got = {}
        for root in range(world_size):
            for n in sizes:
                x = inputs(rank, n, dtype, salt=root)
                assert dist.broadcast(x, src=root) is None
                got[root, n] = x
        return got
    results = run_threads(world_size, body, hosts)
    for (root, n) in results[0]:
        expected = inputs(root, n, dtype, salt=root)
        for rank, got in enumerate(results):
            assert_equal(got[root, n], expected, f"broadcast of {n} {dtype} from {root} on rank {rank}")


@pytest.mark.parametrize("op, dtype", [(ReduceOp.SUM, "float32"), (ReduceOp.AVG, "float64"), (ReduceOp.MIN, "int32"),
                                       (ReduceOp.PRODUCT, "int64"), (ReduceOp.BOR, "bool")],
                         ids=lambda v: getattr(v, "name", v))
@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS)
def test_reduce_to_every_destination(world_size, hosts, op, dtype):
    """The destination gets the reduction; every other rank keeps its input untouched."""
    sizes = (0, 7, DIRECT // np.dtype(dtype).itemsize + 1)

    def body(rank):
        got = {}
        for dst in range(world_size):
            for n in sizes:
                x = inputs(rank, n, dtype, op, salt=dst)
                assert dist.reduce(x, dst, op=op) is None
                got[dst, n] = x
        return got
    results = run_threads(world_size, body, hosts)
    for (dst, n) in results[0]:
        parts = [inputs(q, n, dtype, op, salt=dst) for q in range(world_size)]
        what = f"reduce {op.name} of {n} {dtype} to {dst}"
        assert_equal(results[dst][dst, n], reduced(parts, op), what, tolerance(parts, op))
        for rank, got in enumerate(results):
            if rank != dst:
                assert_equal(got[dst, n], parts[rank], f"{what}: rank {rank}'s input")


# --- all_gather, reduce_scatter ---------------------------------------------------------------

def ring_sizes(dtype, large):
    """Per-rank sizes: empty, tiny, and (if ``large``) 1.5 segments plus one."""
    return (0, 1, 7) + ((int(1.5 * SEG / np.dtype(dtype).itemsize) + 1,) if large else ())


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS + [one_host(1)])
def test_all_gather(world_size, hosts, dtype):
    sizes = ring_sizes(dtype, large=dtype in ("float32", "uint8"))

    def body(rank):
        got = {}
        for n in sizes:
            outs = [np.zeros(n, dtype) for _ in range(world_size)]
            assert dist.all_gather(outs, inputs(rank, n, dtype)) is None
            stacked = np.zeros((world_size, n), dtype)
            dist.all_gather_into_tensor(distnn.from_numpy(stacked), distnn.from_numpy(inputs(rank, n, dtype, salt=1)))
            got[n] = np.stack(outs), stacked
        return got
    results = run_threads(world_size, body, hosts)
    for n in sizes:
        for salt, what in ((0, "all_gather"), (1, "all_gather_into_tensor")):
            expected = np.stack([inputs(q, n, dtype, salt=salt) for q in range(world_size)])
            for rank, got in enumerate(results):
                assert_equal(got[n][salt], expected, f"{what} of {n} {dtype} on rank {rank}")


RS_CASES = [(ReduceOp.SUM, "float32"), (ReduceOp.AVG, "float16"), (ReduceOp.PRODUCT, "float64"),
            (ReduceOp.MAX, "int32"), (ReduceOp.BXOR, "int64"), (ReduceOp.BAND, "bool"), (ReduceOp.MIN, "uint8")]


@pytest.mark.parametrize("op, dtype", RS_CASES, ids=[f"{op.name}-{dtype}" for op, dtype in RS_CASES])
@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS + [one_host(1)])
def test_reduce_scatter(world_size, hosts, op, dtype):
    """Rank r gets chunk r of the reduction, through ``reduce_scatter_tensor`` and the list
    form ``reduce_scatter``; every rank's chunk equals numpy's on the stacked inputs."""
    sizes = ring_sizes(dtype, large=op in (ReduceOp.SUM, ReduceOp.BAND))

    def body(rank):
        got = {}
        for n in sizes:
            out = np.zeros(n, dtype)
            assert dist.reduce_scatter_tensor(out, inputs(rank, world_size * n, dtype, op), op=op) is None
            listed = distnn.from_numpy(np.zeros(n, dtype))
            whole = inputs(rank, world_size * n, dtype, op, salt=1)
            dist.reduce_scatter(listed, [distnn.from_numpy(c) for c in np.split(whole, world_size)], op=op)
            got[n] = out, listed.numpy()
        return got
    results = run_threads(world_size, body, hosts)
    for n in sizes:
        for salt, what in ((0, "reduce_scatter_tensor"), (1, "reduce_scatter")):
            parts = [inputs(q, world_size * n, dtype, op, salt=salt) for q in range(world_size)]
            expected, tol = reduced(parts, op), tolerance(parts, op)
            for rank, got in enumerate(results):
                chunk = slice(rank * n, (rank + 1) * n)
                assert_equal(got[n][salt], expected[chunk], f"{what} {op.name} of {n} {dtype} on rank {rank}",
                             None if tol is None else tol[chunk])


# --- gather, scatter, barrier -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "int32", "bool"])
@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS)
def test_gather_and_scatter_at_every_root(world_size, hosts, dtype):
    sizes = ring_sizes(dtype, large=dtype == "float64")

    def body(rank):
        gathered, scattered = {}, {}
        for root in range(world_size):
            for n in sizes:
                outs = [np.zeros(n, dtype) for _ in range(world_size)] if rank == root else None
                assert dist.gather(inputs(rank, n, dtype, salt=root), outs, dst=root) is None
                gathered[root, n] = outs
                out = np.zeros(n, dtype)
                parts = [inputs(q, n, dtype, salt=root + 1) for q in range(world_size)] if rank == root else None
                assert dist.scatter(out, parts, src=root) is None
                scattered[root, n] = out
        return gathered, scattered
    results = run_threads(world_size, body, hosts)
    for root in range(world_size):
        for n in sizes:
            for q in range(world_size):
                assert_equal(results[root][0][root, n][q], inputs(q, n, dtype, salt=root),
                             f"gather of {n} {dtype} to {root}: entry {q}")
                assert_equal(results[q][1][root, n], inputs(q, n, dtype, salt=root + 1),
                             f"scatter of {n} {dtype} from {root}: rank {q}'s part")
            assert all(results[q][0][root, n] is None for q in range(world_size) if q != root)


@pytest.mark.parametrize("world_size, hosts", FEW_LAYOUTS)
def test_barrier_waits_for_every_rank(world_size, hosts):
    """No rank leaves a barrier before the last (here the highest, arriving late) enters."""
    arrived = []

    def body(rank):
        seen = []
        for step in range(3):
            time.sleep(0.002 * rank)
            arrived.append((step, rank))
            work = dist.barrier(async_op=step == 2)  # the last one through a Work handle
            if work is not None:
                work.wait()
            seen.append(sum(1 for s, _ in list(arrived) if s == step))
        return seen
    for rank, seen in enumerate(run_threads(world_size, body, hosts)):
        assert seen == [world_size] * 3, f"rank {rank} left barriers having seen {seen} of {world_size} arrivals"


# --- point to point -----------------------------------------------------------------------------

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


# --- objects, groups, asynchronous work ---------------------------------------------------------

OBJECTS = [None, 3, -1.5, "text", b"\x00bytes", [1, (2, "three")], {"k": [1, 2], 5: None}, (True, False), ""]


@pytest.mark.parametrize("world_size, hosts", [one_host(1), one_host(2), sockets(3), layout(4, [0, 0, 1, 1])])
def test_object_collectives(world_size, hosts):
    def body(rank):
        broadcasts = []
        for src in range(world_size):
            objs = [OBJECTS[(rank + i) % len(OBJECTS)] for i in range(3)] if rank == src else [None] * 3
            dist.broadcast_object_list(objs, src=src)
            broadcasts.append(objs)
        gathered = []
        dist.all_gather_object(gathered, {"rank": rank, "payload": OBJECTS[rank % len(OBJECTS)], "pad": "x" * rank})
        return broadcasts, gathered
    for rank, (broadcasts, gathered) in enumerate(run_threads(world_size, body, hosts)):
        for src, objs in enumerate(broadcasts):
            assert objs == [OBJECTS[(src + i) % len(OBJECTS)] for i in range(3)], f"rank {rank}, from {src}"
        assert gathered == [{"rank": q, "payload": OBJECTS[q % len(OBJECTS)], "pad": "x" * q}
                            for q in range(world_size)], f"all_gather_object on rank {rank}"


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


# --- all_gather_into_tensor / reduce_scatter_tensor: shapes and argument checks -----------------

@pytest.mark.parametrize("layout", ["concatenated", "stacked"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_into_tensor_shapes(world_size, layout):
    """As torch's: the world's parts concatenated along dim 0 (gloo's and NCCL's layout) or
    stacked in a new dim 0 (NCCL's), in the output of all_gather_into_tensor and the input
    of reduce_scatter_tensor."""
    def whole(shape):
        return (world_size * shape[0], *shape[1:]) if layout == "concatenated" else (world_size, *shape)

    def body(rank):
        gathered = np.zeros(whole((2, 3)), "float32")
        dist.all_gather_into_tensor(gathered, inputs(rank, 6, "float32").reshape(2, 3))
        scattered = np.zeros((2, 3), "int64")
        dist.reduce_scatter_tensor(scattered, inputs(rank, world_size * 6, "int64").reshape(whole((2, 3))))
        return gathered, scattered

    sums = reduced([inputs(q, world_size * 6, "int64") for q in range(world_size)], ReduceOp.SUM)
    for rank, (gathered, scattered) in enumerate(run_threads(world_size, body)):
        expected = np.concatenate([inputs(q, 6, "float32") for q in range(world_size)]).reshape(whole((2, 3)))
        assert_equal(gathered, expected, f"all_gather_into_tensor ({layout}) on rank {rank}")
        assert_equal(scattered, sums[rank * 6:(rank + 1) * 6].reshape(2, 3),
                     f"reduce_scatter_tensor ({layout}) on rank {rank}")


INTO_TENSOR_ERRORS = {  # name: (a call on a world of 2, the ValueError's text)
    "gather_dtype": (lambda: dist.all_gather_into_tensor(np.zeros(4, "float64"), np.zeros(2, "float32")),
                     r"output of 4 float32 elements .*Actual: 4 float64"),
    "gather_size": (lambda: dist.all_gather_into_tensor(np.zeros(5, "float32"), np.zeros(2, "float32")),
                    r"output of 4 float32 elements .*Actual: 5 float32"),
    "scatter_dtype": (lambda: dist.reduce_scatter_tensor(np.zeros(2, "float64"), np.zeros(4, "float32")),
                      r"input of 4 float64 elements .*Actual: 4 float32"),
    "scatter_size": (lambda: dist.reduce_scatter_tensor(np.zeros(3, "float32"), np.zeros(4, "float32")),
                     r"input of 6 float32 elements .*Actual: 4 float32"),
    "list_shape": (lambda: dist.reduce_scatter(np.zeros((2, 2)), [np.zeros((2, 2)), np.zeros(4)]),
                   r"input_list\[1\] of shape \(2, 2\) and dtype float64 .*Actual: \(4,\) float64"),
    "list_dtype": (lambda: dist.reduce_scatter(np.zeros(2), [np.zeros(2, "float32"), np.zeros(2)]),
                   r"input_list\[0\] of shape \(2,\) and dtype float64 .*Actual: \(2,\) float32"),
}


@pytest.mark.parametrize("name", sorted(INTO_TENSOR_ERRORS))
def test_into_tensor_argument_errors(name):
    """Refused before anything is sent (torch refuses the same), so the group still works."""
    call, message = INTO_TENSOR_ERRORS[name]

    def body(rank):
        with pytest.raises(ValueError, match=message):
            call()
        x = inputs(rank, 5, "float32")
        dist.all_reduce(x)
        return x
    results = run_threads(2, body)
    assert_reduced(results, [inputs(q, 5, "float32") for q in range(2)], ReduceOp.SUM, "all_reduce after refusals")
