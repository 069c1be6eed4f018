"""More sections for collectives.py: async handles, object collectives,
subgroups, non-contiguous inputs, argument errors that must not desynchronise
the group, a short smoke mix, and the shared-memory all-reduce."""

import json
import os
import time
from datetime import timedelta

import numpy as np

import distnn
import distnn.distributed as dist
from cases import check, data, digest, reduced


# --- asynchronous handles ----------------------------------------------------------------

def async_many_case(rank, world, large):
    specs = [("float32", 7, "sum"), ("int64", 1000, "max"), ("float64", large // 4, "sum"),
             ("uint8", 0, "min")]
    tensors = [distnn.from_numpy(data(rank, n, dt, op=op)) for dt, n, op in specs]
    works = [dist.all_reduce(t, op=dist.ReduceOp(op), async_op=True) for t, (_, _, op) in zip(tensors, specs)]
    if not all(isinstance(w, dist.Work) for w in works):
        raise AssertionError(f"async_op=True must return Work handles, got {works}")
    for w in reversed(works):
        if w.wait(timeout=timedelta(seconds=60)) is not True:
            raise AssertionError("Work.wait() must return True")
    for t, w, (dt, n, op) in zip(tensors, works, specs):
        if not w.is_completed():
            raise AssertionError("is_completed() False after wait()")
        check(t, reduced(world, n, dt, op), f"async all_reduce {dt} {op}", terms=world)
    return digest(*tensors)


def async_mixed_case(rank, world):
    """Async work of several kinds interleaved with synchronous calls, waited for last."""
    b = data(rank, 9, "int32")
    w1 = dist.broadcast(b, world - 1, async_op=True)
    s = data(rank, 5, "float32")
    dist.all_reduce(s)  # synchronous, queued behind w1
    gathered = np.zeros(world * 3, np.int64)
    w2 = dist.all_gather_into_tensor(gathered, data(rank, 3, "int64"), async_op=True)
    rs = np.zeros(4, np.float64)
    w3 = dist.reduce_scatter_tensor(rs, data(rank, 4 * world, "float64"), async_op=True)
    w4 = dist.barrier(async_op=True)
    for w in (w4, w3, w2, w1):
        w.wait()
    check(b, data(world - 1, 9, "int32"), "async broadcast")
    check(s, reduced(world, 5, "float32", "sum"), "sync all_reduce between async ones", terms=world)
    check(gathered, np.concatenate([data(q, 3, "int64") for q in range(world)]),
          "async all_gather_into_tensor")
    check(rs, reduced(world, 4 * world, "float64", "sum")[rank * 4:(rank + 1) * 4], "async reduce_scatter",
          terms=world)
    return digest(b, s, gathered)


def async_poll_case(rank, world):
    """is_completed() turns True by itself, without wait()."""
    t = distnn.from_numpy(data(rank, 1000, "float32"))
    work = dist.all_reduce(t, async_op=True)
    deadline = time.monotonic() + 20
    while not work.is_completed():
        if time.monotonic() > deadline:
            raise AssertionError("is_completed() still False after 20 s")
        time.sleep(0.001)
    check(t, reduced(world, 1000, "float32", "sum"), "polled async all_reduce", terms=world)
    if not work.is_success() or work.exception() is not None:
        raise AssertionError("a completed, successful Work must report is_success() and no exception()")
    return digest(t)


def section_async(run, rank, world, large):
    run.case("async.many", async_many_case, large)
    run.case("async.mixed", async_mixed_case)
    run.case("async.poll", async_poll_case)


# --- objects --------------------------------------------------------------------------------

def payload(rank):
    return {"rank": rank, "floats": [0.5, -1.25, 1e300], "text": "ü" * rank * 300,
            "nested": [[rank], {"k": None}], "blob": bytes(range(rank, rank + 10)),
            "tuples": (rank, "x", (0.5, [True, ()]))}  # come back as tuples, not lists


def broadcast_object_case(rank, world, src):
    objects = [payload(rank), "s" * rank, rank, None] if rank == src else [None] * 4
    dist.broadcast_object_list(objects, src=src)
    expected = [payload(src), "s" * src, src, None]
    if objects != expected:
        raise AssertionError(f"broadcast_object_list from {src}: got {objects!r:.300}")
    return digest(np.frombuffer(json.dumps(objects, default=repr).encode(), np.uint8))


def all_gather_object_case(rank, world):
    gathered = [None] * world
    dist.all_gather_object(gathered, payload(rank))
    if gathered != [payload(q) for q in range(world)]:
        raise AssertionError(f"all_gather_object: got {gathered!r:.300}")
    return digest(np.frombuffer(json.dumps(gathered, default=repr).encode(), np.uint8))


def unserialisable_object_case(rank, world):
    """Refused on every rank before anything is sent: the group stays usable."""
    try:
        dist.all_gather_object([None] * world, {"a set": {1, 2}})
    except TypeError:
        return all_gather_object_case(rank, world)
    raise AssertionError("all_gather_object of a set must raise TypeError")


def section_objects(run, rank, world, large):
    run.case("all_gather_object.unserialisable", unserialisable_object_case)
    run.case("all_gather_object", all_gather_object_case)
    for src in range(world):
        run.case(f"broadcast_object_list.from{src}", broadcast_object_case, src)


# --- subgroups --------------------------------------------------------------------------------

def group_case(rank, world, groups, members, n):
    """In each group this rank belongs to: identity, all_reduce, broadcast from every
    member, all_gather, reduce_scatter and barrier, checked against the members' data."""
    for g, ranks in zip(groups, members):
        if rank not in ranks:
            if g is not dist.GroupMember.NON_GROUP_MEMBER or dist.get_rank(g) != -1:
                raise AssertionError(f"rank {rank} outside {ranks} must get NON_GROUP_MEMBER and rank -1")
            continue
        size, me = len(ranks), ranks.index(rank)
        if (dist.get_rank(g), dist.get_world_size(g)) != (me, size):
            raise AssertionError(f"group {ranks}: get_rank/get_world_size {dist.get_rank(g)}, "
                                 f"{dist.get_world_size(g)}, expected {me}, {size}")
        if [dist.get_global_rank(g, i) for i in range(size)] != ranks:
            raise AssertionError(f"group {ranks}: get_global_rank disagrees")
        x = data(rank, n, "float32")
        dist.all_reduce(x, group=g)
        expected = sum(data(q, n, "float32").astype(np.float64) for q in ranks).astype(np.float32)
        check(x, expected, f"all_reduce in group {ranks}", terms=size)
        for src in ranks:
            y = data(rank, n, "int64")
            dist.broadcast(y, src, group=g)
            check(y, data(src, n, "int64"), f"broadcast from global rank {src} in group {ranks}")
        out = np.zeros(size * n, np.int32)
        dist.all_gather_into_tensor(out, data(rank, n, "int32"), group=g)
        check(out, np.concatenate([data(q, n, "int32") for q in ranks]), f"all_gather in group {ranks}")
        rs = np.zeros(n, np.int64)
        dist.reduce_scatter_tensor(rs, data(rank, size * n, "int64"), group=g)
        full = sum(data(q, size * n, "int64") for q in ranks)
        check(rs, full[me * n:(me + 1) * n], f"reduce_scatter in group {ranks}")
        dist.barrier(group=g)
    w = data(rank, 5, "float64")
    dist.all_reduce(w)  # the world group still works, its sequence untouched by the subgroups
    check(w, reduced(world, 5, "float64", "sum"), "world all_reduce after subgroup work", terms=world)
    return None


def section_groups(run, rank, world, large):
    members = [list(range(world)), [r for r in range(world) if r % 2 == 0],
               [r for r in range(world) if r % 2], [world - 1], sorted({0, world - 1})]
    members = [m for m in members if m]
    groups = [dist.new_group(list(reversed(members[0])))] + [dist.new_group(m) for m in members[1:]]
    for n in (7, 100003):
        run.case(f"groups.n{n}", group_case, groups, members, n)
    run.case("groups.non_member_call", non_member_case, groups, members)


def non_member_case(rank, world, groups, members):
    """A rank outside a group calling a collective on it (torch warns and returns;
    refusing is fine too) must send nothing: the world stays in step."""
    for g, ranks in zip(groups, members):
        if rank not in ranks:
            try:
                dist.all_reduce(np.zeros(3, np.float32), group=g)
            except dist.DistributedError:
                pass
    x = data(rank, 3, "int32")
    dist.all_reduce(x)
    check(x, reduced(world, 3, "int32", "sum"), "world all_reduce after non-member calls")
    return digest(x)


# --- non-contiguous inputs ---------------------------------------------------------------------

def noncontiguous_tensor_case(rank, world, dtype):
    base = distnn.from_numpy(np.zeros((7, 3), dtype))
    column = base[:, 1]
    column._data[...] = data(rank, 7, dtype)
    version = column._version
    dist.all_reduce(column)
    expected = np.zeros((7, 3), dtype)
    expected[:, 1] = reduced(world, 7, dtype, "sum")
    check(base, expected, "all_reduce of a column view, seen through its base", terms=world)
    if column._version <= version:
        raise AssertionError("all_reduce must bump the tensor's version counter like any in-place op")
    base2 = distnn.from_numpy(data(rank, 15, dtype).reshape(3, 5))
    transposed = base2.T
    dist.broadcast(transposed, world - 1)
    check(base2, data(world - 1, 15, dtype).reshape(3, 5), "broadcast into a transposed view")
    return digest(base, base2)


def noncontiguous_numpy_case(rank, world, dtype):
    strided = np.zeros(20, dtype)
    strided[::3] = data(rank, 7, dtype)
    dist.all_reduce(strided[::3])
    expected = np.zeros(20, dtype)
    expected[::3] = reduced(world, 7, dtype, "sum")
    check(strided, expected, "all_reduce of a strided numpy view", terms=world)
    outs = np.zeros((4, world), dtype)
    source = np.zeros((4, 2), dtype)
    source[:, 1] = data(rank, 4, dtype)
    dist.all_gather([outs[:, q] for q in range(world)], source[:, 1])
    check(outs, np.stack([data(q, 4, dtype) for q in range(world)], axis=1),
          "all_gather of columns into columns")
    rs = np.zeros((3, 2), dtype)
    dist.reduce_scatter_tensor(rs[:, 0], data(rank, 3 * world, dtype).reshape(world, 3).T.copy().T)
    expected_rs = np.zeros((3, 2), dtype)
    expected_rs[:, 0] = reduced(world, 3 * world, dtype, "sum")[rank * 3:(rank + 1) * 3]
    check(rs, expected_rs, "reduce_scatter_tensor into a column view", terms=world)
    return digest(strided, outs)


def section_noncontiguous(run, rank, world, large):
    for dtype in ("float32", "int64", "float16", "uint8"):
        run.case(f"noncontiguous.tensor.{dtype}", noncontiguous_tensor_case, dtype)
        run.case(f"noncontiguous.numpy.{dtype}", noncontiguous_numpy_case, dtype)


# --- argument errors (local, before any message: the group must stay in step) --------------------

def local_errors_case(rank, world):
    f32 = np.zeros(4, np.float32)
    attempts = [
        (TypeError, lambda: dist.all_reduce(np.zeros(4, np.int64), op=dist.ReduceOp.AVG)),
        (TypeError, lambda: dist.all_reduce(np.zeros(4, np.complex64))),
        (TypeError, lambda: dist.all_reduce([1.0, 2.0])),
        (ValueError, lambda: dist.broadcast(f32, world)),
        (ValueError, lambda: dist.all_gather([f32] * (world + 1), f32)),
        (ValueError, lambda: dist.all_gather_into_tensor(np.zeros(4 * world + 1, np.float32), f32)),
        (ValueError, lambda: dist.reduce_scatter_tensor(f32, np.zeros(4 * world + 1, np.float32))),
        (ValueError, lambda: dist.reduce(f32, world + 3)),
        # Averages of integers cannot be stored back: refused up front, like all_reduce does.
        (TypeError, lambda: dist.reduce(np.arange(4), 0, op=dist.ReduceOp.AVG)),
        (TypeError, lambda: dist.reduce_scatter_tensor(np.zeros(2, np.int64), np.arange(2 * world),
                                                       op=dist.ReduceOp.AVG)),
    ]
    for expected, attempt in attempts:
        try:
            attempt()
        except expected:
            continue
        except Exception as exc:
            raise AssertionError(f"expected {expected.__name__}, got {type(exc).__name__}: {exc}") from None
        raise AssertionError(f"expected {expected.__name__}, nothing raised")
    x = data(rank, 3, "float32")
    dist.all_reduce(x)
    check(x, reduced(world, 3, "float32", "sum"), "all_reduce after refused calls", terms=world)
    return digest(x)


def section_local_errors(run, rank, world, large):
    run.case("local_errors", local_errors_case)


# --- smoke: a short mix for the tests that run several jobs at once ------------------------------

def section_smoke(run, rank, world, large):
    from collectives import all_gather_case, all_reduce_case, broadcast_case
    from p2p_cases import isend_irecv_case
    for n in (7, large):
        run.case(f"all_reduce.sum.float32.n{n}", all_reduce_case, "sum", "float32", n, "tensor")
        run.case(f"broadcast.from0.int64.n{n}", broadcast_case, 0, "int64", n, "numpy")
        run.case(f"all_gather.uint8.n{n}", all_gather_case, "uint8", n, "tensor")
    if world > 1:
        run.case("isend_irecv.float32.n7", isend_irecv_case, "float32", 7)


# --- shm: the shared-memory all-reduce, or its socket fallback -----------------------------------

def shm_path_case(rank, world, expect_shm):
    from distnn.distributed import registry
    group = registry.resolve_group(None)
    if (group.shm is not None) != expect_shm:
        raise AssertionError(f"Expect: shared memory {'used' if expect_shm else 'unused'}, "
                             f"Actual: group.shm is {group.shm!r}")
    return digest(np.array([expect_shm]))


def shm_name_released_case(rank, world):
    """After one staged all-reduce every rank has unlinked its region's name."""
    from distnn.distributed import registry
    group = registry.resolve_group(None)
    left = [p for p in group.shm.paths if os.path.exists(p)]
    dist.barrier()  # nobody starts the next case while another still looks
    if left:
        raise AssertionError(f"region names still linked after use: {left}")
    return None


def shm_signals_case(rank, world, expect_signals):
    """After the staged all-reduces: their steps were ordered by signals in the regions
    exactly when every rank can use them (the same count on every rank), else by messages."""
    from distnn.distributed import registry
    posted = registry.resolve_group(None).shm._posted
    if (posted > 0) != expect_signals:
        raise AssertionError(f"Expect: signals {'used' if expect_signals else 'unused'}, Actual: {posted} posted")
    return digest(np.array([posted]))


def section_shm(run, rank, world, large):
    """Sizes past the direct path's limit: one staging half, several halves (with an
    uneven last one), and chunks that do not divide evenly; every reduce op."""
    from collectives import all_reduce_case
    from distnn.distributed import shm_regions
    expect_shm = os.environ.get("EXPECT_SHM") == "1"
    run.case("shm.path", shm_path_case, expect_shm)
    half = shm_regions.HALF_BYTES
    for dtype, n in (("float32", 70001), ("float32", 2 * half // 4 + 12345), ("float64", half // 8 + 3),
                     ("int8", half + world), ("float16", half // 2 - 1)):
        run.case(f"shm.all_reduce.sum.{dtype}.n{n}", all_reduce_case, "sum", dtype, n, "tensor")
    for op, dtype in (("avg", "float32"), ("min", "int32"), ("max", "float64"), ("product", "float32")):
        run.case(f"shm.all_reduce.{op}.{dtype}", all_reduce_case, op, dtype, half // 4 + 7, "numpy")
    if expect_shm:
        run.case("shm.name_released", shm_name_released_case)
        run.case("shm.signals", shm_signals_case, os.environ.get("EXPECT_SIGNALS") == "1")


SECTIONS = {"async": section_async, "objects": section_objects, "groups": section_groups,
            "noncontiguous": section_noncontiguous, "local_errors": section_local_errors}
EXTRA_SECTIONS = {"smoke": section_smoke, "shm": section_shm}
