"""Reads pickles that hold only plain data and numpy arrays (the CIFAR batches)
without general unpickling: ``find_class`` knows a handful of names, and even
those never reach numpy's own pickle hooks.

An array arrives as ``numpy.core.multiarray._reconstruct`` plus a ``BUILD`` with
``(version, shape, dtype, is_fortran, raw bytes)`` (protocols 0-4; Python 2 files
give the bytes as a latin-1 ``str``), or as ``numpy._core.numeric._frombuffer``
(protocol 5). Here those names build placeholders that check the state they are
given (a numeric dtype, a shape whose size matches the bytes) and then view the
bytes with ``np.frombuffer``. Any other global raises ``UnsafePickleError`` before
anything is called, so a crafted file cannot run code.
"""

import math
import pickle

import numpy as np

__all__ = ["UnsafePickleError", "load"]

# dtype codes a data file may use: numbers and bools, never objects, strings or records.
_NUMERIC_CODES = {f"{kind}{size}" for kind, sizes in (("u", "1248"), ("i", "1248"), ("f", "248"))
                  for size in sizes} | {"b1"}
_MAX_DEPTH = 32  # nesting walked when replacing placeholders; data files use 2


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global (a callable) outside the allow-list of plain data and
    numpy arrays, or hands an allowed one arguments it never needs."""


class _Dtype:
    """Placeholder for ``numpy.dtype(code, align, copy)``; pickle's BUILD then sets its byte order."""

    def __init__(self, code):
        self.dtype = np.dtype(code)

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 8 and state[2:5] == (None, None, None)):
            raise UnsafePickleError(f"Expect: the state of a plain numeric dtype, Actual: {state!r:.200}")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """Placeholder for ``_reconstruct(ndarray, (0,), b'b')``; BUILD supplies shape, dtype and bytes."""

    array = None

    def __setstate__(self, state):
        if self.array is not None:
            raise UnsafePickleError("an array's state was set twice")
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # drop the format version
        if not (isinstance(state, tuple) and len(state) == 4):
            raise UnsafePickleError(f"Expect: array state (shape, dtype, is_fortran, data), Actual: {state!r:.200}")
        shape, dtype, is_fortran, raw = state
        self.array = _array_from(raw, dtype, shape, "F" if is_fortran else "C")


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a marker that only ``_reconstruct`` accepts."""


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NdarrayName or tuple(shape) != (0,):
        raise UnsafePickleError(f"Expect: _reconstruct(numpy.ndarray, (0,), b'b'), "
                                f"Actual: _reconstruct({subtype!r}, {shape!r}, {typecode!r})")
    return _Array()


def _dtype(code, align=False, copy=False):
    if not isinstance(code, str) or code not in _NUMERIC_CODES:
        raise UnsafePickleError(f"Expect: a numeric dtype code ({', '.join(sorted(_NUMERIC_CODES))}), "
                                f"Actual: {code!r:.100}")
    return _Dtype(code)


def _frombuffer(buffer, dtype, shape, order):
    return _array_from(buffer, dtype, shape, order)


def _scalar(dtype, raw):
    return _array_from(raw, dtype, (), "C")[()]


def _encode(text, encoding):
    # What Python 3 writes for ``bytes`` under protocols 0-2.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"Expect: _codecs.encode(str, 'latin1'), Actual: encoding {encoding!r:.50}")
    return text.encode("latin1")


def _empty_bytes(*args):
    # What Python 3 writes for b"" under protocols 0-2; bytes(n) would allocate n bytes.
    if args:
        raise UnsafePickleError(f"Expect: bytes() with no arguments, Actual: bytes{args!r:.50}")
    return b""


def _array_from(raw, dtype, shape, order):
    if not isinstance(dtype, _Dtype):
        raise UnsafePickleError(f"Expect: a numeric numpy dtype, Actual: {type(dtype).__name__}")
    if isinstance(raw, str):
        raw = raw.encode("latin1")  # a Python 2 str read with encoding="latin1"
    elif isinstance(raw, (pickle.PickleBuffer, bytearray)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise UnsafePickleError(f"Expect: array data as bytes, Actual: {type(raw).__name__}")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise UnsafePickleError(f"Expect: a shape of non-negative ints, Actual: {shape!r:.200}")
    if order not in ("C", "F"):
        raise UnsafePickleError(f"Expect: order 'C' or 'F', Actual: {order!r:.50}")
    need = math.prod(shape) * dtype.dtype.itemsize
    if need != len(raw):
        raise UnsafePickleError(f"array of shape {shape} and dtype {dtype.dtype} needs {need} bytes, "
                                f"the pickle holds {len(raw)}")
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)


_ALLOWED = {
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load global '{module}.{name}': this reader allows only "
                "numpy arrays, numeric dtypes, dicts, lists, strings and numbers (a pickle that names "
                "anything else can run code; the file is damaged or malicious)") from None


def _materialize(obj, seen, depth=0):
    """Swap each array placeholder for its array, in place in lists and dicts (tuples
    are rebuilt). ``seen`` maps a container's id to its result, so a structure that
    shares one list many times over is walked once, not once per path to it."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise UnsafePickleError("an array placeholder never received its state")
        return obj.array
    if isinstance(obj, _Dtype):
        return obj.dtype
    if not isinstance(obj, (list, dict, tuple)):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if depth >= _MAX_DEPTH:
        raise UnsafePickleError(f"data nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, tuple):
        seen[id(obj)] = result = tuple(_materialize(v, seen, depth + 1) for v in obj)
        return result
    seen[id(obj)] = obj
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _materialize(v, seen, depth + 1)
        return obj
    for key, value in obj.items():
        if isinstance(key, (_Array, _Dtype)):
            raise UnsafePickleError("a dict key is an array or dtype")
        obj[key] = _materialize(value, seen, depth + 1)
    return obj


def load(file, source=None):
    """The plain data in the pickle ``file`` (an open binary file), with numpy arrays
    as read-only arrays. Raises ``UnsafePickleError`` for anything else; a truncated
    or corrupt stream raises what ``pickle`` raises (``UnpicklingError``, ``EOFError``...)."""
    source = source if source is not None else getattr(file, "name", "<pickle>")
    try:
        return _materialize(_RestrictedUnpickler(file, source).load(), {})
    except UnsafePickleError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise UnsafePickleError(f"{source}: {exc}") from None
