"""The ``torch.distributed`` functions that set up groups and run collectives on
tensors: argument checks, tensors and arrays as flat host buffers (results
written back in place), and dispatch to a process group. Point-to-point calls
are in ``p2p.py``, object collectives in ``object_collectives.py``, ``all_to_all`` in
``all_to_all.py`` and ``monitored_barrier`` in ``monitored_barrier.py``."""

from datetime import timedelta
from enum import Enum

import numpy as np

from . import collectives, env, hierarchical, registry
from .host_buffer import HostBuffer
from .process_group import ProcessGroup
from .registry import resolve_group
from .work import seconds
from .world import World


class ReduceOp(str, Enum):
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


class _DefaultGroup:
    """``GroupMember.WORLD``: the current default group, read from the registry."""

    def __get__(self, instance, owner):
        return registry.current().group


class GroupMember:
    WORLD = _DefaultGroup()
    NON_GROUP_MEMBER = registry.NON_GROUP_MEMBER


# --- setup ---------------------------------------------------------------------------

def is_available():
    return True


def is_initialized():
    return registry.current().group is not None


def init_process_group(backend="zmq", init_method=None, timeout=None, world_size=None,
                       rank=None, store=None, group_name="", pg_options=None, device_id=None):
    """Join the job: rendezvous at MASTER_ADDR:MASTER_PORT (or ``init_method``),
    learn every peer's endpoint, and create the default (world) group.

    ``timeout`` bounds every blocking wait; by default ``$DISTNN_TIMEOUT``
    seconds (the launcher's ``--timeout``), else 5 minutes."""
    if timeout is None:
        timeout = timedelta(seconds=env.default_timeout())
    if is_initialized():
        raise RuntimeError("trying to initialize the default process group twice!")
    if backend not in ("zmq", "gloo", None):
        raise ValueError(f"Expect: backend 'zmq' (or 'gloo', accepted as an alias), Actual: {backend!r}")
    if store is not None:
        raise NotImplementedError("a user-supplied store is not supported; use init_method or the env vars")
    rank, world_size, local_rank, local_size = env.resolve_ranks(rank, world_size)
    master = env.resolve_master(init_method)
    world = World(rank, world_size, local_rank, local_size, master, env.job_token(), seconds(timeout))
    registry.join(world, ProcessGroup(world, range(world_size), 0))


def destroy_process_group(group=None):
    if group is not None and group is not registry.current().group:
        return  # subgroups own nothing of their own
    world = registry.leave()
    if world is not None:
        world.close()


def new_group(ranks=None, timeout=None, backend=None, pg_options=None):
    """A subgroup; like torch, every rank of the world must call this, members or not."""
    world = resolve_group(None).world
    ranks = sorted(range(world.size) if ranks is None else set(int(r) for r in ranks))
    if not ranks or ranks[0] < 0 or ranks[-1] >= world.size:
        raise ValueError(f"Expect: ranks within [0, {world.size}), Actual: {ranks}")
    group_id = world.next_group_id()
    if world.rank not in ranks:
        return GroupMember.NON_GROUP_MEMBER
    return ProcessGroup(world, ranks, group_id)


def get_rank(group=None):
    if group is GroupMember.NON_GROUP_MEMBER:
        return -1
    return resolve_group(group).rank


def get_world_size(group=None):
    return resolve_group(group).size


def get_backend(group=None):
    resolve_group(group)
    return "zmq"


def get_global_rank(group, group_rank):
    return resolve_group(group).ranks[group_rank]


def _op_name(op, dtype=None):
    """The reduction's name, checked against the dtype it will reduce (before anything is sent)."""
    try:
        op = ReduceOp(op) if not isinstance(op, ReduceOp) else op
    except ValueError:
        raise ValueError(f"Expect: op among {[o.name for o in ReduceOp]}, Actual: {op!r}") from None
    if dtype is not None:
        if op is ReduceOp.AVG and dtype.kind != "f":
            raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got {dtype}")
        if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and dtype.kind not in "iub":
            raise TypeError(f"ReduceOp.{op.name} needs an integer or bool tensor, got {dtype}")
    return op.value


# --- collectives --------------------------------------------------------------------------

def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    # a GPU tensor goes out through pinned memory on a side stream, and this thread does
    # not wait for it: DDP launches its buckets during backward
    g, buf = resolve_group(group), HostBuffer(tensor, staged=True)
    name = _op_name(op, buf.dtype)

    def run(ex):
        buf.landed()
        hierarchical.all_reduce_any(ex, buf.flat, "sum" if name == "avg" else name)
        if name == "avg":
            buf.flat /= ex.size
        buf.commit()
    return g.submit(f"all_reduce.{name}", run, async_op, buf.dtype, buf.shape, [tensor])


def broadcast(tensor, src, group=None, async_op=False):
    g, buf = resolve_group(group), HostBuffer(tensor)
    root = g.index_of(src, "src")

    def run(ex):
        collectives.broadcast(ex, buf.flat, root)
        buf.commit()
    return g.submit(f"broadcast.from{src}", run, async_op, buf.dtype, buf.shape, [tensor])


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    g = resolve_group(group)
    out, part = HostBuffer(output_tensor, "output_tensor"), HostBuffer(input_tensor, "input_tensor")
    if out.flat.size != part.flat.size * g.size or out.dtype != part.dtype:
        raise ValueError(f"Expect: output of {part.flat.size * g.size} {part.dtype} elements (world_size x "
                         f"input), Actual: {out.flat.size} {out.dtype} elements")

    def run(ex):
        collectives.all_gather(ex, out.flat, part.flat)
        out.commit()
    return g.submit("all_gather", run, async_op, part.dtype, part.shape, [output_tensor])


def all_gather(tensor_list, tensor, group=None, async_op=False):
    g, part = resolve_group(group), HostBuffer(tensor)
    if len(tensor_list) != g.size:
        raise ValueError(f"Expect: tensor_list of length {g.size} (world size), Actual: {len(tensor_list)}")
    outs = [HostBuffer(t, "tensor_list[i]") for t in tensor_list]
    for o in outs:
        if o.flat.size != part.flat.size or o.dtype != part.dtype:
            raise ValueError(f"Expect: every tensor_list entry of shape {part.shape} and dtype {part.dtype}, "
                             f"Actual: {o.shape} {o.dtype}")

    def run(ex):
        gathered = np.empty(part.flat.size * ex.size, part.dtype)
        collectives.all_gather(ex, gathered, part.flat)
        for i, o in enumerate(outs):
            o.flat[...] = gathered[i * part.flat.size:(i + 1) * part.flat.size]
            o.commit()
    return g.submit("all_gather", run, async_op, part.dtype, part.shape, tensor_list)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    g, out, inp = resolve_group(group), HostBuffer(output, "output"), HostBuffer(input, "input")
    name = _op_name(op, inp.dtype)
    if inp.flat.size != out.flat.size * g.size or out.dtype != inp.dtype:
        raise ValueError(f"Expect: input of {out.flat.size * g.size} {out.dtype} elements (world_size x output), "
                         f"Actual: {inp.flat.size} {inp.dtype} elements")

    def run(ex):
        chunk = collectives.reduce_scatter(ex, inp.flat.copy(), "sum" if name == "avg" else name)
        out.flat[...] = chunk / ex.size if name == "avg" else chunk
        out.commit()
    return g.submit(f"reduce_scatter.{name}", run, async_op, inp.dtype, inp.shape, [output])


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    g = resolve_group(group)
    if len(input_list) != g.size:
        raise ValueError(f"Expect: input_list of length {g.size}, Actual: {len(input_list)}")
    out, parts = HostBuffer(output, "output"), [HostBuffer(t, f"input_list[{i}]") for i, t in enumerate(input_list)]
    for i, part in enumerate(parts):
        if part.shape != out.shape or part.dtype != out.dtype:
            raise ValueError(f"Expect: input_list[{i}] of shape {out.shape} and dtype {out.dtype} (as output), "
                             f"Actual: {part.shape} {part.dtype}")
    stacked = np.concatenate([part.flat for part in parts])
    return reduce_scatter_tensor(output, stacked, op, group, async_op)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None, async_op=False):
    g, buf = resolve_group(group), HostBuffer(tensor)
    name = _op_name(op, buf.dtype)
    is_dst = g.rank == g.index_of(dst, "dst")

    def run(ex):
        work = buf.flat if is_dst else buf.flat.copy()
        hierarchical.all_reduce_any(ex, work, "sum" if name == "avg" else name)
        if is_dst:
            if name == "avg":
                buf.flat /= ex.size
            buf.commit()
    return g.submit(f"reduce.{name}.to{dst}", run, async_op, buf.dtype, buf.shape, [tensor])


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    g, part = resolve_group(group), HostBuffer(tensor)
    root = g.index_of(dst, "dst")
    outs = None
    if g.rank == root:
        if gather_list is None or len(gather_list) != g.size:
            raise ValueError(f"Expect: gather_list of {g.size} tensors on the destination rank")
        outs = [HostBuffer(t, "gather_list[i]") for t in gather_list]
        for i, o in enumerate(outs):
            if o.flat.size != part.flat.size or o.dtype != part.dtype:
                raise ValueError(f"Expect: gather_list[{i}] of {part.flat.size} {part.dtype} elements (as the "
                                 f"input tensor), Actual: {o.flat.size} {o.dtype}")

    def run(ex):
        collectives.gather(ex, part.flat, [o.flat for o in outs] if outs else None, root)
        for o in outs or ():
            o.commit()
    return g.submit(f"gather.to{dst}", run, async_op, part.dtype, part.shape, gather_list or [])


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    g, out = resolve_group(group), HostBuffer(tensor)
    root = g.index_of(src, "src")
    parts = None
    if g.rank == root:
        if scatter_list is None or len(scatter_list) != g.size:
            raise ValueError(f"Expect: scatter_list of {g.size} tensors on the source rank")
        parts = [HostBuffer(t, "scatter_list[i]").flat for t in scatter_list]

    def run(ex):
        collectives.scatter(ex, out.flat, parts, root)
        out.commit()
    return g.submit(f"scatter.from{src}", run, async_op, out.dtype, out.shape, [tensor])


def barrier(group=None, async_op=False, device_ids=None):
    g = resolve_group(group)
    token = np.zeros(1, np.uint8)
    return g.submit("barrier", lambda ex: collectives.all_reduce(ex, token, "max"), async_op,
                    token.dtype, token.shape)
