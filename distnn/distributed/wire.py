"""The wire format: one msgpack header frame followed by raw buffer frames.

The header says who sent what: job id, group, collective op, sequence number,
dtype, full shape, segment index, and the byte length of the payload. It is
validated field by field before any payload byte is used, and nothing
received is ever unpickled. Disagreements between what a peer announces and
what this rank expects become a ``DistributedError`` naming the field.
"""

import msgpack
import numpy as np

from .errors import DistributedError

# Dtypes allowed on the wire, by name (never a pickled dtype object).
WIRE_DTYPES = {name: np.dtype(name) for name in
               ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")}

_NAMES = {dtype: name for name, dtype in WIRE_DTYPES.items()}

# The largest frame a rank accepts (ZMQ_MAXMSGSIZE on its data port; a bigger one
# disconnects its sender): payloads travel in segments of at most 1 MiB, so a
# stranger cannot make a rank allocate more than this per message.
MAX_FRAME_BYTES = 4 << 20


def dtype_name(dtype):
    """The wire name of a numpy dtype, or None when it cannot travel. A dict lookup:
    numpy builds ``dtype.name`` anew on every access (~4 us)."""
    return _NAMES.get(dtype)


_FIELDS = {"job": bytes, "grp": int, "op": str, "seq": int, "src": int, "dtype": str, "shape": list,
           "seg": int, "nbytes": int}
ABORT_OP = "abort"
LEAVE_OP = "leave"  # a rank closed its world normally: peers still waiting for it never will get it


def encode_header(job, group, op, seq, src, dtype, shape, seg, nbytes):
    return msgpack.packb({"job": job, "grp": group, "op": op, "seq": seq, "src": src,
                          "dtype": dtype, "shape": list(shape), "seg": seg, "nbytes": nbytes},
                         use_bin_type=True)


def encode_abort(job, src, reason, op=ABORT_OP):
    """An abort notice: a rank that failed tells every peer why, so none waits forever
    (``op=LEAVE_OP``: a leave notice, from a rank that closed its world normally)."""
    return msgpack.packb({"job": job, "grp": -1, "op": op, "seq": -1, "src": src,
                          "dtype": _clip_utf8(reason[:2000], 4000), "shape": [], "seg": 0, "nbytes": 0},
                         use_bin_type=True)


def _clip_utf8(text, max_bytes):
    """``text`` cut to at most ``max_bytes`` of UTF-8 (the decoder's string limit), whole characters only."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


class MalformedMessage(ValueError):
    """Bytes that are not a distnn message (dropped and logged, never trusted)."""


def decode_header(frame, job, world_size):
    """Parse and validate a header frame; raises ``MalformedMessage`` for garbage."""
    try:
        header = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=64,
                                 max_str_len=4096, max_array_len=64, max_map_len=16)
    except Exception as exc:  # msgpack raises several types for garbage
        raise MalformedMessage(f"undecodable header ({type(exc).__name__})") from None
    if type(header) is not dict or header.keys() != _FIELDS.keys():
        raise MalformedMessage("header fields differ from the distnn wire format")
    for key, kind in _FIELDS.items():
        if type(header[key]) is not kind:  # exact types: msgpack makes no subclasses, and a bool is no int
            raise MalformedMessage(f"header field {key!r} has type {type(header[key]).__name__}")
    if header["job"] != job:
        raise MalformedMessage("message from another job (job id differs)")
    if not 0 <= header["src"] < world_size:
        raise MalformedMessage(f"sender rank {header['src']} outside world of size {world_size}")
    if header["op"] in (ABORT_OP, LEAVE_OP):
        return header
    if header["dtype"] not in WIRE_DTYPES:
        raise MalformedMessage(f"unknown dtype {header['dtype']!r}")
    if not all(isinstance(d, int) and d >= 0 for d in header["shape"]) or header["nbytes"] < 0:
        raise MalformedMessage("negative or non-integer shape/size")
    return header


def mismatch(header, mine, my_rank, seq):
    """The error naming the first of op, dtype and shape where the peer's collective
    (``header``) differs from ours (``mine``), or None when they agree. An op names its
    arguments (``broadcast.from0``, ``reduce.sum.to1``), so when only one of them differs
    the error names that argument too."""
    for field in ("op", "dtype", "shape"):
        if header[field] != mine[field]:
            argument = _differing_argument(mine[field], header[field]) if field == "op" else ""
            return DistributedError(
                f"rank {my_rank}: mismatched collective with rank {header['src']} "
                f"(sequence {seq}): {field} differs: this rank has {mine[field]!r}, "
                f"rank {header['src']} has {header[field]!r}{argument}")
    return None


_ARGUMENT_PREFIXES = (("from", "src"), ("to", "dst"))


def _differing_argument(mine, theirs):
    """' (src differs: 0 vs 1)' when two op names differ in one argument, else ''."""
    a, b = mine.split("."), theirs.split(".")
    if len(a) != len(b) or a[0] != b[0]:
        return ""
    diffs = [(x, y) for x, y in zip(a, b) if x != y]
    if len(diffs) != 1:
        return ""
    x, y = diffs[0]
    for prefix, name in _ARGUMENT_PREFIXES:
        if x.startswith(prefix) and y.startswith(prefix):
            return f" ({name} differs: this rank has {x[len(prefix):]}, the peer has {y[len(prefix):]})"
    return f" (reduce op differs: this rank has {x}, the peer has {y})"


def check_expected(header, expect, my_rank):
    """Raise ``DistributedError`` if the peer's collective differs from ours."""
    error = mismatch(header, expect, my_rank, expect["seq"])
    if error is not None:
        raise error
    if header["nbytes"] != expect["nbytes"]:
        raise DistributedError(
            f"rank {my_rank}: rank {header['src']} sent {header['nbytes']} bytes for segment "
            f"{header['seg']} of {header['op']} (sequence {expect['seq']}), expected {expect['nbytes']}")
