"""Axis bookkeeping every reduction shares: the reduced axes put back (and broadcast to the
input's shape) for backward. ``dim`` itself is read by ``.._dims.normalize_dims``."""

import numpy as np

from ..autograd.graph_xp import recording

_INT64 = np.dtype(np.int64)


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
