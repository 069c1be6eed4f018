"""softmax, log_softmax and softmin along a dim, with PyTorch's functional
signatures (they back ``nn.functional``); each saves its output for backward.
Big arrays go by blocks of rows over the intra-op threads; CuPy arrays along the
last dim take one kernel each way (``fused_cuda``).
"""

import warnings

import numpy as np

from .. import dtypes
from ..autograd.function import Op
from ..autograd.graph_xp import recording
from .._dims import normalize_dim
from ..threads import map_chunks, row_blocks
from . import fused_cuda
from .elementwise import neg

__all__ = ["softmax", "log_softmax", "softmin"]

TENSOR_METHODS = ("softmax", "log_softmax")

# Past a few MiB, softmax along the last dim goes a block of rows at a time (same values):
# each block's passes then stay in cache, and the blocks share the threads.
_ROWWISE_BYTES = 4 << 20


def _rowwise(dim, *arrays):
    first = arrays[0]
    return (type(first) is np.ndarray and first.nbytes >= _ROWWISE_BYTES and dim == first.ndim - 1
            and all(type(a) is np.ndarray and a.flags.c_contiguous and a.shape == first.shape for a in arrays))


def _by_rows(xp, fn, out, *arrays):
    """``fn(xp, out rows, *rows, 1)`` block by block over rows of the last dim; returns ``out``."""
    rows = [a.reshape(-1, a.shape[-1]) for a in (out, *arrays)]
    map_chunks(xp, lambda s: fn(xp, *(r[s] for r in rows), 1), row_blocks(out))
    return out


def _along(xp, fn, dim, *arrays):
    """``fn(xp, out, *arrays, dim)`` into a fresh ``out``: by row blocks when that pays;
    on a GPU along the last dim, one kernel (fused_cuda)."""
    fused = _FUSED.get(fn)
    if fused is not None and dim in (-1, arrays[0].ndim - 1) and fused_cuda.takes(xp, *arrays):
        return fused(xp, *arrays)
    out = xp.empty_like(arrays[0])
    if _rowwise(dim, *arrays):
        return _by_rows(xp, fn, out, *arrays)
    fn(xp, out, *arrays, dim)
    return out


# The formulas on arrays, written into ``out``; graph mode (double backward) runs the
# out-of-place forms in the backward methods.
def _softmax_into(xp, out, x, dim):
    xp.subtract(x, x.max(axis=dim, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=dim, keepdims=True)


def _softmax_grad_into(xp, out, g, y, dim):
    xp.multiply(g, y, out=out)
    out -= y * out.sum(axis=dim, keepdims=True)


def _log_softmax_into(xp, out, x, dim):
    xp.subtract(x, x.max(axis=dim, keepdims=True), out=out)
    out -= xp.log(xp.exp(out).sum(axis=dim, keepdims=True))


def _log_softmax_grad_into(xp, out, g, y, dim):
    xp.exp(y, out=out)
    out *= g.sum(axis=dim, keepdims=True)
    xp.subtract(g, out, out=out)


_FUSED = {_softmax_into: fused_cuda.softmax, _softmax_grad_into: fused_cuda.softmax_backward,
          _log_softmax_into: fused_cuda.log_softmax, _log_softmax_grad_into: fused_cuda.log_softmax_backward}


def _forward_saving_output(ctx, into, x, dim):
    """``into``'s result along ``dim``, saved: both softmaxes' gradients read only it."""
    ctx.dim = dim
    out = _along(ctx.xp, into, dim, x)
    ctx.save_for_backward(out)
    return out


def _backward_from_output(ctx, g, grad_into, recorded_grad):
    """The input gradient by ``grad_into`` on arrays; by ``recorded_grad(xp, g, out, dim)``,
    out-of-place, when the backward is recorded (double backward)."""
    (out,) = ctx.saved_tensors
    if not (recording(g) or recording(out)):
        return _along(ctx.xp, grad_into, ctx.dim, g, out), None
    return recorded_grad(ctx.xp, g, out, ctx.dim), None


def _softmax_grad(xp, g, y, dim):
    gy = g * y
    return gy - y * gy.sum(axis=dim, keepdims=True)


def _log_softmax_grad(xp, g, y, dim):
    return g - xp.exp(y) * g.sum(axis=dim, keepdims=True)


class Softmax(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, x, dim):
        return _forward_saving_output(ctx, _softmax_into, x, dim)

    @staticmethod
    def backward(ctx, g):
        return _backward_from_output(ctx, g, _softmax_grad_into, _softmax_grad)


class LogSoftmax(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, x, dim):
        return _forward_saving_output(ctx, _log_softmax_into, x, dim)

    @staticmethod
    def backward(ctx, g):
        return _backward_from_output(ctx, g, _log_softmax_grad_into, _log_softmax_grad)


def _softmax_dim(name, ndim, stacklevel):
    """PyTorch's legacy rule for a missing ``dim``, with its deprecation warning."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
                  "dim=X as an argument.", UserWarning, stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def _along_dim(op, name, input, dim, stacklevel, dtype):
    if dim is None:
        dim = _softmax_dim(name, input.ndim, stacklevel + 1)
    if dtype is not None:
        input = input.to(dtypes.to_np(dtype))
    elif input._data.dtype.kind != "f":
        raise RuntimeError(f"\"{name}\" not implemented for '{input.dtype}'; Expect: a floating-point input")
    dim = normalize_dim(dim, input.ndim)
    return op.apply(input, dim if input.ndim else None)  # numpy reduces a 0-dim array only over None


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim`` (the max is subtracted first, for stability)."""
    return _along_dim(Softmax, "softmax", input, dim, _stacklevel, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _along_dim(LogSoftmax, "log_softmax", input, dim, _stacklevel, dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    return _along_dim(Softmax, "softmin", neg(input), dim, _stacklevel, dtype)
