"""Sorting along a dim: ``sort`` and ``topk`` (values and int64 indices, as PyTorch's
``return_types``) and ``argsort``.

The order is always stable, as PyTorch's CPU sort is whether or not ``stable=True``
is asked for: ties keep their input order, and NaN sorts above every number. The
values are the input gathered at the sorted indices, so their gradient is the
upstream gradient put back at those indices.

``topk`` returns the first ``k`` of that stable order, sorted. PyTorch's CPU topk
breaks ties by its selection algorithm's order (``torch.topk([1, 5, 5], 2)`` may
give index 2 before 1), so among equal values the indices, and where the gradient
goes, can differ from PyTorch's; the values are the same. ``sorted=False`` gives
the sorted order too, which is one of the orders PyTorch allows.
"""

from ..autograd.function import Op
from ..backend import array_module
from .._dims import normalize_dim
from .common import int_argument, no_grad_result, renamed_op
from .gather_scatter import _along
from .index_put import put_into_zeros
from .minmax import ReturnTypes
from .reduce_dims import _INT64

__all__ = ["sort", "argsort", "topk"]

TENSOR_METHODS = ("sort", "argsort", "topk")


class Sort(Op):
    """The input gathered at precomputed sorting ``index`` along ``dim``; the gradient
    is put back at the same positions (the indices are distinct along ``dim``)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, index, dim):
        ctx.input_shape, ctx.dim = a.shape, dim
        ctx.save_for_backward(index)
        if a.ndim == 0:
            return a.copy()
        return ctx.xp.take_along_axis(a, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        if not ctx.input_shape:
            return g, None, None
        return put_into_zeros(ctx.xp, ctx.input_shape, _along(ctx.xp, index, ctx.dim), g), None, None


SortStable = renamed_op(Sort, "Sort", 1)  # PyTorch names sort(stable=True)'s node SortBackward1
Topk = renamed_op(Sort, "Topk")


def sorted_indices(xp, a, dim, descending):
    """The stable sorting permutation of array ``a`` along ``dim`` (int64; NaN largest).

    Descending is the ascending order of the reversed array, reversed: equal values
    then keep their input order, which negating the values would not give (and
    unsigned and bool values cannot be negated)."""
    if a.ndim == 0:
        return xp.zeros((), _INT64)
    if not descending:
        return xp.argsort(a, axis=dim, kind="stable").astype(_INT64, copy=False)
    n = a.shape[dim]
    backwards = xp.argsort(xp.flip(a, dim), axis=dim, kind="stable")
    return (n - 1 - xp.flip(backwards, dim)).astype(_INT64, copy=False)


def sort(input, dim=-1, descending=False, *, stable=False):
    """``(values, indices)`` of ``input`` sorted along ``dim``; ties keep their order."""
    data = input._data
    d = normalize_dim(dim, data.ndim)
    indices = no_grad_result(sorted_indices(array_module(data), data, d, descending))
    # The indices go in as a tensor: backward refuses them once modified in place, as PyTorch.
    values = (SortStable if stable else Sort).apply(input, indices, d)
    return ReturnTypes(values, indices, "sort")


def argsort(input, dim=-1, descending=False, *, stable=False):
    """The indices that sort ``input`` along ``dim`` (``sort(...).indices``)."""
    data = input._data
    return no_grad_result(sorted_indices(array_module(data), data, normalize_dim(dim, data.ndim), descending))


def topk(input, k, dim=None, largest=True, sorted=True):  # noqa: A002  (PyTorch's name)
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) entries
    along ``dim`` (default: the last), the largest (smallest) first."""
    k = int_argument(k, "topk", "k", 2)
    data = input._data
    d = normalize_dim(-1 if dim is None else dim, data.ndim)
    size = data.shape[d] if data.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError("selected index k out of range")
    if data.dtype.kind == "b" and input.device.type == "cpu":
        raise RuntimeError("topk does not support bool dtypes on CPU")
    xp = array_module(data)
    index = sorted_indices(xp, data, d, largest)
    if data.ndim:
        index = xp.ascontiguousarray(index[(slice(None),) * d + (slice(0, k),)])
    indices = no_grad_result(index)
    return ReturnTypes(Topk.apply(input, indices, d), indices, "topk")
