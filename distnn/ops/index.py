"""Indexing by key: ``x[index]`` (a view for basic keys, a copy for advanced ones), the
out-of-place value of ``x[index] = v`` and the raw writers behind Tensor's in-place
``__setitem__``/``masked_fill_``, masked_fill/select and nonzero.

Keys follow numpy's rules, which are PyTorch's for ints, slices, None, Ellipsis
and integer/boolean arrays; gradients of repeated indices accumulate.
"""

import operator

import numpy as np

from ..autograd.function import Op
from ..backend import array_module
from ..tensor import Tensor
from .common import SCALARS, as_array, as_tensor, no_grad_result

# Re-exported so ``from distnn.ops.index import gather`` (and embedding, one_hot) keeps working.
from .embedding import embedding, one_hot  # noqa: F401
from .gather_scatter import gather, index_select, scatter, scatter_add, take_along_dim  # noqa: F401
from .index_put import IndexPut, put_into_zeros
from .selection import select

__all__ = ["getitem", "index_put", "assign_index", "assign_masked", "masked_fill", "masked_select", "nonzero"]

TENSOR_METHODS = ("masked_fill", "masked_select", "nonzero", "index_put")

_INT64 = np.dtype(np.int64)


# --- keys -------------------------------------------------------------------------

def _key(index, xp):
    """``index`` as a tuple ``xp`` arrays accept, and whether it is basic (gives a view)."""
    items = index if type(index) is tuple else (index,)
    key = []
    basic = True
    for k in items:
        if type(k) is int or type(k) is slice or k is None or k is Ellipsis:
            key.append(k)
            continue
        if isinstance(k, (bool, np.bool_)):
            key.append(bool(k))
            basic = False
            continue
        if isinstance(k, Tensor):
            k = k._data
        elif type(k) is range:  # a sequence of ints, as torch reads it: an index array
            k = xp.arange(k.start, k.stop, k.step, dtype=_INT64)
        elif isinstance(k, (list, tuple)):
            k = xp.asarray(k)
            if k.size == 0:
                k = k.astype(_INT64)
        if hasattr(k, "dtype") and hasattr(k, "ndim"):
            if k.dtype.kind not in "iub":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            if k.ndim == 0 and k.dtype.kind != "b":  # a 0-dim integer tensor selects, as an int
                key.append(int(k))
                continue
            if array_module(k) is not xp:
                k = xp.asarray(k)
            key.append(k)
            basic = False
            continue
        try:
            key.append(operator.index(k))
        except TypeError:
            raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                             f"Variables are valid indices (got {type(k).__name__})") from None
    if basic and Ellipsis not in key:
        key.append(Ellipsis)  # numpy then gives a 0-dim view, not a scalar, and takes (1,) values
    return tuple(key), basic


def _has_int_array(key):
    return any(hasattr(k, "dtype") and k.dtype.kind != "b" for k in key)


# --- x[index] -------------------------------------------------------------------------

class _BasicIndex(Op):
    """Ints, slices, None and Ellipsis only: the result is a view of the input."""

    is_view = True
    double_backward = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.key = a.shape, key
        return a[key]

    @staticmethod
    def backward(ctx, g):
        return put_into_zeros(ctx.xp, ctx.shape, ctx.key, g), None


# Named like the PyTorch node of the last indexing step each key performs.
Select = type("Select", (_BasicIndex,), {})
Slice = type("Slice", (_BasicIndex,), {})
Unsqueeze = type("Unsqueeze", (_BasicIndex,), {})
Alias = type("Alias", (_BasicIndex,), {})


def _view_op(key):
    for k in reversed(key):
        if type(k) is int:
            return Select
        if k is None:
            return Unsqueeze
        if type(k) is slice and k != slice(None):
            return Slice
    return Slice if any(type(k) is slice for k in key) else Alias


class Index(Op):
    """Advanced (integer/boolean array) indexing: a copy; repeated indices accumulate."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.key = a.shape, key
        out = a[key]
        return as_array(out)

    @staticmethod
    def backward(ctx, g):
        # boolean masks select each element at most once; integer arrays may repeat
        return put_into_zeros(ctx.xp, ctx.shape, ctx.key, g, _has_int_array(ctx.key)), None


def getitem(input, index):
    """``input[index]`` with PyTorch's (numpy's) indexing rules."""
    key, basic = _key(index, array_module(input._data))
    if basic:
        return _view_op(key).apply(input, key)
    return Index.apply(input, key)


# --- x[index] = value ----------------------------------------------------------------

def _as_value(value, like):
    return value if isinstance(value, (Tensor,) + SCALARS) else as_tensor(value, like)


def index_put(input, index, value, accumulate=False):
    """Out-of-place ``input[index] = value`` (value broadcast and cast to input's dtype);
    with ``accumulate`` the value is added instead, repeated indices summing."""
    key, _ = _key(index, array_module(input._data))
    return IndexPut.apply(input, key, _as_value(value, input), accumulate=bool(accumulate))


def assign_index(array, index, value):
    """``array[index] = value`` on a raw array, in place; index and value may hold Tensors."""
    key, _ = _key(index, array_module(array))
    array[key] = value._data if isinstance(value, Tensor) else value


def assign_masked(array, mask, value):
    """``masked_fill_`` on a raw array: ``value`` where ``mask`` (broadcast to ``array``) is True.

    Unlike ``array[mask] = value`` the mask broadcasts, as ``masked_fill`` does.
    """
    where = mask._data if isinstance(mask, Tensor) else mask
    array_module(array).copyto(array, value._data if isinstance(value, Tensor) else value, casting="unsafe",
                               where=where)


# --- masks -----------------------------------------------------------------------------

def _check_mask(mask, name):
    if mask._data.dtype.kind != "b":
        raise RuntimeError(f"{name} only supports boolean masks, but got mask with dtype "
                           f"{mask._data.dtype}")


class MaskedFill(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, mask, value):
        ctx.save_for_backward(mask)
        fill = value.astype(a.dtype) if hasattr(value, "dtype") else a.dtype.type(value)
        return select(ctx.xp, mask, fill, a)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        need_a, _, need_value = ctx.needs_input_grad
        xp = ctx.xp
        zero = g.dtype.type(0)
        ga = select(xp, mask, zero, g) if need_a else None
        gv = select(xp, mask, g, zero).sum(keepdims=True).reshape(()) if need_value else None
        return ga, None, gv


def masked_fill(input, mask, value):
    """``input`` with ``value`` where ``mask`` (broadcastable, bool) is True."""
    _check_mask(mask, "masked_fill_")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got tensor "
                           f"with {value.ndim} dimension(s).")
    return MaskedFill.apply(input, mask, value)


class MaskedSelect(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, mask):
        shape = np.broadcast_shapes(a.shape, mask.shape)
        ctx.shape = shape
        ctx.save_for_backward(mask)
        return ctx.xp.broadcast_to(a, shape)[ctx.xp.broadcast_to(mask, shape)]

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return put_into_zeros(ctx.xp, ctx.shape, ctx.xp.broadcast_to(mask, ctx.shape), g), None


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` is True, as a 1-D tensor (both broadcast)."""
    _check_mask(mask, "masked_select:")
    return MaskedSelect.apply(input, mask)


# --- nonzero ---------------------------------------------------------------------------

def nonzero(input, as_tuple=False):
    """Indices of the non-zero elements: an (n, ndim) int64 tensor, or one 1-D tensor per dim."""
    a = input._data
    xp = array_module(a)
    if a.ndim == 0:  # PyTorch treats a scalar as one element of a 1-D view
        n = int(bool(a))
        return (no_grad_result(xp.zeros(n, _INT64)),) if as_tuple else no_grad_result(xp.zeros((n, 0), _INT64))
    if as_tuple:
        return tuple(no_grad_result(i.astype(_INT64, copy=False)) for i in xp.nonzero(a))
    return no_grad_result(xp.argwhere(a).astype(_INT64, copy=False))
