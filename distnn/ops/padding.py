"""Padding: ``pad`` (PyTorch's ``F.pad``) and its two ops, constant padding (a negative
amount crops) and reflect / replicate / circular padding (a gather per padded axis)."""

import numpy as np

from ..autograd.function import Op

__all__ = ["pad"]

TENSOR_METHODS = ()


class ConstantPadNd(Op):
    """Constant padding; a negative amount crops instead, as in PyTorch."""

    @staticmethod
    def forward(ctx, x, pads, value):
        crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for n, (b, a) in zip(x.shape, pads))
        grow = tuple((max(b, 0), max(a, 0)) for b, a in pads)
        ctx.crop, ctx.grow, ctx.shape = crop, grow, x.shape
        return ctx.xp.pad(x[crop], grow, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        inner = g[tuple(slice(b, n - a) for n, (b, a) in zip(g.shape, ctx.grow))]
        if all(s.start == 0 and s.stop == n for s, n in zip(ctx.crop, ctx.shape)):
            return ctx.xp.ascontiguousarray(inner), None, None
        grad = ctx.xp.zeros(ctx.shape, g.dtype)
        grad[ctx.crop] = inner
        return grad, None, None


def _source_index(mode, n, before, after):
    """For each padded position along an axis of size ``n``: the input index it copies (host ints)."""
    j = np.arange(-before, n + after)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= n, 2 * (n - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    return j % n  # circular


class _IndexPad(Op):
    """Reflect / replicate / circular padding: a gather per padded axis. Backward adds
    each of the few padded slices onto its source slice (no scatter-add needed)."""

    @staticmethod
    def forward(ctx, x, pads, mode):
        xp = ctx.xp
        ctx.steps = []
        out = x
        for axis, (b, a) in enumerate(pads):
            if b or a:
                idx = _source_index(mode, x.shape[axis], b, a)
                ctx.steps.append((axis, idx, b, x.shape[axis]))
                out = xp.take(out, xp.asarray(idx), axis=axis)
        return out

    @staticmethod
    def backward(ctx, g):
        for axis, idx, before, size in reversed(ctx.steps):
            moved = ctx.xp.moveaxis(g, axis, 0)
            grad = moved[before:before + size].copy()
            for k in (*range(before), *range(before + size, len(idx))):
                grad[idx[k]] += moved[k]
            g = ctx.xp.moveaxis(grad, 0, axis)
        return ctx.xp.ascontiguousarray(g), None, None


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
        if b < 0 or a < 0:
            raise NotImplementedError(f"negative padding is only supported in constant mode, Actual: {pad}")
        limit = size - 1 if mode == "reflect" else size
        if (b or a) and max(b, a) > limit:
            raise RuntimeError(f"Padding size should be at most {limit} for mode '{mode}' at dimension {axis} "
                               f"of input {list(input.shape)}, Actual: padding ({b}, {a})")
    return _INDEX_PADS[mode].apply(input, tuple(per_axis), mode)
