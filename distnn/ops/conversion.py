"""Copies and conversions: dtype casts, device moves, clone/contiguous, and the
out-of-place forms behind ``fill_`` and ``copy_``. Gradients flow back through
all of them (a cast's gradient is cast back centrally by the engine)."""

from .. import backend
from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording

__all__ = ["to_dtype", "to_device", "clone", "contiguous", "copy_from", "full_like_of"]

TENSOR_METHODS = ("clone", "contiguous")


class Cast(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dtype):
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g, None


class ToDevice(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, device):
        ctx.source = backend.device_of(a)
        return backend.move_to(a, device)

    @staticmethod
    def backward(ctx, g):
        return _moved(g, ctx.source), None


class Clone(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, g):
        return g


class CopyFrom(Op):
    """The value of ``dst.copy_(src)``: ``src`` broadcast to ``dst``'s shape and dtype."""

    double_backward = True

    @staticmethod
    def forward(ctx, dst, src):
        out = ctx.xp.empty_like(dst)
        out[...] = backend.move_to(src, backend.device_of(dst))
        ctx.src_device = backend.device_of(src)
        return out

    @staticmethod
    def backward(ctx, g):
        return None, _moved(g, ctx.src_device)


class FullLike(Op):
    """The value of ``dst.fill_(v)``; differentiable in ``v`` when it is a 0-dim tensor."""

    double_backward = True

    @staticmethod
    def forward(ctx, dst, value):
        return ctx.xp.full(dst.shape, value, dtype=dst.dtype)

    @staticmethod
    def backward(ctx, g):
        need_dst, need_value = ctx.needs_input_grad
        return (ctx.xp.zeros_like(g) if need_dst else None), (g.sum() if need_value else None)


def _moved(g, device):
    """A gradient moved to ``device``; recorded (a ToDevice op) under double backward."""
    if recording(g):
        return GraphArray(to_device(g.t, device))
    return backend.move_to(g, device)


def to_dtype(input, dtype):
    """Cast to a numpy dtype (differentiable for float targets)."""
    return Cast.apply(input, dtype)


def to_device(input, device):
    return ToDevice.apply(input, backend.as_device(device))


def clone(input, memory_format=None):
    return Clone.apply(input)


def contiguous(input, memory_format=None):
    return input if input._data.flags.c_contiguous else Clone.apply(input)


def copy_from(dst, src):
    return CopyFrom.apply(dst, src)


def full_like_of(dst, value):
    return FullLike.apply(dst, value)
