"""The collective algorithms (distnn/distributed/collectives.py, and the two-level
all-reduce of hierarchical.py) on in-process worlds (``inprocess.run_threads``: every
rank a thread, with the real groups, headers, communication threads and shared-memory
staging), over world size x message size x dtype x op, with shared memory (one host),
without it (a host per rank) and on mixed hosts. Sizes sit on either side of every
threshold, and a spy on the algorithm functions checks that each branch was taken.
Every result must be bit-identical on every rank and equal to numpy's reduction in
rank order: exactly for integers and bool, to float round-off otherwise.
test_collective_ops.py runs the same calls across real processes."""

import time

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
from collective_check import (DIRECT, F32, FEW_LAYOUTS, HALF, LAYOUTS, ONE_ROUND, OP_DTYPES, SEG, ReduceOp,
                              assert_equal, assert_reduced, inputs, layout, one_host, pairwise, reduced, sockets,
                              tolerance, world_algorithms)
from distnn.distributed.inprocess import run_threads


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
