"""Reductions: sum, mean, prod, max/min, amax/amin, argmax/argmin, var/std,
norm, logsumexp, all/any, count_nonzero, and the scan cumsum.

``dim`` may be None (all axes), an int or a tuple, negative allowed. Backward
re-inserts the reduced axes (when ``keepdim`` dropped them) and broadcasts.
"""

import numpy as np

from .. import dtypes
from ..autograd.function import Op
from .common import normalize_dims

__all__ = ["sum", "mean"]

TENSOR_METHODS = ("sum", "mean")


def _as_array(xp, r):
    """numpy reductions over all axes return numpy scalars; keep every result an array."""
    return np.asarray(r) if isinstance(r, np.generic) else r


def _expand_grad(xp, g, ctx):
    """Upstream gradient of a reduction broadcast back to the input's shape."""
    if not ctx.keepdim and ctx.dims:
        g = xp.expand_dims(g, ctx.dims)
    return xp.broadcast_to(g, ctx.input_shape)


class Sum(Op):
    @staticmethod
    def forward(ctx, a, dims, keepdim, dtype):
        ctx.input_shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim
        return _as_array(ctx.xp, a.sum(axis=dims, keepdims=keepdim, dtype=dtype))

    @staticmethod
    def backward(ctx, g):
        return _expand_grad(ctx.xp, g, ctx), None, None, None


class Mean(Op):
    @staticmethod
    def forward(ctx, a, dims, keepdim, dtype):
        ctx.input_shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim
        count = 1
        for d in dims:
            count *= a.shape[d]
        ctx.count = count
        return _as_array(ctx.xp, a.mean(axis=dims, keepdims=keepdim, dtype=dtype))

    @staticmethod
    def backward(ctx, g):
        return _expand_grad(ctx.xp, g / ctx.count, ctx), None, None, None


def _dtype_arg(dtype):
    return None if dtype is None else dtypes.to_np(dtype)


def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001  (PyTorch's name)
    dims = normalize_dims(dim, input._data.ndim) if not _empty_dim(dim) else tuple(range(input._data.ndim))
    np_dtype = _dtype_arg(dtype)
    if np_dtype is None and input._data.dtype.kind in "biu":
        np_dtype = np.dtype(np.int64)  # PyTorch sums bool and integer tensors in int64
    return Sum.apply(input, dims, keepdim, np_dtype)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    np_dtype = _dtype_arg(dtype)
    if (np_dtype or input._data.dtype).kind != "f":
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating "
                           f"point or complex dtype. Got: {_type_name(input._data.dtype)}")
    dims = normalize_dims(dim, input._data.ndim) if not _empty_dim(dim) else tuple(range(input._data.ndim))
    return Mean.apply(input, dims, keepdim, np_dtype)


def _empty_dim(dim):
    return isinstance(dim, (tuple, list)) and len(dim) == 0


def _type_name(np_dtype):
    return {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool", "float32": "Float", "float64": "Double", "float16": "Half"}[np_dtype.name]
