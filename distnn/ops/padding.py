"""Padding: ``pad`` (PyTorch's ``F.pad``) and its two ops, constant padding (a negative
amount crops) and reflect / replicate / circular padding (a gather per padded axis)."""

import numpy as np

from ..autograd.function import Op
from .linear_map import linear_map

__all__ = ["pad"]

TENSOR_METHODS = ()


class ConstantPadNd(Op):
    """Constant padding; a negative amount crops instead, as in PyTorch."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, pads, value):
        crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for n, (b, a) in zip(x.shape, pads))
        grow = tuple((max(b, 0), max(a, 0)) for b, a in pads)
        ctx.crop, ctx.grow, ctx.shape = crop, grow, x.shape
        return _pad_constant(ctx.xp, x, crop, grow, x.shape, value)

    @staticmethod
    def backward(ctx, g):
        return linear_map(ctx.xp, g, _unpad, _pad_constant, (ctx.crop, ctx.grow, ctx.shape)), None, None


def _pad_constant(xp, x, crop, grow, shape, value=0):
    return xp.pad(x[crop], grow, mode="constant", constant_values=value)


def _unpad(xp, g, crop, grow, shape):
    """Constant padding's backward (and, with zeros as the value, the padding's adjoint)."""
    inner = g[tuple(slice(b, n - a) for n, (b, a) in zip(g.shape, grow))]
    if all(s.start == 0 and s.stop == n for s, n in zip(crop, shape)):
        return xp.ascontiguousarray(inner)
    grad = xp.zeros(shape, g.dtype)
    grad[crop] = inner
    return grad


def _source_index(mode, n, before, after):
    """For each padded position along an axis of size ``n``: the input index it copies (host
    ints). A negative amount crops; reflect and replicate still mirror or repeat the original
    edge, circular wraps around what is left (PyTorch's rules)."""
    if mode == "circular":
        lo, kept = max(-before, 0), n - max(-before, 0) - max(-after, 0)
        return np.arange(-max(before, 0), kept + max(after, 0)) % kept + lo
    j = np.arange(-before, n + after)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= n, 2 * (n - 1) - j, j)
    return np.clip(j, 0, n - 1)  # replicate


class _IndexPad(Op):
    """Reflect / replicate / circular padding: a gather per padded axis. Backward adds
    each of the few padded slices onto its source slice (no scatter-add needed)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, pads, mode):
        ctx.steps = tuple((axis, _source_index(mode, x.shape[axis], b, a), b, x.shape[axis])
                          for axis, (b, a) in enumerate(pads) if b or a)
        return _gather_padding(ctx.xp, x, ctx.steps)

    @staticmethod
    def backward(ctx, g):
        return linear_map(ctx.xp, g, _fold_padding, _gather_padding, (ctx.steps,)), None, None


def _gather_padding(xp, x, steps):
    for axis, idx, _, _ in steps:
        x = xp.take(x, xp.asarray(idx), axis=axis)
    return x


def _fold_padding(xp, g, steps):
    """The adjoint of ``_gather_padding``: the slices kept in place copied back, the padded
    ones added onto their sources (a few slices: no scatter-add needed)."""
    for axis, idx, before, size in reversed(steps):
        moved = xp.moveaxis(g, axis, 0)
        after = len(idx) - before - size
        start, first = max(before, 0), max(-before, 0)  # where the kept input sits in g, and in the input
        kept = size - first - max(-after, 0)
        grad = xp.zeros((size,) + moved.shape[1:], moved.dtype)
        grad[first:first + kept] = moved[start:start + kept]
        for k in (*range(start), *range(start + kept, len(idx))):
            grad[idx[k]] += moved[k]
        g = xp.moveaxis(grad, 0, axis)
    return xp.ascontiguousarray(g)


ReflectionPad = type("ReflectionPad", (_IndexPad,), {})
ReplicationPad = type("ReplicationPad", (_IndexPad,), {})
CircularPad = type("CircularPad", (_IndexPad,), {})
_INDEX_PADS = {"reflect": ReflectionPad, "replicate": ReplicationPad, "circular": CircularPad}


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (left_last, right_last, left_prev, ...)``."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise RuntimeError(f"Padding length must be divisible by 2, Expect: an even length, Actual: {len(pad)}")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError("Padding length should be less than or equal to two times the input dimension "
                           f"but got padding length {len(pad)} and input of dimension {input.ndim}")
    per_axis = [(0, 0)] * (input.ndim - len(pad) // 2) + [(pad[2 * i], pad[2 * i + 1])
                                                          for i in reversed(range(len(pad) // 2))]
    if mode == "constant":
        return ConstantPadNd.apply(input, tuple(per_axis), 0 if value is None else value)
    if mode not in _INDEX_PADS:
        raise NotImplementedError(f"Expect: mode in ('constant', 'reflect', 'replicate', 'circular'), "
                                  f"Actual: {mode!r}")
    if value:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument.')
    for axis, (b, a) in enumerate(per_axis):
        size = input.shape[axis]
        if size - max(-b, 0) - max(-a, 0) <= 0 and (b < 0 or a < 0):
            raise RuntimeError(f"negative padding ({b}, {a}) crops all of dimension {axis} of input "
                               f"{list(input.shape)}: nothing is left to pad from")
        # replicate repeats the edge any number of times; reflect and circular read the input
        limit = size - 1 if mode == "reflect" else size if mode == "circular" or size == 0 else None
        if (b or a) and limit is not None and max(b, a) > limit:
            raise RuntimeError(f"Padding size should be at most {limit} for mode '{mode}' at dimension {axis} "
                               f"of input {list(input.shape)}, Actual: padding ({b}, {a})")
    return _INDEX_PADS[mode].apply(input, tuple(per_axis), mode)
