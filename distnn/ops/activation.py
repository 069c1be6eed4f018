"""Activation functions with PyTorch's functional signatures (they back
``nn.functional``): relu family, elu family, gelu, sigmoid/tanh family,
softplus and shrinkage (softmax, log_softmax and softmin: ``softmaxes.py``).

Each is one ``Op`` that saves only what its gradient needs (relu, hardtanh,
sigmoid and tanh save their output). ``inplace=True`` makes
relu and hardtanh overwrite the input's own array (their backward reads only
the output); the others write their result back through ``Tensor.copy_``.
Either way the version counter and the graph stay right.
"""

import math

import numpy as np

from ..autograd import grad_mode
from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording
from .._dims import normalize_dim
from ..threads import by_flat_blocks
from . import fused_cuda
from .elementwise import abs as _abs, add, div, mul, sub
from .index import getitem
from .normal_cdf import normal_cdf
from .selection import masked, masked_by, select

__all__ = ["relu", "relu6", "hardtanh", "threshold", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu",
           "silu", "mish", "sigmoid", "tanh", "hardsigmoid", "hardswish", "softplus", "logsigmoid",
           "softsign", "tanhshrink", "hardshrink", "softshrink", "glu"]

TENSOR_METHODS = ("relu", "sigmoid", "tanh")

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)) without overflow: exp(min(x, 0)) / (1 + exp(-|x|)), so exp
    never sees a positive argument. No ``where``: numpy 2.4's runs 1-4 ns an element,
    7-28x a multiply's, and the second exp cost less (3x faster on 1M elements, 15%
    on an LSTM's 20x800 gates; the same bits)."""
    return xp.exp(_negative_part(xp, x)) / (1 + xp.exp(-xp.abs(x)))


def _apply(op, input, inplace, **params):
    """Out of place, or written back into ``input``. An op whose backward needs only its
    output (``writes_in_place``) overwrites the array itself, as PyTorch's ``relu_`` does;
    any other works on a clone (so what it saved stays valid) and is copied back."""
    if not inplace:
        return op.apply(input, **params)
    if getattr(op, "writes_in_place", False) and _writable_in_place(input):
        input._vc[0] += 1  # first: the node saves the values written below at their new version
        result = op.apply(input, in_place=True, **params)
        if result.requires_grad:
            input.grad_fn, input._output_nr, input.requires_grad = result.grad_fn, result._output_nr, True
        return input
    source = input.clone() if grad_mode._state.enabled and input.requires_grad else input
    return input.copy_(op.apply(source, **params))


def _writable_in_place(t):
    """A floating tensor that is not a view, nor a leaf whose in-place write
    ``copy_`` must refuse while grad is recorded."""
    if t._base is not None or t._data.dtype.kind != "f":
        return False
    return not (t.requires_grad and t.grad_fn is None and grad_mode._state.enabled)


# Big arrays go through an activation's formula of many passes (exact GELU, ELU,
# softplus, mish) a flat block at a time: the passes then run over blocks that stay
# in a core's cache, and the blocks spread over threads (map_chunks). fwd+bwd on
# 1M float32, 1 thread -> 1 thread, 2 threads: GELU 12.7 -> 9.7, 8.0 ms; ELU 4.7 ->
# 3.8, 2.9; softplus 6.4 -> 5.8, 4.5; mish 7.8 -> 7.9, 5.8. Formulas of a few
# passes (sigmoid, tanh, SiLU) lost 10-35% at 1 thread to copying each block's result.
_BLOCK_ELEMENTS = 1 << 17
_BLOCKED_MIN_ELEMENTS = 1 << 19


def _elementwise(xp, fn, *arrays):
    """``fn(*arrays)`` for an elementwise ``fn``, by ``threads.by_flat_blocks`` from
    ``_BLOCKED_MIN_ELEMENTS``: the same bits at any thread count."""
    return by_flat_blocks(xp, fn, arrays, _BLOCK_ELEMENTS, _BLOCKED_MIN_ELEMENTS)


def _quiet(fn):
    """``fn`` under numpy's errstate(invalid="ignore"), set in whichever thread runs it:
    an infinite input makes inf * 0, NaN as PyTorch's, which does not warn."""
    def quiet(*args, **kwargs):
        with np.errstate(invalid="ignore"):
            return fn(*args, **kwargs)
    return quiet


def _pointwise(name, forward, grad, saves="input", blocked=False):
    """A one-input activation Op: ``forward(xp, x, **params)`` is its value and
    ``g * grad(xp, saved, **params)`` its gradient (``g`` where a bool ``grad`` holds, by
    ``masked``), ``saved`` being the input or the output; ``blocked``: both by
    ``_elementwise``'s blocks, for formulas of many passes."""
    by = _elementwise if blocked else (lambda xp, fn, *arrays: fn(*arrays))

    def fwd(ctx, x, **params):
        out = by(ctx.xp, lambda xb: forward(ctx.xp, xb, **params), x)
        ctx.params = params
        ctx.save_for_backward(out if saves == "output" else x)
        return out

    def bwd(ctx, g):
        (saved,) = ctx.saved_tensors
        return by(ctx.xp, lambda gb, sb: masked(gb, grad(ctx.xp, sb, **ctx.params)), g, saved)

    return type(name, (Op,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "double_backward": True})


def _leaky(xp, x, slope):
    """where(x > 0, x, x * slope): for 0 < slope <= 1 the larger of the two, for a
    slope above 1 the smaller, exactly (signed zeros, infinities and NaN included),
    without numpy's slow ``where`` (a slope of 0 or below selects: 0 * inf is NaN)."""
    if 0 < slope <= 1:
        return xp.maximum(x, x * slope)
    if slope > 1:
        return xp.minimum(x, x * slope)
    with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as PyTorch's, which does not warn
        scaled = x * slope
    return select(xp, x > 0, x, scaled)


def _leaky_factor(xp, x, slope):
    """where(x > 0, 1, slope), leaky_relu's derivative. For 0 <= slope <= 1 as
    mask * (1 - slope) + slope in x's dtype, exactly: 1 - slope rounds by at most half
    an ulp below 1, so adding slope back rounds to 1 (five plain passes with the
    gradient's multiply, not select's seven)."""
    if not 0 <= slope <= 1 or x.dtype.kind != "f":
        return select(xp, x > 0, x.dtype.type(1), x.dtype.type(slope))
    s = x.dtype.type(slope)
    factor = (x > 0).astype(x.dtype)
    factor *= x.dtype.type(1) - s
    factor += s
    return factor


def _softshrink(xp, x, lambd):
    """x - sign(x) * lambd outside [-lambd, lambd], x * 0 inside (PyTorch's NaN and,
    in float32, signed zeros); an infinite x, outside, makes no warning."""
    with np.errstate(invalid="ignore"):
        zero = x * 0
    return select(xp, xp.abs(x) > lambd, x - xp.sign(x) * x.dtype.type(lambd), zero)


def _positive_part(xp, x):
    """max(x, 0) of a float array by clip: numpy 2.4 runs maximum by a scalar in a
    loop 2.5-3x slower than clip's SIMD one."""
    return xp.clip(x, 0, math.inf)


def _negative_part(xp, x):
    """min(x, 0) of a float array, by clip as ``_positive_part``."""
    return xp.clip(x, -math.inf, 0)


def _log_sigmoid(xp, x):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), without overflow."""
    return _negative_part(xp, x) - xp.log1p(xp.exp(-xp.abs(x)))


def _softplus(xp, x, beta, threshold):
    bx = x * beta
    return select(xp, bx > threshold, x, (_positive_part(xp, bx) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta)


def _mish_gate(xp, x):
    return xp.tanh(_positive_part(xp, x) + xp.log1p(xp.exp(-xp.abs(x))))


def _silu_grad(xp, x):
    s = _sigmoid(xp, x)
    return s * (1 + x * (1 - s))


def _mish_grad(xp, x):
    t = _mish_gate(xp, x)
    return t + x * _sigmoid(xp, x) * (1 - t * t)


def _nonzero(a):
    return a != 0


class Relu(Op):
    """max(x, 0); written out rather than built by _pointwise: it is in nearly every model."""

    double_backward = True
    writes_in_place = True  # forward(x, in_place=True) overwrites x: backward reads only the output

    @staticmethod
    def forward(ctx, x, in_place=False):
        out = x if in_place else None
        if x.dtype.kind == "f":  # _positive_part's clip; and like PyTorch's, relu(-0.0) is -0.0
            out = ctx.xp.clip(x, 0, math.inf, out=out)
        else:
            out = ctx.xp.maximum(x, 0, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        if not (recording(g) or recording(out)) and fused_cuda.takes(ctx.xp, g, out):
            return (fused_cuda.relu_backward(ctx.xp, g, out),)
        return (masked_by(ctx.xp, g, _nonzero, out),)  # out >= 0 or NaN: PyTorch's out > 0 or NaN


class Hardtanh(Op):
    """clip(x, lo, hi) (ReLU6 in MobileNets). The gradient mask is read off the output,
    as PyTorch's in-place form does: inside (lo, hi) exactly where the input was."""

    double_backward = True
    writes_in_place = True

    @staticmethod
    def forward(ctx, x, lo, hi, in_place=False):
        if x.dtype.kind in "iu":  # the bounds in the input's integer type, as PyTorch's result
            lo, hi = x.dtype.type(lo), x.dtype.type(hi)
        out = ctx.xp.clip(x, lo, hi, out=x if in_place else None)
        ctx.bounds = lo, hi
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        return (masked_by(ctx.xp, g, lambda o: (o != lo) & (o != hi), out),)  # out in [lo, hi] or NaN: PyTorch's


Sigmoid = _pointwise("Sigmoid", _sigmoid, lambda xp, out: out * (1 - out), saves="output")
Tanh = _pointwise("Tanh", lambda xp, x: xp.tanh(x), lambda xp, out: 1 - out * out, saves="output")
Threshold = _pointwise("Threshold", lambda xp, x, threshold, value: select(xp, x <= threshold, x.dtype.type(value), x),
                       lambda xp, x, threshold, value: ~(x <= threshold))
LeakyRelu = _pointwise("LeakyRelu", lambda xp, x, slope: _leaky(xp, x, slope),
                       lambda xp, x, slope: _leaky_factor(xp, x, slope))
Silu = _pointwise("Silu", _quiet(lambda xp, x: x * _sigmoid(xp, x)), _quiet(_silu_grad))
Mish = _pointwise("Mish", _quiet(lambda xp, x: x * _mish_gate(xp, x)), _quiet(_mish_grad), blocked=True)
Hardsigmoid = _pointwise("Hardsigmoid", lambda xp, x: xp.clip(x / 6 + 0.5, 0, 1),
                         lambda xp, x: ((x > -3) & (x < 3)) / x.dtype.type(6))
Hardswish = _pointwise("Hardswish", lambda xp, x: x * xp.clip(x + 3, 0, 6) / 6,
                       lambda xp, x: select(xp, x < -3, x.dtype.type(0),
                                            select(xp, x <= 3, x / 3 + 0.5, x.dtype.type(1))))
Softplus = _pointwise("Softplus", _softplus, lambda xp, x, beta, threshold: select(
    xp, x * beta > threshold, x.dtype.type(1), _sigmoid(xp, x * beta)), blocked=True)
LogSigmoid = _pointwise("LogSigmoid", _log_sigmoid,
                        lambda xp, x: _sigmoid(xp, -x))
Hardshrink = _pointwise("Hardshrink", lambda xp, x, lambd: masked(x, ~(xp.abs(x) <= lambd)),
                        lambda xp, x, lambd: ~(xp.abs(x) <= lambd))
Softshrink = _pointwise("Softshrink",
                        _softshrink,
                        lambda xp, x, lambd: ~(xp.abs(x) <= lambd))


class Elu(Op):
    """scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1)); also selu."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, alpha, scale=1.0, input_scale=1.0):
        xp = ctx.xp
        out = _elementwise(xp, lambda xb: select(
            xp, xb > 0, xb * scale, xp.expm1(_negative_part(xp, xb) * input_scale) * (alpha * scale)), x)
        ctx.coef, ctx.scale, ctx.input_scale = alpha * scale, scale, input_scale
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        xp, scale, coef, input_scale = ctx.xp, ctx.scale, ctx.coef, ctx.input_scale
        return _elementwise(xp, lambda gb, xb, ob: select(xp, xb > 0, gb * scale, gb * ((ob + coef) * input_scale)),
                            g, x, out)


class Celu(Elu):
    pass


class Gelu(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, x, approximate):
        xp = ctx.xp
        ctx.approximate = approximate
        if approximate == "tanh":
            t = xp.tanh((x + 0.044715 * x * x * x) * _SQRT_2_OVER_PI)
            ctx.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        cdf = _elementwise(xp, lambda xb: normal_cdf(xp, xb), x)
        ctx.save_for_backward(x, cdf)
        with np.errstate(invalid="ignore"):  # -inf * 0: NaN, as PyTorch's, which does not warn
            return x * cdf

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        if recording(x):  # s, saved from forward, is a function of x: double backward must see it as one
            s = (ctx.xp.tanh((x + 0.044715 * x * x * x) * _SQRT_2_OVER_PI) if ctx.approximate == "tanh"
                 else GraphArray(NormalCdf.apply(x.t)))
        if ctx.approximate == "tanh":
            inner_grad = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + s) + 0.5 * x * (1 - s * s) * inner_grad)
        return _elementwise(ctx.xp, _quiet(lambda gb, xb, sb: gb * (sb + xb * ctx.xp.exp(-0.5 * xb * xb)
                                                                      * _INV_SQRT_2PI)), g, x, s)


class NormalCdf(Op):
    """Phi(x), the standard normal CDF: the exact gelu's gate, as an op of its own for
    gelu's double backward (its derivative is the normal density)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return normal_cdf(ctx.xp, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.xp.exp(-0.5 * x * x) * _INV_SQRT_2PI


class PreluKernel(Op):
    """max(0, x) + w * min(0, x), one weight per channel (dim 1) or one for all."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w):
        ctx.w_shape = w.shape
        ctx.save_for_backward(x, w)
        return select(ctx.xp, x > 0, x, x * _prelu_weight(w, x.ndim))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        wb = _prelu_weight(w, x.ndim)
        need_x, need_w = ctx.needs_input_grad
        xp = ctx.xp
        gx = select(xp, x > 0, g, g * wb) if need_x else None
        gw = None
        if need_w:
            axes = tuple(d for d in range(x.ndim) if d != 1 or not wb.ndim)
            gw = select(xp, x > 0, g.dtype.type(0), g * x).sum(axis=axes).reshape(ctx.w_shape)
        return gx, gw


def _prelu_weight(w, ndim):
    """PReLU's weight broadcast over an input of ``ndim`` dims (channels on dim 1)."""
    return w.reshape((1, -1) + (1,) * (ndim - 2)) if w.size > 1 else w.reshape(())


# --- functional forms ---------------------------------------------------------------------------

def relu(input, inplace=False):
    if not inplace:
        return Relu.apply(input)
    return _apply(Relu, input, inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError(f"hardtanh: Expect: min_val <= max_val, Actual: {min_val} > {max_val}")
    return _apply(Hardtanh, input, inplace, lo=min_val, hi=max_val)


def relu6(input, inplace=False):
    return hardtanh(input, 0.0, 6.0, inplace)


def threshold(input, threshold, value, inplace=False):
    """``x`` where ``x > threshold``, else ``value``."""
    return _apply(Threshold, input, inplace, threshold=threshold, value=value)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _apply(LeakyRelu, input, inplace, slope=negative_slope)


def prelu(input, weight):
    channels = input.shape[1] if input.ndim > 1 else 1
    if weight.numel() not in (1, channels):
        raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Expect: {channels} or 1 "
                           f"weights, Actual: {weight.numel()}")
    return PreluKernel.apply(input, weight)


def elu(input, alpha=1.0, inplace=False):
    return _apply(Elu, input, inplace, alpha=alpha)


def selu(input, inplace=False):
    return _apply(Elu, input, inplace, alpha=_SELU_ALPHA, scale=_SELU_SCALE)


def celu(input, alpha=1.0, inplace=False):
    if alpha == 0:
        raise ValueError("celu: Expect: alpha != 0, Actual: 0")
    return _apply(Celu, input, inplace, alpha=alpha, input_scale=1.0 / alpha)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate argument must be either none or tanh, Actual: {approximate!r}")
    return Gelu.apply(input, approximate=approximate)


def silu(input, inplace=False):
    return _apply(Silu, input, inplace)


def mish(input, inplace=False):
    return _apply(Mish, input, inplace)


def sigmoid(input):
    return Sigmoid.apply(input)


def tanh(input):
    return Tanh.apply(input)


def hardsigmoid(input, inplace=False):
    return _apply(Hardsigmoid, input, inplace)


def hardswish(input, inplace=False):
    return _apply(Hardswish, input, inplace)


def softplus(input, beta=1.0, threshold=20.0):
    return Softplus.apply(input, beta=beta, threshold=threshold)


def logsigmoid(input):
    return LogSigmoid.apply(input)


def softsign(input):
    return div(input, add(_abs(input), 1))


def tanhshrink(input):
    return sub(input, tanh(input))


def hardshrink(input, lambd=0.5):
    return Hardshrink.apply(input, lambd=lambd)


def softshrink(input, lambd=0.5):
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    return Softshrink.apply(input, lambd=lambd)


def glu(input, dim=-1):
    """First half of ``input`` along ``dim`` gated by the sigmoid of the second half."""
    d = normalize_dim(dim, input.ndim)
    n = input.shape[d]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {d} is size {n}")
    lead = (slice(None),) * d
    return mul(getitem(input, lead + (slice(0, n // 2),)), sigmoid(getitem(input, lead + (slice(n // 2, n),))))
