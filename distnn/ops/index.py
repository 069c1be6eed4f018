"""Indexing: ``x[index]`` (a view for basic keys, a copy for advanced ones), the
out-of-place value of ``x[index] = v`` and the raw writers behind Tensor's
in-place ``__setitem__``/``masked_fill_``, gather/scatter, masked_fill/select,
index_select, nonzero, embedding and one_hot.

Keys follow numpy's rules, which are PyTorch's for ints, slices, None, Ellipsis
and integer/boolean arrays; gradients of repeated indices accumulate.
"""

import operator

import numpy as np

from ..autograd.function import Op
from ..backend import array_module
from ..tensor import Tensor
from .common import SCALARS, as_tensor, no_grad_result, normalize_dim

__all__ = ["getitem", "index_put", "assign_index", "assign_masked", "gather", "scatter", "scatter_add", "masked_fill",
           "masked_select", "index_select", "take_along_dim", "nonzero"]

# embedding and one_hot live in nn.functional only: torch.embedding takes (weight, input).
TENSOR_METHODS = ("gather", "scatter", "scatter_add", "masked_fill", "masked_select", "index_select",
                  "take_along_dim", "nonzero")

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


def _check_range(index, size, dim, error=IndexError, message=None):
    """Indices must lie in [0, size); numpy would wrap negatives, cupy would wrap all."""
    if index.size == 0:
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= size:
        raise error(message or f"index {lo if lo < 0 else hi} is out of bounds for dimension {dim} "
                               f"with size {size}")


def _check_int(index, what):
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"{what}: Expected dtype int64 for index, Actual: {index.dtype}")


# --- x[index] -------------------------------------------------------------------------

class _BasicIndex(Op):
    """Ints, slices, None and Ellipsis only: the result is a view of the input."""

    is_view = True

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.key = a.shape, key
        return a[key]

    @staticmethod
    def backward(ctx, g):
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        grad[ctx.key] = g
        return grad, None


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

    @staticmethod
    def forward(ctx, a, key):
        ctx.shape, ctx.key = a.shape, key
        out = a[key]
        return ctx.xp.asarray(out) if isinstance(out, np.generic) else out

    @staticmethod
    def backward(ctx, g):
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        if _has_int_array(ctx.key):
            ctx.xp.add.at(grad, ctx.key, g)
        else:  # boolean masks select each element at most once
            grad[ctx.key] = g
        return grad, None


def getitem(input, index):
    """``input[index]`` with PyTorch's (numpy's) indexing rules."""
    key, basic = _key(index, array_module(input._data))
    if basic:
        return _view_op(key).apply(input, key)
    return Index.apply(input, key)


# --- x[index] = value ----------------------------------------------------------------

class IndexPut(Op):
    """The value of ``a[key] = value`` (or ``+=``, repeats accumulating) as a new array."""

    @staticmethod
    def forward(ctx, a, key, value, accumulate=False):
        out = a.copy()
        if accumulate:
            ctx.xp.add.at(out, key, value)
        else:
            out[key] = value
        ctx.key, ctx.accumulate = key, accumulate
        ctx.value_ndim = getattr(value, "ndim", 0)
        return out

    @staticmethod
    def backward(ctx, g):
        need_a, _, need_value = ctx.needs_input_grad
        ga = gv = None
        if need_a:
            ga = ctx.xp.array(g)  # a copy, and an array even when a 0-dim g arrives as a scalar
            if not ctx.accumulate:
                ga[ctx.key] = 0
        if need_value:
            gv = ctx.xp.asarray(g[ctx.key])
            if gv.ndim < ctx.value_ndim:  # numpy lets the value carry extra leading 1s
                gv = gv.reshape((1,) * (ctx.value_ndim - gv.ndim) + gv.shape)
        return ga, None, gv


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
    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim = a.shape, dim
        ctx.save_for_backward(index)
        return ctx.xp.take_along_axis(a[_leading(index.shape, dim)], index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        ctx.xp.add.at(grad, _along(ctx.xp, index, ctx.dim), g)
        return grad, None, None


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
    picked = ctx.xp.take_along_axis(g[_leading(index.shape, ctx.dim)], index, axis=ctx.dim)
    if picked.shape == tuple(src_shape):
        return picked
    grad = ctx.xp.zeros(src_shape, g.dtype)
    grad[_leading(index.shape)] = picked
    return grad


class Scatter(Op):
    """``out = a`` with ``out[i][index[i][j]] = src[i][j]`` (for ``dim=1``)."""

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
            ga = g.copy()
            ga[_along(ctx.xp, index, ctx.dim)] = 0
        if need_src:
            gs = _grad_of_src(ctx, g, index, ctx.src_shape)
        return ga, None, None, gs


class ScatterValue(Op):
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
        ga = g.copy()
        ga[_along(ctx.xp, index, ctx.dim)] = 0
        return ga, None, None, None


ScatterValue._Node.__name__ = "ScatterBackward1"  # PyTorch's name for the scalar-value overload


class ScatterAdd(Op):
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


# --- masks -----------------------------------------------------------------------------

def _check_mask(mask, name):
    if mask._data.dtype.kind != "b":
        raise RuntimeError(f"{name} only supports boolean masks, but got mask with dtype "
                           f"{mask._data.dtype}")


class MaskedFill(Op):
    @staticmethod
    def forward(ctx, a, mask, value):
        ctx.save_for_backward(mask)
        fill = value.astype(a.dtype) if hasattr(value, "dtype") else a.dtype.type(value)
        return ctx.xp.where(mask, fill, a)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        need_a, _, need_value = ctx.needs_input_grad
        xp = ctx.xp
        ga = xp.where(mask, 0, g) if need_a else None
        gv = xp.where(mask, g, 0).sum(keepdims=True).reshape(()) if need_value else None
        return ga, None, gv


def masked_fill(input, mask, value):
    """``input`` with ``value`` where ``mask`` (broadcastable, bool) is True."""
    _check_mask(mask, "masked_fill_")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got tensor "
                           f"with {value.ndim} dimension(s).")
    return MaskedFill.apply(input, mask, value)


class MaskedSelect(Op):
    @staticmethod
    def forward(ctx, a, mask):
        shape = np.broadcast_shapes(a.shape, mask.shape)
        ctx.shape = shape
        ctx.save_for_backward(mask)
        return ctx.xp.broadcast_to(a, shape)[ctx.xp.broadcast_to(mask, shape)]

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        grad[ctx.xp.broadcast_to(mask, ctx.shape)] = g
        return grad, None


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` is True, as a 1-D tensor (both broadcast)."""
    _check_mask(mask, "masked_select:")
    return MaskedSelect.apply(input, mask)


# --- index_select, nonzero -----------------------------------------------------------------

class IndexSelect(Op):
    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim = a.shape, dim
        ctx.save_for_backward(index)
        return ctx.xp.take(a, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        ctx.xp.add.at(grad, (slice(None),) * ctx.dim + (index,), g)
        return grad, None, None


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


# --- embedding, one_hot (their public home is nn.functional) --------------------------------

class Embedding(Op):
    @staticmethod
    def forward(ctx, indices, weight, padding_idx, scale_grad_by_freq):
        ctx.weight_shape, ctx.padding_idx, ctx.scale = weight.shape, padding_idx, scale_grad_by_freq
        ctx.save_for_backward(indices)
        return ctx.xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        xp = ctx.xp
        flat = indices.reshape(-1)
        grad = xp.zeros(ctx.weight_shape, g.dtype)
        xp.add.at(grad, flat, g.reshape(flat.size, -1))
        if ctx.scale:
            counts = xp.bincount(flat, minlength=ctx.weight_shape[0])
            grad /= xp.maximum(counts, 1).astype(g.dtype)[:, None]
        if ctx.padding_idx is not None:
            grad[ctx.padding_idx] = 0
        return None, grad, None, None


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` at the integer ``input``; the ``padding_idx`` row gets no gradient."""
    idx = input._data
    if idx.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {input.type()} instead")
    if weight.ndim != 2:
        raise RuntimeError(f"'weight' must be 2-D, Expect: weight.ndim == 2, Actual: {weight.ndim}")
    if sparse:
        raise NotImplementedError("sparse embedding gradients are not supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"Padding_idx must be within num_embeddings, Expect: [{-num}, {num}), "
                             f"Actual: {padding_idx}")
        padding_idx %= num
    _check_range(idx, num, 0, IndexError, "index out of range in self")
    if max_norm is not None:
        _renorm_rows(weight, idx, max_norm, norm_type)
    return Embedding.apply(input, weight, padding_idx, bool(scale_grad_by_freq))


def _renorm_rows(weight, idx, max_norm, norm_type):
    """Scale the looked-up rows of ``weight`` in place to norm <= max_norm (as PyTorch does)."""
    xp = array_module(weight._data)
    rows = xp.unique(idx.reshape(-1))
    w = weight._data[rows]
    norms = (xp.abs(w) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    weight._data[rows] = w * scale[:, None]
    weight._vc[0] += 1


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding along a new last dim of size ``num_classes`` (-1: max + 1)."""
    a = tensor._data
    if a.dtype != _INT64:
        raise RuntimeError(f"one_hot is only applicable to index tensor of type LongTensor, Actual: {a.dtype}")
    xp = array_module(a)
    if num_classes == -1:
        if a.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(a.max()) + 1
    if a.size:
        if int(a.min()) < 0:
            raise RuntimeError("Class values must be non-negative.")
        if int(a.max()) >= num_classes:
            raise RuntimeError(f"Class values must be smaller than num_classes, Expect: < {num_classes}, "
                               f"Actual: {int(a.max())}")
    return no_grad_result((a[..., None] == xp.arange(num_classes)).astype(_INT64))
