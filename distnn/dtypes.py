"""Tensor dtypes (``distnn.float32`` ...) and PyTorch's type-promotion rules.

A ``dtype`` wraps one numpy dtype. float32 is the default floating type: a
Python float never turns a float32 tensor into float64, and integer tensors
combined with a float promote to float32, as in PyTorch.
"""

import builtins as _builtins

import numpy as np


class dtype:
    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_category")

    def __init__(self, name, np_dtype):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.is_signed = self.np.kind in "fi"
        self.itemsize = self.np.itemsize
        self._category = {"b": 0, "u": 1, "i": 1, "f": 2}[self.np.kind]

    def __repr__(self):
        return f"torch.{self.name}"

    def __reduce__(self):
        return (from_any, (self.name,))


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
float16 = dtype("float16", np.float16)
int64 = dtype("int64", np.int64)
int32 = dtype("int32", np.int32)
int16 = dtype("int16", np.int16)
int8 = dtype("int8", np.int8)
uint8 = dtype("uint8", np.uint8)
bool_ = dtype("bool", np.bool_)

float = float32  # noqa: A001  (torch.float is float32)
double = float64
half = float16
long = int64
int = int32  # noqa: A001
short = int16

ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64,
                 "int": int32, "short": int16})

DEFAULT_FLOAT = np.dtype(np.float32)


def from_numpy_dtype(np_dtype):
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        d = np.dtype(np_dtype)
        if d in _BY_NP:
            return _BY_NP[d]
        raise TypeError(f"Expect: a dtype among {[x.name for x in ALL]}, Actual: numpy {d}") from None


def from_any(spec):
    """Accept a distnn dtype, a numpy dtype or type, a name, or Python's float/int/bool."""
    if isinstance(spec, dtype):
        return spec
    if spec is builtins_float:
        return float32
    if spec is builtins_int:
        return int64
    if spec is builtins_bool:
        return bool_
    if isinstance(spec, str):
        name = spec.replace("torch.", "")
        if name in _BY_NAME:
            return _BY_NAME[name]
    return from_numpy_dtype(np.dtype(spec))


def to_np(spec):
    """The numpy dtype for any dtype spec; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, dtype):
        return spec.np
    return from_any(spec).np



builtins_float, builtins_int, builtins_bool = _builtins.float, _builtins.int, _builtins.bool

_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def promote(a, b):
    """Result numpy dtype of a binary op between arrays/scalars ``a`` and ``b``.

    PyTorch's rules: a higher category (bool < integer < float) wins; within a
    category, dimensioned tensors outrank 0-dim tensors, which outrank Python
    scalars. Python floats meeting integer tensors give the default float.
    """
    da, db = _dtype_and_rank(a), _dtype_and_rank(b)
    (ta, ra), (tb, rb) = da, db
    ca, cb = _CATEGORY[ta.kind], _CATEGORY[tb.kind]
    if ca != cb:
        hi_t, hi_r = (ta, ra) if ca > cb else (tb, rb)
        if hi_r == 0 and hi_t.kind == "f":  # a Python float: the default float dtype
            return DEFAULT_FLOAT
        if hi_r == 0 and hi_t.kind in "iu":
            return np.dtype(np.int64)
        return hi_t
    if ra != rb:
        return ta if ra > rb else tb
    return np.promote_types(ta, tb)


def _dtype_and_rank(x):
    """(dtype, rank) with rank 2 for a dimensioned array, 1 for 0-dim, 0 for a Python scalar."""
    if isinstance(x, _builtins.bool):
        return np.dtype(np.bool_), 0
    if isinstance(x, _builtins.int):
        return np.dtype(np.int64), 0
    if isinstance(x, _builtins.float):
        return np.dtype(np.float64), 0
    if isinstance(x, np.generic):
        return x.dtype, 0
    return x.dtype, (2 if x.ndim else 1)
