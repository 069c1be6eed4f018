"""Argument handling every op family shares: turning operands into tensors, int
arguments checked as PyTorch's parser checks them, PyTorch type promotion, and keeping
numpy's scalar results arrays (``dim`` arguments: ``.._dims``)."""

import operator

import numpy as np

from .. import dtypes
from ..backend import as_array, device_of  # noqa: F401  (as_array: every op family imports it from here)
from ..creation import tensor
from ..tensor import Tensor, _wrap
from .conversion import to_dtype

SCALARS = (bool, int, float, np.generic)


def renamed_op(cls, name, number=0):
    """``cls`` under another PyTorch node name, e.g. ``renamed_op(Squeeze, "Squeeze", 1)``
    prints as ``SqueezeBackward1``; the name is all that differs. PyTorch composes some
    ops from smaller ones, and its grad_fn is then the last of them (``MeanBackward0``
    for l1_loss)."""
    return type(name, (cls,), {"_node_suffix": f"Backward{number}", "__doc__": cls.__doc__})


def int_argument(value, fn, name, position):
    """``value`` as an int, refusing floats and bools with PyTorch's argument-parser error."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{fn}(): argument '{name}' (position {position}) must be int, not {type(value).__name__}")


def as_tensor(x, like=None):
    """``x`` as a Tensor (no copy for tensors; arrays and lists are copied into one): on
    ``like``'s device when given, else where ``x`` lives, so a raw CuPy array (a constant
    in a backward formula) stays on its GPU. Lists and scalars go to the CPU."""
    if isinstance(x, Tensor):
        return x
    return tensor(x, device=like.device if like is not None else device_of(x))


def promote_operands(a, b):
    """Cast two operands (tensors or Python scalars) to their PyTorch result type.

    Scalars stay Python scalars (numpy keeps them "weak", so a float32 tensor
    times 0.5 stays float32); tensors are cast with a differentiable cast.
    """
    # The common cases first, with the answer the general rules below would give:
    # two tensors of one dtype, or a float tensor and a Python float or int.
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a._data.dtype is b._data.dtype:
                return a, b
        elif a._data.dtype.kind == "f":
            if type(b) is float:
                return a, b
            if type(b) is int:
                return a, float(b)
    elif isinstance(b, Tensor) and b._data.dtype.kind == "f":
        if type(a) is float:
            return a, b
        if type(a) is int:
            return float(a), b
    if not isinstance(a, Tensor) and not isinstance(a, SCALARS):
        a = as_tensor(a, b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor) and not isinstance(b, SCALARS):
        b = as_tensor(b, a if isinstance(a, Tensor) else None)
    ad = a._data if isinstance(a, Tensor) else a
    bd = b._data if isinstance(b, Tensor) else b
    if isinstance(a, Tensor) and isinstance(b, Tensor) and ad.dtype is bd.dtype:
        return a, b
    target = dtypes.promote(ad, bd)
    return _cast_operand(a, target), _cast_operand(b, target)


def _cast_operand(x, target):
    if isinstance(x, Tensor):
        if x._data.dtype != target:
            return to_dtype(x, target)
        return x
    if isinstance(x, np.generic):
        return x.item()
    if target.kind == "f" and isinstance(x, (bool, int)) and not isinstance(x, bool):
        return float(x)
    return x


def result_float_dtype(x):
    """The floating dtype an op like ``mean`` or ``sqrt`` produces for tensor ``x``."""
    return x._data.dtype if x._data.dtype.kind == "f" else dtypes.DEFAULT_FLOAT


def no_grad_result(array):
    """Wrap the result of a non-differentiable op (comparisons, argmax, ...)."""
    return _wrap(array)
