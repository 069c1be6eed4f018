"""Indexing along one dim by an integer index tensor: gather and take_along_dim, their
out-of-place writers scatter and scatter_add, and index_select.

Indices are range-checked (numpy would wrap negatives, cupy all): on the CPU always,
on a GPU in debug mode only (``debug.py``); gradients of repeated indices accumulate.
"""

import numpy as np

from ..autograd.function import Op
from ..autograd.graph_xp import recording
from ..debug import checks_values
from ..tensor import Tensor
from .._dims import normalize_dim
from .index_put import put, put_into_zeros

__all__ = ["gather", "scatter", "scatter_add", "index_select", "take_along_dim"]

TENSOR_METHODS = ("gather", "scatter", "scatter_add", "index_select", "take_along_dim")


# --- checks -----------------------------------------------------------------------

def _check_range(index, size, dim, error=IndexError, message=None):
    """Indices must lie in [0, size); numpy would wrap negatives, cupy would wrap all.
    Not asked of a GPU array outside debug mode: the answer would wait for the GPU."""
    if index.size == 0 or not checks_values(index):
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= size:
        raise error(message or f"index {lo if lo < 0 else hi} is out of bounds for dimension {dim} "
                               f"with size {size}")


def _check_int(index, what):
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"{what}: Expected dtype int64 for index, Actual: {index.dtype}")


# --- gather / scatter ---------------------------------------------------------------

def _along(xp, index, dim):
    """The index tuple that addresses ``target[i][index[i][j]]`` elementwise along ``dim``."""
    key = []
    for d, n in enumerate(index.shape):
        if d == dim:
            key.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = n
            key.append(xp.arange(n).reshape(shape))
    return tuple(key)


def _leading(shape, skip=None):
    """Slices keeping the first ``shape[d]`` entries of every dim but ``skip``."""
    return tuple(slice(None) if d == skip else slice(0, n) for d, n in enumerate(shape))


def _check_gather_shapes(name, a, dim, index, src=None):
    if index.ndim != a.ndim:
        raise RuntimeError(f"{name}(): Index tensor must have the same number of dimensions as "
                           f"input tensor, Expect: {a.ndim}, Actual: {index.ndim}")
    _check_int(index, name)
    if src is not None and src.dtype != a.dtype:
        raise RuntimeError(f"{name}(): Expected self.dtype to be equal to src.dtype, Expect: {a.dtype}, "
                           f"Actual: {src.dtype}")
    for d in range(index.ndim):
        if (d != dim and index.shape[d] > a.shape[d]) or (src is not None and index.shape[d] > src.shape[d]):
            raise RuntimeError(f"{name}(): Size does not match at dimension {d}: expected index "
                               f"{list(index.shape)} to be smaller than self {list(a.shape)} apart from "
                               f"dimension {dim}" + (f" and to be smaller than src {list(src.shape)}"
                                                     if src is not None else ""))
    _check_range(index, a.shape[dim], dim, RuntimeError)


class Gather(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim = a.shape, dim
        ctx.save_for_backward(index)
        return ctx.xp.take_along_axis(a[_leading(index.shape, dim)], index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return put_into_zeros(ctx.xp, ctx.shape, _along(ctx.xp, index, ctx.dim), g, accumulate=True), None, None


def gather(input, dim, index, sparse_grad=False):
    """``out[i][j] = input[i][index[i][j]]`` for ``dim=1`` (any dim, any rank)."""
    dim = normalize_dim(dim, input.ndim)
    _check_gather_shapes("gather", input._data, dim, index._data)
    return Gather.apply(input, dim, index)


def take_along_dim(input, indices, dim=None):
    """``gather`` with broadcasting; ``dim=None`` indexes the flattened input."""
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    dim = normalize_dim(dim, input.ndim)
    if input.ndim != indices.ndim:
        raise RuntimeError("torch.take_along_dim(): input and indices should have the same number of "
                           f"dimensions, Expect: {input.ndim}, Actual: {indices.ndim}")
    shape = list(np.broadcast_shapes(*(tuple(1 if d == dim else n for d, n in enumerate(t.shape))
                                       for t in (input, indices))))
    a_shape, i_shape = list(shape), list(shape)
    a_shape[dim], i_shape[dim] = input.shape[dim], indices.shape[dim]
    if list(input.shape) != a_shape:
        input = input.expand(*a_shape)
    return gather(input, dim, indices.expand(*i_shape) if list(indices.shape) != i_shape else indices)


def _grad_of_src(ctx, g, index, src_shape):
    """Gradient of a scatter's ``src``: ``g`` gathered at ``index``, zero where src was unused."""
    if recording(g):
        picked = g[_along(ctx.xp, index, ctx.dim)]
    else:
        picked = ctx.xp.take_along_axis(g[_leading(index.shape, ctx.dim)], index, axis=ctx.dim)
    if picked.shape == tuple(src_shape):
        return picked
    return put_into_zeros(ctx.xp, src_shape, _leading(index.shape), picked)


class Scatter(Op):
    """``out = a`` with ``out[i][index[i][j]] = src[i][j]`` (for ``dim=1``)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, index, src):
        ctx.dim, ctx.src_shape = dim, src.shape
        ctx.save_for_backward(index)
        out = a.copy()
        out[_along(ctx.xp, index, dim)] = src[_leading(index.shape)]
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        need_a, _, _, need_src = ctx.needs_input_grad
        ga = gs = None
        if need_a:
            ga = put(ctx.xp, g, _along(ctx.xp, index, ctx.dim), 0)
        if need_src:
            gs = _grad_of_src(ctx, g, index, ctx.src_shape)
        return ga, None, None, gs


class ScatterValue(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, index, value):
        ctx.dim = dim
        ctx.save_for_backward(index)
        out = a.copy()
        out[_along(ctx.xp, index, dim)] = value
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return put(ctx.xp, g, _along(ctx.xp, index, ctx.dim), 0), None, None, None


ScatterValue._Node.__name__ = "ScatterBackward1"  # PyTorch's name for the scalar-value overload


class ScatterAdd(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, index, src):
        ctx.dim, ctx.src_shape = dim, src.shape
        ctx.save_for_backward(index)
        out = a.copy()
        ctx.xp.add.at(out, _along(ctx.xp, index, dim), src[_leading(index.shape)])
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        need_src = ctx.needs_input_grad[3]
        return g, None, None, (_grad_of_src(ctx, g, index, ctx.src_shape) if need_src else None)


def scatter(input, dim, index, src=None, value=None, reduce=None):
    """Out-of-place ``scatter_``: write ``src`` (a tensor) or ``value`` (a scalar) at ``index``."""
    if reduce is not None:
        raise NotImplementedError(f"scatter(reduce={reduce!r}) is not supported; use scatter_add")
    if src is None:
        src = value
    dim = normalize_dim(dim, input.ndim)
    if isinstance(src, Tensor):
        _check_gather_shapes("scatter", input._data, dim, index._data, src._data)
        return Scatter.apply(input, dim, index, src)
    _check_gather_shapes("scatter", input._data, dim, index._data)
    return ScatterValue.apply(input, dim, index, src)


def scatter_add(input, dim, index, src):
    """Out-of-place ``scatter_add_``: ``out[i][index[i][j]] += src[i][j]``; repeats accumulate."""
    dim = normalize_dim(dim, input.ndim)
    _check_gather_shapes("scatter_add", input._data, dim, index._data, src._data)
    return ScatterAdd.apply(input, dim, index, src)


# --- index_select -----------------------------------------------------------------------

class IndexSelect(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim = a.shape, dim
        ctx.save_for_backward(index)
        return ctx.xp.take(a, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        return put_into_zeros(ctx.xp, ctx.shape, (slice(None),) * ctx.dim + (index,), g, accumulate=True), None, None


def index_select(input, dim, index):
    """The entries of ``input`` at ``index`` (1-D integer tensor) along ``dim``."""
    dim = normalize_dim(dim, input.ndim)
    idx = index._data
    if idx.ndim > 1:
        raise IndexError(f"index_select(): Index is supposed to be a vector, Actual: {idx.ndim}-D")
    _check_int(idx, "index_select()")
    size = input.shape[dim] if input.ndim else 1
    _check_range(idx, size, dim, IndexError, "index out of range in self")
    return IndexSelect.apply(input, dim, index.reshape(-1) if idx.ndim == 0 else index)
