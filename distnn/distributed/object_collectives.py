"""Object collectives (``broadcast_object_list``, ``all_gather_object``) in
msgpack only: nothing received is ever unpickled, so a peer can send data but
never code."""

import msgpack
import numpy as np

from .collective_ops import all_gather_into_tensor, broadcast
from .errors import DistributedError
from .registry import resolve_group


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
    g = resolve_group(group)
    is_src = g.rank == g.index_of(src, "src")
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
    g = resolve_group(group)
    payload = _pack(obj)
    sizes = np.zeros(g.size, np.int64)
    all_gather_into_tensor(sizes, np.array([payload.size], np.int64), group)
    longest = int(sizes.max())
    padded = np.zeros(longest, np.uint8)
    padded[:payload.size] = payload
    gathered = np.empty(longest * g.size, np.uint8)
    all_gather_into_tensor(gathered, padded, group)
    object_list[:] = [_unpack(gathered[i * longest:i * longest + int(sizes[i])]) for i in range(g.size)]
