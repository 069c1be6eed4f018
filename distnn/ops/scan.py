"""Scans: ``cumsum`` and ``cumprod`` along one dim, with backward formulas that record
under ``create_graph=True``, so both are differentiable to any order.

``cumprod``'s gradient is exact with zeros in the input (PyTorch's formula: a
division only before the first zero). Recorded, it is the division-free sum of
"omitted products", O(n^2) along the dim as in PyTorch, and its own derivative is
again exact. ``cumprod_array`` is ``xp.cumprod`` for other ops' backward formulas
(``Prod``'s), recorded when its operand is.
"""

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording
from ..backend import is_gpu_array
from .._dims import normalize_dim
from .reduce_dims import _dtype_arg, _integral_to_int64

__all__ = ["cumsum", "cumprod"]

TENSOR_METHODS = ("cumsum", "cumprod")


class Cumsum(Op):
    """``dim`` is None for a 0-d input (a scan of one element)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, dtype):
        ctx.dim = dim
        return a.cumsum(axis=dim, dtype=dtype).reshape(a.shape)

    @staticmethod
    def backward(ctx, g):
        xp, axis = ctx.xp, ctx.dim
        if axis is None:
            return g, None, None
        return _reversed_cumsum(xp, g, axis), None, None


class Cumprod(Op):
    """``dim`` is None for a 0-d input (a scan of one element)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, dtype):
        ctx.dim = dim
        out = a.cumprod(axis=dim, dtype=dtype).reshape(a.shape)
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        xp, axis = ctx.xp, ctx.dim
        if axis is None or a.size == 0 or a.shape[axis] == 1:
            return g, None, None
        if a.dtype != g.dtype:
            a = a.astype(g.dtype)
        if recording(g) or recording(a):
            return _omitted_products_grad(xp, a, g, axis), None, None
        return _cumprod_grad(xp, a, out, g, axis), None, None


def _reversed_cumsum(xp, w, axis):
    return xp.flip(xp.flip(w, axis).cumsum(axis=axis), axis)


def _cumprod_grad(xp, a, out, g, axis):
    """``dL/da_k = sum_{j>=k} g_j prod_{i<=j, i!=k} a_i`` in O(n) on arrays (PyTorch's
    cumprod_backward). Before the first zero that is a reversed cumsum of ``out * g``
    divided by ``a_k``; at the first zero, the product before it times the sum up to
    the second zero; after it, zero (every product holds the first zero)."""
    w = out * g
    zero = a == 0
    # the general formula below is also exact without zeros: a GPU takes it rather than wait to ask
    if not is_gpu_array(zero) and not zero.any():
        return _reversed_cumsum(xp, w, axis) / a
    zeros_so_far = zero.cumsum(axis=axis)
    before = zeros_so_far == 0
    grad = xp.where(before, _reversed_cumsum(xp, xp.where(before, w, 0), axis) / xp.where(before, a, 1), 0)
    segment = zeros_so_far == 1  # from the first zero up to the second
    first_zero = zero & segment
    # prod_{z1 < i <= j} a_i for j in the segment, and prod_{i < z1} a_i at z1
    after_zero = xp.where(segment & ~first_zero, a, 1).cumprod(axis=axis)
    at_zero = (xp.where(segment, g, 0) * after_zero).sum(axis=axis, keepdims=True)
    prefix = xp.where(before, a, 1).cumprod(axis=axis)
    return xp.where(first_zero, prefix * at_zero, grad)


def _omitted_products_grad(xp, a, g, axis):
    """The same gradient without division: a new axis ``k`` before ``axis`` (``j``)
    holds, per k, the cumprod of ``a`` with ``a_k`` set to one, and
    ``dL/da_k = sum_{j>=k} g_j * that``. Polynomial in ``a``, so its derivatives are
    exact at zeros too; this is the formula ``create_graph=True`` records (O(n^2)
    memory along the dim)."""
    n = a.shape[axis]
    trailing = (1,) * (a.ndim - axis - 1)
    k = xp.arange(n).reshape((n, 1) + trailing)
    j = xp.arange(n).reshape((1, n) + trailing)
    rows = xp.broadcast_to(xp.expand_dims(a, axis), a.shape[:axis] + (n, n) + a.shape[axis + 1:])
    omitted = cumprod_array(xp, xp.where(k == j, 1, rows), axis + 1)
    terms = xp.expand_dims(g, axis) * omitted
    return xp.where(j >= k, terms, 0).sum(axis=axis + 1)


def cumprod_array(xp, a, axis):
    """``xp.cumprod(a, axis)``, recorded as a ``Cumprod`` when ``a`` is a GraphArray."""
    if recording(a):
        return GraphArray(Cumprod.apply(a.t, axis, None))
    return xp.cumprod(a, axis=axis)


def _scan_args(input, dim, dtype):
    n = input._data.ndim
    d = normalize_dim(dim, n)
    return (d if n else None), _integral_to_int64(input, _dtype_arg(dtype))


def cumsum(input, dim, *, dtype=None):
    return Cumsum.apply(input, *_scan_args(input, dim, dtype))


def cumprod(input, dim, *, dtype=None):
    return Cumprod.apply(input, *_scan_args(input, dim, dtype))
