"""Axis bookkeeping every reduction shares: ``dim`` as a sorted tuple of axes, the reduced
axes put back (and broadcast to the input's shape) for backward, and results kept arrays."""

import numpy as np

from .common import normalize_dim

_INT64 = np.dtype(np.int64)


def _as_array(r):
    """numpy reductions over all axes return numpy scalars; keep every result an array."""
    return np.asarray(r) if isinstance(r, np.generic) else r


def _reduced_dims(dim, ndim):
    """``dim`` as a sorted tuple of axes; None (or an empty tuple) means all of them."""
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        axes = [normalize_dim(d, ndim) for d in dim]
        if len(set(axes)) != len(axes):
            raise RuntimeError(f"dim {axes[0]} appears multiple times in the list of dims")
    else:
        axes = [normalize_dim(dim, ndim)]
    return tuple(sorted(axes)) if ndim else ()  # a 0-d tensor accepts dim 0 / -1 and has no axes


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
    if size > _MATERIALIZE_MAX:
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
