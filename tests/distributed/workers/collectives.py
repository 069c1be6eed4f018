"""Worker for tests/distributed/test_collective_ops.py: runs every collective on
deterministic inputs, as distnn Tensors and as numpy arrays, and checks each
result against numpy. One JSON line per case (see cases.py).

    python collectives.py SECTION[,SECTION...]|all [LARGE_ELEMENTS] [TMP_DIR]
"""

import os
import sys

import numpy as np

import distnn.distributed as dist
from cases import DTYPES, FLOATS, REDUCE_OPS, Runner, check, data, digest, host, init, reduced, wrap

SMALL = (0, 1, 7)
KINDS = ("tensor", "numpy")


def op_dtypes(op):
    return FLOATS if op == "avg" else DTYPES


def all_reduce_case(rank, world, op, dtype, n, kind):
    x = wrap(data(rank, n, dtype, op=op), kind)
    assert dist.all_reduce(x, op=REDUCE_OPS[op]) is None
    check(x, reduced(world, n, dtype, op), "all_reduce", terms=world)
    return digest(x)


def shaped_case(rank, world, shape, kind):
    """Multi-dimensional and 0-dim inputs keep their shape; values as for flat ones."""
    size = int(np.prod(shape))
    x = wrap(data(rank, size, "float32").reshape(shape), kind)
    dist.all_reduce(x)
    expected = reduced(world, size, "float32", "sum").reshape(shape)
    check(x, expected, f"all_reduce of shape {shape}", terms=world)
    y = wrap(data(rank, size, "int16").reshape(shape), kind)
    dist.broadcast(y, world - 1)
    check(y, data(world - 1, size, "int16").reshape(shape), f"broadcast of shape {shape}")
    outs = [wrap(np.zeros(shape, "uint8"), kind) for _ in range(world)]
    dist.all_gather(outs, wrap(data(rank, size, "uint8").reshape(shape), kind))
    for q, out in enumerate(outs):
        check(out, data(q, size, "uint8").reshape(shape), f"all_gather of shape {shape}, entry {q}")
    return digest(x, y, *outs)


def section_all_reduce(run, rank, world, large):
    for shape in ((), (1,), (3, 4, 5), (2, 0, 3), (1, 1, 7, 1)):
        for kind in KINDS:
            run.case(f"shaped.{'x'.join(map(str, shape)) or '0d'}.{kind}", shaped_case, shape, kind)
    for op in REDUCE_OPS:
        for dtype in op_dtypes(op):
            for n in SMALL:
                for kind in KINDS:
                    run.case(f"all_reduce.{op}.{dtype}.n{n}.{kind}", all_reduce_case, op, dtype, n, kind)
    for op, dtypes in (("sum", DTYPES), ("avg", ("float32",)), ("min", ("float32",)), ("max", ("int8",)),
                       ("product", ("float32",))):
        for dtype in dtypes:
            run.case(f"all_reduce.{op}.{dtype}.n{large}", all_reduce_case, op, dtype, large, "tensor")


def broadcast_case(rank, world, src, dtype, n, kind):
    x = wrap(data(rank, n, dtype), kind)
    dist.broadcast(x, src)
    check(x, data(src, n, dtype), f"broadcast from {src}")
    return digest(x)


def section_broadcast(run, rank, world, large):
    for src in range(world):
        for dtype in DTYPES:
            for n in SMALL:
                for kind in KINDS:
                    run.case(f"broadcast.from{src}.{dtype}.n{n}.{kind}", broadcast_case, src, dtype, n, kind)
        run.case(f"broadcast.from{src}.float32.n{large}", broadcast_case, src, "float32", large, "numpy")


def all_gather_case(rank, world, dtype, n, kind):
    outs = [wrap(np.zeros(n, dtype), kind) for _ in range(world)]
    dist.all_gather(outs, wrap(data(rank, n, dtype), kind))
    for q, out in enumerate(outs):
        check(out, data(q, n, dtype), f"all_gather entry {q}")
    return digest(*outs)


def all_gather_into_tensor_case(rank, world, dtype, n, kind, stacked):
    out = wrap(np.zeros((world, n) if stacked else (world * n,), dtype), kind)
    dist.all_gather_into_tensor(out, wrap(data(rank, n, dtype), kind))
    expected = np.concatenate([data(q, n, dtype) for q in range(world)])
    check(out, expected.reshape(world, n) if stacked else expected, "all_gather_into_tensor")
    return digest(out)


def gather_case(rank, world, dst, dtype, n, kind):
    outs = [wrap(np.zeros(n, dtype), kind) for _ in range(world)] if rank == dst else None
    dist.gather(wrap(data(rank, n, dtype), kind), outs, dst=dst)
    for q, out in enumerate(outs or ()):
        check(out, data(q, n, dtype), f"gather entry {q} at rank {dst}")
    return None


def section_gather(run, rank, world, large):
    for dtype in DTYPES:
        for n in SMALL:
            for kind in KINDS:
                run.case(f"all_gather.{dtype}.n{n}.{kind}", all_gather_case, dtype, n, kind)
                run.case(f"all_gather_into_tensor.{dtype}.n{n}.{kind}", all_gather_into_tensor_case,
                         dtype, n, kind, False)
        run.case(f"all_gather_into_tensor.stacked.{dtype}", all_gather_into_tensor_case, dtype, 7,
                 "tensor", True)
        for dst in range(world):
            run.case(f"gather.to{dst}.{dtype}.n7", gather_case, dst, dtype, 7, "tensor")
    for n in (0, 1):
        run.case(f"gather.to0.float32.n{n}.numpy", gather_case, 0, "float32", n, "numpy")
    run.case(f"all_gather.float32.n{large}", all_gather_case, "float32", large, "numpy")
    run.case(f"all_gather_into_tensor.int8.n{large}", all_gather_into_tensor_case, "int8", large,
             "tensor", False)
    run.case(f"gather.to{world - 1}.float32.n{large}", gather_case, world - 1, "float32", large, "numpy")


def reduce_scatter_tensor_case(rank, world, op, dtype, m, kind):
    out = wrap(np.zeros(m, dtype), kind)
    inp = wrap(data(rank, world * m, dtype, op=op), kind)
    before = host(inp).copy()
    dist.reduce_scatter_tensor(out, inp, op=REDUCE_OPS[op])
    expected = reduced(world, world * m, dtype, op)[rank * m:(rank + 1) * m]
    check(out, expected, "reduce_scatter_tensor", terms=world)
    check(inp, before, "reduce_scatter_tensor input (must be left unchanged)")
    return None


def reduce_scatter_case(rank, world, op, dtype, m, kind):
    out = wrap(np.zeros(m, dtype), kind)
    full = data(rank, world * m, dtype, op=op)
    dist.reduce_scatter(out, [wrap(full[q * m:(q + 1) * m].copy(), kind) for q in range(world)],
                        op=REDUCE_OPS[op])
    expected = reduced(world, world * m, dtype, op)[rank * m:(rank + 1) * m]
    check(out, expected, "reduce_scatter", terms=world)
    return None


def reduce_case(rank, world, dst, op, dtype, n, kind):
    x = wrap(data(rank, n, dtype, op=op), kind)
    dist.reduce(x, dst, op=REDUCE_OPS[op])
    if rank == dst:
        check(x, reduced(world, n, dtype, op), f"reduce to {dst}", terms=world)
    return None


def scatter_case(rank, world, src, dtype, n, kind):
    out = wrap(np.zeros(n, dtype), kind)
    parts = [wrap(data(src, n, dtype, salt=q), kind) for q in range(world)] if rank == src else None
    dist.scatter(out, parts, src=src)
    check(out, data(src, n, dtype, salt=rank), f"scatter from {src}")
    return None


def section_scatter(run, rank, world, large):
    for op in REDUCE_OPS:
        for dtype in op_dtypes(op):
            for m in SMALL:
                run.case(f"reduce_scatter_tensor.{op}.{dtype}.m{m}", reduce_scatter_tensor_case, op,
                         dtype, m, KINDS[m % 2])
            run.case(f"reduce_scatter.{op}.{dtype}.m7", reduce_scatter_case, op, dtype, 7, "tensor")
            for dst in range(world):
                run.case(f"reduce.to{dst}.{op}.{dtype}.n7", reduce_case, dst, op, dtype, 7, KINDS[dst % 2])
    for dtype in DTYPES:
        for src in range(world):
            for n in SMALL:
                run.case(f"scatter.from{src}.{dtype}.n{n}", scatter_case, src, dtype, n, KINDS[n % 2])
    m = large // world
    for op, dtype, kind in (("sum", "float32", "tensor"), ("max", "int32", "numpy")):
        run.case(f"reduce_scatter_tensor.{op}.{dtype}.m{m}", reduce_scatter_tensor_case, op, dtype, m, kind)
    run.case(f"reduce.to{world - 1}.sum.float64.n{large}", reduce_case, world - 1, "sum", "float64", large,
             "numpy")
    run.case(f"scatter.from0.float32.n{m}", scatter_case, 0, "float32", m, "tensor")


def barrier_case(rank, world, tmp):
    # The last rank arrives late and leaves a mark first: nobody may pass the barrier before it.
    mark = os.path.join(tmp, "barrier-mark")
    if rank == world - 1:
        import time
        time.sleep(0.3)
        with open(mark, "w") as f:
            f.write("x")
    assert dist.barrier() is None
    if not os.path.exists(mark):
        raise AssertionError(f"rank {rank} passed the barrier before rank {world - 1} reached it")
    dist.barrier()  # nobody removes the mark before all have looked
    return None


def section_barrier(run, rank, world, large, tmp=None):
    if tmp:
        run.case("barrier.orders", barrier_case, tmp)
    for i in range(3):
        run.case(f"barrier.repeat{i}", lambda rank, world: dist.barrier())


SECTIONS = {"all_reduce": section_all_reduce, "broadcast": section_broadcast, "gather": section_gather,
            "scatter": section_scatter, "barrier": section_barrier}


def main():
    import more_cases
    import p2p_cases
    names = sys.argv[1]
    large = int(sys.argv[2]) if len(sys.argv) > 2 else 1000003
    tmp = sys.argv[3] if len(sys.argv) > 3 else None
    everything = dict(SECTIONS, **p2p_cases.SECTIONS, **more_cases.SECTIONS)
    known = dict(everything, **p2p_cases.EXTRA_SECTIONS, **more_cases.EXTRA_SECTIONS)
    chosen = list(everything) if names == "all" else names.split(",")
    unknown = [name for name in chosen if name not in known]
    if unknown:
        sys.exit(f"unknown section(s) {unknown}; known: {sorted(known)}")
    rank, world = init()
    run = Runner(rank, world)
    for name in chosen:
        if name == "barrier":
            section_barrier(run, rank, world, large, tmp)
        else:
            known[name](run, rank, world, large)
    run.finish()


if __name__ == "__main__":
    main()
