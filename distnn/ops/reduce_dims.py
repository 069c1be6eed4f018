"""Bookkeeping every reduction and scan shares: the reduced axes put back (and broadcast
to the input's shape) for backward, and the result dtype of a ``dtype=`` argument.
``dim`` itself is read by ``.._dims.normalize_dims``."""

import numpy as np

from .. import dtypes
from ..autograd.graph_xp import recording

_INT64 = np.dtype(np.int64)


def _dtype_arg(dtype):
    return None if dtype is None else dtypes.to_np(dtype)


def _integral_to_int64(input, np_dtype):
    """PyTorch sums and multiplies bool and integer tensors in int64."""
    if np_dtype is None and input._data.dtype.kind in "biu":
        return _INT64
    return np_dtype


def _unsqueeze_reduced(xp, g, ctx):
    """A reduced result (or its gradient) with the reduced axes back as size 1."""
    if ctx.keepdim or not ctx.dims:
        return g
    shape = list(ctx.input_shape)
    for d in ctx.dims:
        shape[d] = 1
    return g.reshape(shape)  # a C-level reshape: xp.expand_dims costs microseconds in Python


_MATERIALIZE_MAX = 1 << 16


def _expand_grad(xp, g, ctx):
    """Upstream gradient of a reduction broadcast back to the input's shape.

    Small gradients are materialised (one C-level fill beats numpy's Python-level
    broadcast_to); large ones stay zero-copy broadcast views."""
    kept = _unsqueeze_reduced(xp, g, ctx)
    size = 1
    for n in ctx.input_shape:
        size *= n
    if size > _MATERIALIZE_MAX or recording(g):
        return xp.broadcast_to(kept, ctx.input_shape)
    out = xp.empty(ctx.input_shape, g.dtype)
    out[...] = kept
    return out


def _remember(ctx, a, dims, keepdim):
    ctx.input_shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim


def _count(shape, dims):
    n = 1
    for d in dims:
        n *= shape[d]
    return n
