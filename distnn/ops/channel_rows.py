"""Per-channel work on (N, C, ...) arrays for the norms (``normalization.py``):
sums over every dim but the channel by einsum in one pass, and per-channel scale
and shift as "channel rows", a per-channel vector spread over one sample, so ops
between them and (N, C*rest) views run numpy's contiguous loops.
"""

import math

import numpy as np

from ..autograd.graph_xp import recording


def _one_pass(a):
    """Whether ``a`` is a plain float32/float64 NumPy array, whose sums einsum may fuse
    (float16's would then accumulate in float16). CuPy's einsum runs through cuBLAS,
    which CuPy refuses inside a CUDA-graph capture: GPU arrays take the plain sums."""
    return not recording(a) and a.dtype.itemsize >= 4 and type(a) is np.ndarray


def _plain(a):
    """A C-contiguous plain float32/float64 array: einsum's sums and channel rows apply."""
    return _one_pass(a) and a.flags.c_contiguous


def _by_sample(a):
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _channel_row(xp, v, like):
    """A per-channel vector spread over one sample of ``like`` (N, C, ...), flat as
    (1, C*rest): an op between ``_by_sample`` views and it broadcasts along the
    batch only and runs numpy's contiguous loop, 2x faster than a (1, C, 1)
    broadcast's row-by-row loop on 32x32 maps and 4x on 4x4 ones."""
    return xp.repeat(v.reshape(-1), math.prod(like.shape[2:])).reshape(1, -1)


def _channel_form(xp, *arrays):
    """(view, per_channel) for an op between ``arrays`` (N, C, ...) and per-channel
    values shaped (1, C, 1...): C-contiguous arrays as ``_by_sample`` views against
    ``_channel_row``s, any others (recorded ones too) as they are against the values."""
    if all(not recording(a) and a.flags.c_contiguous for a in arrays):
        return _by_sample, lambda v: _channel_row(xp, v, arrays[0])
    return (lambda a: a), (lambda v: v)


def _channel_sum(xp, a):
    """Per channel (dim 1), the sum over every other dim: einsum's loop, 2.5-6x
    faster than ``sum(axis=(0, 2, 3))``'s on activations; that sum where einsum may
    not fuse (``_one_pass``)."""
    if not _one_pass(a):
        return a.sum(axis=_non_channel_axes(a.ndim))
    n, c = a.shape[:2]
    return xp.einsum("nck->c", a.reshape(n, c, -1))


def _channel_dot(xp, a, b):
    """Per channel (dim 1), the sum of ``a * b`` over every other dim, in one pass:
    a dot product per (sample, channel) row by BLAS where rows are long (13 vs 20 us
    by einsum on a 96x1024 block), einsum's loop where they are short (67 vs 171 us
    on 16-element rows); ``(a * b).sum(...)`` where einsum may not fuse (``_one_pass``)."""
    if not (_one_pass(a) and _one_pass(b)):
        return (a * b).sum(axis=_non_channel_axes(a.ndim))
    n, c = a.shape[:2]
    a, b = a.reshape(n, c, -1), b.reshape(n, c, -1)
    if a.shape[2] >= _BLAS_DOT_MIN_ROW:
        return xp.matmul(a[:, :, None, :], b[:, :, :, None]).reshape(n, c).sum(0)
    return xp.einsum("nck,nck->c", a, b)


_BLAS_DOT_MIN_ROW = 256


def _channel_shape(ndim):
    """Shape that broadcasts a per-channel vector along dim 1 of an ndim-dim input."""
    return (1, -1) + (1,) * (ndim - 2)


def _non_channel_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def _channel_affine(xp, x, scale, shift=None):
    """x * scale (+ shift), per-channel values along dim 1, as a fresh array: on
    channel rows where ``x`` is C-contiguous (``_channel_form``)."""
    shape = _channel_shape(x.ndim)
    view, per_channel = _channel_form(xp, x)
    out = view(x) * per_channel(scale.reshape(shape))
    if shift is not None:
        out += per_channel(shift.reshape(shape))
    return out.reshape(x.shape)
