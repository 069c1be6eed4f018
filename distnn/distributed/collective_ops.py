"""The ``torch.distributed`` functions: argument checks, tensors and numpy arrays
turned into flat host buffers (results written back in place), and dispatch to
a process group's communication thread."""

import time
from datetime import timedelta
from enum import Enum

import msgpack
import numpy as np

from .. import backend
from ..tensor import Tensor
from . import collectives, env, wire
from .errors import DistributedError
from .process_group import ProcessGroup, Work, World, _active_worlds, _seconds
from .wire import WIRE_DTYPES, check_expected


class ReduceOp(str, Enum):
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


class _GroupMember:
    WORLD = None
    NON_GROUP_MEMBER = object()


GroupMember = _GroupMember
_state = {"world": None, "group": None}


# --- setup ---------------------------------------------------------------------------

def is_available():
    return True


def is_initialized():
    return _state["group"] is not None


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
    world = World(rank, world_size, local_rank, local_size, master, env.job_token(), _seconds(timeout))
    _active_worlds.append(world)
    _state["world"] = world
    _state["group"] = ProcessGroup(world, range(world_size), 0)
    GroupMember.WORLD = _state["group"]


def destroy_process_group(group=None):
    if group is not None and group is not _state["group"]:
        return  # subgroups own nothing of their own
    world = _state["world"]
    if world is None:
        return
    _state["world"] = _state["group"] = GroupMember.WORLD = None
    if world in _active_worlds:
        _active_worlds.remove(world)
    world.close()


def _group(group):
    if group is GroupMember.NON_GROUP_MEMBER:
        raise DistributedError("this rank is not a member of the given group")
    g = group if group is not None else _state["group"]
    if g is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")
    return g


def new_group(ranks=None, timeout=None, backend=None, pg_options=None):
    """A subgroup; like torch, every rank of the world must call this, members or not."""
    world = _group(None).world
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
    return _group(group).rank


def get_world_size(group=None):
    return _group(group).size


def get_backend(group=None):
    _group(group)
    return "zmq"


def get_global_rank(group, group_rank):
    return _group(group).ranks[group_rank]


def _group_rank(g, global_rank, what):
    if global_rank not in g.ranks:
        raise ValueError(f"Expect: {what} among the group's ranks {g.ranks}, Actual: {global_rank}")
    return g.ranks.index(global_rank)


# --- buffers ---------------------------------------------------------------------------

class _Buffer:
    """A tensor or array as a flat, contiguous host array; ``commit`` writes results back."""

    def __init__(self, obj, name="tensor"):
        if isinstance(obj, Tensor):
            self._tensor, array = obj, obj._data
        elif isinstance(obj, np.ndarray) or backend.is_gpu_array(obj):
            self._tensor, array = None, obj  # a GPU array travels through a host copy
        else:
            raise TypeError(f"Expect: {name} to be a distnn Tensor or a NumPy or CuPy array, "
                            f"Actual: {type(obj).__name__}")
        if wire.dtype_name(array.dtype) is None:
            raise TypeError(f"Expect: {name} dtype among {sorted(WIRE_DTYPES)}, Actual: {array.dtype}")
        self._array = array
        host = backend.to_numpy(array)
        self._direct = host is array and array.flags.c_contiguous and array.flags.writeable
        self.flat = array.reshape(-1) if self._direct else np.ascontiguousarray(host).reshape(-1).copy()
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def commit(self):
        if not self._direct:
            self._array[...] = backend.move_to(self.flat.reshape(self.shape), backend.device_of(self._array))
        if self._tensor is not None:
            self._tensor._vc[0] += 1  # modified in place, like any in-place op


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
    g, buf = _group(group), _Buffer(tensor)
    name = _op_name(op, buf.dtype)

    def run(ex):
        collectives.all_reduce(ex, buf.flat, "sum" if name == "avg" else name)
        if name == "avg":
            buf.flat /= ex.size
        buf.commit()
    return g.submit(f"all_reduce.{name}", run, async_op, buf.dtype, buf.shape)


def broadcast(tensor, src, group=None, async_op=False):
    g, buf = _group(group), _Buffer(tensor)
    root = _group_rank(g, src, "src")

    def run(ex):
        collectives.broadcast(ex, buf.flat, root)
        buf.commit()
    return g.submit(f"broadcast.from{src}", run, async_op, buf.dtype, buf.shape)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    g, out, part = _group(group), _Buffer(output_tensor, "output_tensor"), _Buffer(input_tensor, "input_tensor")
    if out.flat.size != part.flat.size * g.size or out.dtype != part.dtype:
        raise ValueError(f"Expect: output of {part.flat.size * g.size} {part.dtype} elements (world_size x "
                         f"input), Actual: {out.flat.size} {out.dtype} elements")

    def run(ex):
        collectives.all_gather(ex, out.flat, part.flat)
        out.commit()
    return g.submit("all_gather", run, async_op, part.dtype, part.shape)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    g, part = _group(group), _Buffer(tensor)
    if len(tensor_list) != g.size:
        raise ValueError(f"Expect: tensor_list of length {g.size} (world size), Actual: {len(tensor_list)}")
    outs = [_Buffer(t, "tensor_list[i]") for t in tensor_list]
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
    return g.submit("all_gather", run, async_op, part.dtype, part.shape)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    g, out, inp = _group(group), _Buffer(output, "output"), _Buffer(input, "input")
    name = _op_name(op, inp.dtype)
    if inp.flat.size != out.flat.size * g.size:
        raise ValueError(f"Expect: input of {out.flat.size * g.size} elements (world_size x output), "
                         f"Actual: {inp.flat.size}")

    def run(ex):
        chunk = collectives.reduce_scatter(ex, inp.flat.copy(), "sum" if name == "avg" else name)
        out.flat[...] = chunk / ex.size if name == "avg" else chunk
        out.commit()
    return g.submit(f"reduce_scatter.{name}", run, async_op, inp.dtype, inp.shape)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    g = _group(group)
    if len(input_list) != g.size:
        raise ValueError(f"Expect: input_list of length {g.size}, Actual: {len(input_list)}")
    stacked = np.concatenate([_Buffer(t, "input_list[i]").flat for t in input_list])
    return reduce_scatter_tensor(output, stacked, op, group, async_op)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None, async_op=False):
    g, buf = _group(group), _Buffer(tensor)
    name = _op_name(op, buf.dtype)
    is_dst = g.rank == _group_rank(g, dst, "dst")

    def run(ex):
        work = buf.flat if is_dst else buf.flat.copy()
        collectives.all_reduce(ex, work, "sum" if name == "avg" else name)
        if is_dst:
            if name == "avg":
                buf.flat /= ex.size
            buf.commit()
    return g.submit(f"reduce.{name}.to{dst}", run, async_op, buf.dtype, buf.shape)


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    g, part = _group(group), _Buffer(tensor)
    root = _group_rank(g, dst, "dst")
    outs = None
    if g.rank == root:
        if gather_list is None or len(gather_list) != g.size:
            raise ValueError(f"Expect: gather_list of {g.size} tensors on the destination rank")
        outs = [_Buffer(t, "gather_list[i]") for t in gather_list]
        for i, o in enumerate(outs):
            if o.flat.size != part.flat.size or o.dtype != part.dtype:
                raise ValueError(f"Expect: gather_list[{i}] of {part.flat.size} {part.dtype} elements (as the "
                                 f"input tensor), Actual: {o.flat.size} {o.dtype}")

    def run(ex):
        collectives.gather(ex, part.flat, [o.flat for o in outs] if outs else None, root)
        for o in outs or ():
            o.commit()
    return g.submit(f"gather.to{dst}", run, async_op, part.dtype, part.shape)


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    g, out = _group(group), _Buffer(tensor)
    root = _group_rank(g, src, "src")
    parts = None
    if g.rank == root:
        if scatter_list is None or len(scatter_list) != g.size:
            raise ValueError(f"Expect: scatter_list of {g.size} tensors on the source rank")
        parts = [_Buffer(t, "scatter_list[i]").flat for t in scatter_list]

    def run(ex):
        collectives.scatter(ex, out.flat, parts, root)
        out.commit()
    return g.submit(f"scatter.from{src}", run, async_op, out.dtype, out.shape)


def barrier(group=None, async_op=False, device_ids=None):
    g = _group(group)
    token = np.zeros(1, np.uint8)
    return g.submit("barrier", lambda ex: collectives.all_reduce(ex, token, "max"), async_op,
                    token.dtype, token.shape)


# --- point to point ----------------------------------------------------------------------

def isend(tensor, dst, group=None, tag=0):
    g, buf = _group(group), _Buffer(tensor)
    peer = _group_rank(g, dst, "dst")
    if peer == g.rank:
        raise ValueError(f"rank {g.rank} cannot send to itself")
    payload = buf.flat.copy()  # the caller may reuse its tensor as soon as isend returns

    def run(ex):
        collectives.send_segmented(ex, peer, payload)
        ex.finish()
    return g.submit_p2p(peer, "send", run, True, buf.dtype, buf.shape)


def irecv(tensor, src=None, group=None, tag=0):
    """Post a receive (from ``src``, or from whichever peer sends first); the returned
    work's ``result()`` is the sender's rank. Later calls are not held up meanwhile."""
    g, buf = _group(group), _Buffer(tensor)
    world = g.world
    if src is not None:
        peer = _group_rank(g, src, "src")
        if peer == g.rank:
            raise ValueError(f"rank {g.rank} cannot receive from itself")
        sources = [src]
    else:
        sources = [r for r in g.ranks if r != world.rank]
    work = Work(f"recv from {'rank %d' % src if src is not None else 'any rank'} on rank {world.rank}",
                world.timeout)
    pieces = collectives.message_segments(buf.flat)
    got = {"sender": None, "seq": None, "segments": 0}  # the message being taken, once begun

    def attempt():
        """Take what has arrived of the message; True once all its segments are in."""
        # Posted receives are tried in posting order after each drain of the socket, so a
        # receive that has begun a sender's message takes all of it that has arrived before
        # a later receive looks at that sender: segments of two messages never mix.
        while got["segments"] < len(pieces):
            found = world.transport.take(g.id, sources if got["sender"] is None else [got["sender"]], "p2p")
            if found is None:
                if src is not None and time.monotonic() >= got.setdefault("check_at", time.monotonic() + 0.5):
                    got["check_at"] = time.monotonic() + 0.5  # a dead sender is named, not waited for
                    world.transport.check_alive([src], work.description)
                return False
            sender, header, payload = found
            if got["sender"] is None:
                # Numbered when matched: posted receives take each peer's messages in posting order.
                got.update(sender=sender, seq=g.next_p2p_seq(g.ranks.index(sender), received=True))
            seq, index = got["seq"], got["segments"]
            if header["seq"] != seq or header["seg"] != index:
                raise DistributedError(f"rank {world.rank}: rank {sender} sent segment {header['seg']} of its "
                                       f"message number {header['seq']}, this rank expected segment {index} of "
                                       f"number {seq} (sends and receives between them do not pair up)")
            sl = pieces[index]
            check_expected(header, {"op": "send", "seq": seq, "dtype": buf.dtype.name, "shape": list(buf.shape),
                                    "nbytes": (sl.stop - sl.start) * buf.dtype.itemsize}, world.rank)
            buf.flat[sl] = np.frombuffer(payload, dtype=buf.dtype, count=sl.stop - sl.start)
            got["segments"] = index + 1
        buf.commit()
        work._result = got["sender"]
        return True
    world.comm.post(work, attempt)
    return work


def send(tensor, dst, group=None, tag=0):
    isend(tensor, dst, group, tag).wait()


def recv(tensor, src=None, group=None, tag=0):
    """Blocking receive; returns the sender's rank."""
    return irecv(tensor, src, group, tag).result()


# --- objects (msgpack only: nothing received is unpickled) --------------------------------

_TUPLE_EXT = 1  # msgpack has no tuple; tuples travel as an extension type holding a list


def _pack(obj):
    try:
        return np.frombuffer(_packb(obj), np.uint8).copy()  # writable
    except (TypeError, ValueError) as exc:
        raise TypeError(f"object collectives carry only msgpack-serialisable data (None, bool, numbers, "
                        f"str, bytes, lists, tuples, dicts): {exc}") from None


def _packb(obj):
    return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=_encode_other)


def _encode_other(obj):
    """What strict msgpack leaves out: tuples (kept as tuples), and subclasses of the
    plain types (OrderedDict, IntEnum, ...) as their base type."""
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE_EXT, _packb(list(obj)))
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"cannot serialise a {type(obj).__name__}")


def _unpack(array):
    return _unpackb(array.tobytes())


def _unpackb(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_decode_ext)


def _decode_ext(code, data):
    if code != _TUPLE_EXT:
        raise DistributedError(f"object collective: unknown msgpack extension type {code}")
    return tuple(_unpackb(data))


def broadcast_object_list(object_list, src=0, group=None, device=None):
    g = _group(group)
    is_src = g.rank == _group_rank(g, src, "src")
    payload = _pack(list(object_list)) if is_src else None
    size = np.array([payload.size if is_src else 0], np.int64)
    broadcast(size, src, group)
    data = payload if is_src else np.empty(int(size[0]), np.uint8)
    broadcast(data, src, group)
    if not is_src:
        received = _unpack(data)
        if len(received) != len(object_list):
            raise DistributedError(f"broadcast_object_list: rank {src} sent {len(received)} objects, "
                                   f"this rank's list holds {len(object_list)}")
        object_list[:] = received


def all_gather_object(object_list, obj, group=None):
    g = _group(group)
    payload = _pack(obj)
    sizes = np.zeros(g.size, np.int64)
    all_gather_into_tensor(sizes, np.array([payload.size], np.int64), group)
    longest = int(sizes.max())
    padded = np.zeros(longest, np.uint8)
    padded[:payload.size] = payload
    gathered = np.empty(longest * g.size, np.uint8)
    all_gather_into_tensor(gathered, padded, group)
    object_list[:] = [_unpack(gathered[i * longest:i * longest + int(sizes[i])]) for i in range(g.size)]
