"""Joining tensors along a dim (cat, stack) and its inverse, cutting one tensor into
pieces along a dim (narrow, split, chunk, unbind); the pieces are views of their input.

``cat`` and ``stack`` promote mixed dtypes the way PyTorch does; every gradient is
the matching cut (or join) of the upstream gradient.
"""

import numpy as np

from ..autograd.function import Op
from .._dims import normalize_dim
from .common import renamed_op
from .index_put import put_into_zeros

__all__ = ["cat", "concat", "concatenate", "stack", "split", "chunk", "unbind", "narrow"]

TENSOR_METHODS = ("split", "chunk", "unbind", "narrow")


# --- ops --------------------------------------------------------------------------

class Slice(Op):
    """``narrow``: a contiguous range along one dim (PyTorch names it SliceBackward0)."""

    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, dim, start, stop):
        ctx.input_shape, ctx.index = a.shape, (slice(None),) * dim + (slice(start, stop),)
        return a[ctx.index]

    @staticmethod
    def backward(ctx, g):
        return put_into_zeros(ctx.xp, ctx.input_shape, ctx.index, g), None, None, None


class Split(Op):
    """Pieces of one tensor along ``dim``; all of them are views of it."""

    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, dim, sizes):
        ctx.dim = dim
        lead = (slice(None),) * dim
        pieces = []
        start = 0
        for s in sizes:
            pieces.append(a[lead + (slice(start, start + s),)])
            start += s
        return tuple(pieces)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.concatenate(grads, axis=ctx.dim), None, None


SplitWithSizes = renamed_op(Split, "SplitWithSizes")


class Unbind(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        lead = (slice(None),) * dim
        # the trailing Ellipsis keeps a 0-d piece an array view instead of a numpy scalar
        return tuple(a[lead + (i, Ellipsis)] for i in range(a.shape[dim]))

    @staticmethod
    def backward(ctx, *grads):
        return ctx.xp.stack(grads, axis=ctx.dim), None


class Cat(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ctx.xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.dim
        grads, start = [], 0
        for size, need in zip(ctx.sizes, ctx.needs_input_grad):
            grads.append(g[lead + (slice(start, start + size),)] if need else None)
            start += size
        return tuple(grads)


class Stack(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        return ctx.xp.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.dim
        return tuple(g[lead + (i, Ellipsis)] if need else None for i, need in enumerate(ctx.needs_input_grad))


# --- functional forms -------------------------------------------------------------

def narrow(input, dim, start, length):
    shape = input._data.shape
    d = normalize_dim(dim, len(shape))
    start = int(start)
    if start < 0:
        start += shape[d]
    if start < 0 or start > shape[d]:
        raise IndexError(f"start out of range (expected to be in range of [{-shape[d]}, {shape[d]}], "
                         f"but got {start})")
    if start + length > shape[d]:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({shape[d]}).")
    return Slice.apply(input, d, start, start + length)


def split(tensor, split_size_or_sections, dim=0):
    shape = tensor._data.shape
    d = normalize_dim(dim, len(shape))
    size = shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and size:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size "
                               f"of {size}")
        sizes = [step] * (size // step) + ([size % step] if size % step else []) if size else [0]
        return Split.apply(tensor, d, tuple(sizes))
    sizes = tuple(int(s) for s in split_size_or_sections)
    total = 0
    for s in sizes:
        total += s
    if total != size:
        raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                           f"size at dimension {d}), but got split_sizes={list(sizes)}")
    return SplitWithSizes.apply(tensor, d, sizes)


def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    size = input._data.shape[normalize_dim(dim, input._data.ndim)]
    return split(input, max(-(-size // chunks), 1), dim)


def unbind(input, dim=0):
    return Unbind.apply(input, normalize_dim(dim, input._data.ndim))


def _common_dtype(tensors):
    """Cast every tensor to PyTorch's result type of the list (highest kind, then numpy promotion)."""
    kinds = [_KIND_RANK[x._data.dtype.kind] for x in tensors]
    top = max(kinds)
    target = None
    for x, k in zip(tensors, kinds):
        if k == top:
            target = x._data.dtype if target is None else np.promote_types(target, x._data.dtype)
    if all(x._data.dtype == target for x in tensors):
        return tensors
    from .conversion import to_dtype
    return [x if x._data.dtype == target else to_dtype(x, target) for x in tensors]


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    first = tensors[0]._data
    ndim, dtype = first.ndim, first.dtype
    mixed = False  # the common case (one dtype and rank, no legacy empty) skips the general path
    for x in tensors:
        a = x._data
        if a.ndim != ndim or a.dtype != dtype or (ndim == 1 and not a.size):
            mixed = True
            tensors = _drop_legacy_empty(tensors)
            first = tensors[0]._data
            ndim = first.ndim
            break
    if not ndim:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = dim if 0 <= dim < ndim else normalize_dim(dim, ndim)
    shape0 = first.shape
    for i in range(1, len(tensors)):
        shape = tensors[i]._data.shape
        if len(shape) != ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ndim} and {len(shape)}")
        for axis in range(ndim):
            if axis != d and shape0[axis] != shape[axis]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{shape0[axis]} but got size {shape[axis]} for tensor number {i} in the list.")
    return Cat.apply(*(_common_dtype(tensors) if mixed else tensors), dim=d)


def _drop_legacy_empty(tensors):
    """PyTorch still skips legacy empty 1-d tensors next to higher-rank ones."""
    kept = [x for x in tensors if x._data.ndim != 1 or x._data.size]
    if not kept:
        return tensors
    return kept if any(x._data.ndim > 1 for x in kept) or len(kept) == len(tensors) else tensors


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    first = tensors[0]._data.shape
    for i, x in enumerate(tensors[1:], 1):
        if x._data.shape != first:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 "
                               f"and {list(x._data.shape)} at entry {i}")
    return Stack.apply(*_common_dtype(tensors), dim=normalize_dim(dim, len(first) + 1))
