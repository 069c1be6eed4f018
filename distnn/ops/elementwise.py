"""Elementwise arithmetic: + - * / pow, exp/log family, abs, sign, clamp,
maximum/minimum, where, and the comparison and logical ops (no gradient).

Broadcasting is numpy's; the engine reduces each gradient back to its input's
shape, so backward here is written for the broadcast shape.
"""

import math

import numpy as np

from ..autograd import grad_mode
from ..autograd.function import Op
from ..tensor import Tensor, _wrap
from .common import SCALARS, as_tensor, no_grad_result, promote_operands, result_float_dtype
from .selection import select

__all__ = ["add", "sub", "rsub", "mul", "div", "rdiv", "true_divide", "neg", "negative", "pow", "rpow",
           "exp", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "abs", "sign", "reciprocal",
           "square", "sin", "cos", "clamp", "clip", "maximum", "minimum", "where", "floor", "ceil",
           "round", "trunc", "floor_divide", "remainder", "fmod", "lerp", "addcmul", "addcdiv",
           "eq", "ne", "lt", "le", "gt", "ge", "equal", "allclose", "isclose", "isnan", "isinf",
           "isfinite", "logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and",
           "bitwise_or", "bitwise_not"]

TENSOR_METHODS = ("add", "sub", "mul", "div", "true_divide", "neg", "negative", "pow", "exp", "log",
                  "log1p", "log2", "log10", "sqrt", "rsqrt", "abs", "sign", "reciprocal", "square",
                  "sin", "cos", "clamp", "clip", "maximum", "minimum", "where", "floor", "ceil",
                  "round", "trunc", "floor_divide", "remainder", "fmod", "lerp", "addcmul", "addcdiv",
                  "eq", "ne", "lt", "le", "gt", "ge", "equal", "allclose", "isclose", "isnan", "isinf",
                  "isfinite", "logical_and", "logical_or", "logical_xor", "logical_not")


class Add(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = g / b if need_a else None
        gb = -g * a / (b * b) if need_b else None
        return ga, gb


class Neg(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        xp = ctx.xp
        need_a, need_b = ctx.needs_input_grad
        ga = gb = None
        if need_a:
            ga = g * b * a ** (b - 1) if not (isinstance(b, SCALARS) and b == 0) else xp.zeros_like(g)
        if need_b:
            # d/db a^b; 0 where a <= 0, as PyTorch
            if isinstance(a, SCALARS):
                gb = g * out * math.log(a) if a > 0 else xp.zeros_like(g)
            else:
                gb = g * out * xp.log(xp.where(a > 0, a, 1))
        return ga, gb


def _unary(name, fwd, bwd, saves="input", float_only=True):
    """Build a one-input Op whose gradient is ``g * bwd(xp, x, out)``."""

    def forward(ctx, a):
        xp = ctx.xp
        out = fwd(xp, a)
        if saves == "input":
            ctx.save_for_backward(a)
        elif saves == "output":
            ctx.save_for_backward(out)
        else:
            ctx.save_for_backward(a, out)
        return out

    def backward(ctx, g):
        xp = ctx.xp
        saved = ctx.saved_tensors
        if saves == "input":
            return g * bwd(xp, saved[0], None)
        if saves == "output":
            return g * bwd(xp, None, saved[0])
        return g * bwd(xp, saved[0], saved[1])

    cls = type(name, (Op,), {"forward": staticmethod(forward), "backward": staticmethod(backward),
                             "double_backward": True, "__doc__": f"Elementwise {name.lower()}."})
    return cls


Exp = _unary("Exp", lambda xp, x: xp.exp(x), lambda xp, x, y: y, saves="output")
Log = _unary("Log", lambda xp, x: xp.log(x), lambda xp, x, y: 1 / x)
Log1P = _unary("Log1P", lambda xp, x: xp.log1p(x), lambda xp, x, y: 1 / (1 + x))
Log2 = _unary("Log2", lambda xp, x: xp.log2(x), lambda xp, x, y: 1 / (x * 0.6931471805599453))
Log10 = _unary("Log10", lambda xp, x: xp.log10(x), lambda xp, x, y: 1 / (x * 2.302585092994046))
Sqrt = _unary("Sqrt", lambda xp, x: xp.sqrt(x), lambda xp, x, y: 0.5 / y, saves="output")
Rsqrt = _unary("Rsqrt", lambda xp, x: 1 / xp.sqrt(x), lambda xp, x, y: -0.5 * y * y * y, saves="output")
Abs = _unary("Abs", lambda xp, x: xp.abs(x), lambda xp, x, y: xp.sign(x))
Reciprocal = _unary("Reciprocal", lambda xp, x: 1 / x, lambda xp, x, y: -y * y, saves="output")
Square = _unary("Square", lambda xp, x: x * x, lambda xp, x, y: 2 * x)
Sin = _unary("Sin", lambda xp, x: xp.sin(x), lambda xp, x, y: xp.cos(x))
Cos = _unary("Cos", lambda xp, x: xp.cos(x), lambda xp, x, y: -xp.sin(x))


class _ZeroGrad(Op):
    """Piecewise-constant functions (sign, floor, ...): defined gradient zero."""

    fn = None
    double_backward = True

    @classmethod
    def forward(cls, ctx, a):
        return getattr(ctx.xp, cls.fn)(a)

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.zeros_like(g)


class Sign(_ZeroGrad):
    fn = "sign"


class Floor(_ZeroGrad):
    fn = "floor"


class Ceil(_ZeroGrad):
    fn = "ceil"


class Round(_ZeroGrad):
    fn = "round"


class Trunc(_ZeroGrad):
    fn = "trunc"


class Clamp(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, lo, hi):
        xp = ctx.xp
        out = a
        if lo is not None:
            out = xp.maximum(out, lo)
        if hi is not None:
            out = xp.minimum(out, hi)
        if out is a:
            out = a.copy()
        mask = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            mask &= a >= lo
        if hi is not None:
            mask &= a <= hi
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None, None


class Maximum(Op):
    """max(a, b); where they tie the gradient is split evenly, as in PyTorch."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        share = (a > b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return g * share, g * (1 - share)


class Minimum(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        share = (a < b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return g * share, g * (1 - share)


class Where(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return select(ctx.xp, cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        _, need_a, need_b = ctx.needs_input_grad
        zero = g.dtype.type(0)
        return (None, select(ctx.xp, cond, g, zero) if need_a else None,
                select(ctx.xp, cond, zero, g) if need_b else None)


# --- functional forms -------------------------------------------------------------

def add(input, other, alpha=1):
    if alpha != 1:
        other = mul(other, alpha) if isinstance(other, type(input)) else other * alpha
    a, b = promote_operands(input, other)
    return Add.apply(a, b)


def sub(input, other, alpha=1):
    if alpha != 1:
        refuse_bool_subtraction(input, other)  # before the scaling turns a bool into a number
        other = mul(other, alpha) if isinstance(other, type(input)) else other * alpha
    a, b = promote_operands(input, other)
    # Promotion leaves the common cases as they are (two tensors of one dtype, a float tensor
    # and a float), where only two bool tensors can meet, and numpy refuses those itself.
    # Elsewhere a bool hides in a Python bool promotion kept, or in an operand it converted,
    # unless into a Python float (made from an int, never from a bool).
    if (a.__class__ is bool or b.__class__ is bool or (a is not input and a.__class__ is not float)
            or (b is not other and b.__class__ is not float)):
        refuse_bool_subtraction(input, other)
    try:
        return Sub.apply(a, b)
    except TypeError:  # numpy's refusal of two bools, worded as PyTorch's
        refuse_bool_subtraction(input, other)
        raise


def rsub(input, other):
    """``other - input``: the reflected form behind ``2 - x``."""
    return sub(other, input)


_BOOL_SUBTRACTION_ERRORS = {
    1: "Subtraction, the `-` operator, with a bool tensor is not supported. "
       "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.",
    2: "Subtraction, the `-` operator, with two bool tensors is not supported. "
       "Use the `^` or `logical_xor()` operator instead.",
}


def refuse_bool_subtraction(input, other):
    """PyTorch's error for ``-`` with a bool operand, behind sub, rsub, ``sub_``, ``-=`` and
    l1_loss. As in PyTorch, a Python bool counts as a bool tensor (``x - True`` is refused)
    and a numpy bool does not."""
    bools = _is_bool(input) + _is_bool(other)
    if bools:
        # from None: callers also refuse from an except clause, after numpy's own refusal
        raise RuntimeError(_BOOL_SUBTRACTION_ERRORS[bools]) from None


def _is_bool(x):
    return x._data.dtype.kind == "b" if isinstance(x, Tensor) else x.__class__ is bool


def mul(input, other):
    if type(other) is float and type(input) is Tensor and not (input.requires_grad and grad_mode._state.enabled):
        # ``1e-4 * p.grad`` in an update loop: unrecorded, so only the array product
        # Mul.apply would come to (the float stays weak, a float tensor keeps its dtype)
        d = input._data
        if type(d) is np.ndarray and d.dtype.kind == "f" and d.ndim:
            return _wrap(d * other)
    a, b = promote_operands(input, other)
    return Mul.apply(a, b)


def div(input, other, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        return trunc(div(input, other))
    a, b = promote_operands(input, other)
    a, b = _to_float(a), _to_float(b)
    return Div.apply(a, b)


true_divide = div


def rdiv(input, other):
    """``other / input``: the reflected form behind ``1 / x``."""
    a, b = promote_operands(other, input)
    return Div.apply(_to_float(a), _to_float(b))


def _to_float(x):
    from .conversion import to_dtype
    if hasattr(x, "_data") and x._data.dtype.kind != "f":
        return to_dtype(x, result_float_dtype(x))
    return float(x) if isinstance(x, (bool, int)) else x


def neg(input):
    return Neg.apply(input)


negative = neg


def pow(input, exponent):  # noqa: A001  (PyTorch's name)
    a, b = promote_operands(input, exponent)
    return Pow.apply(a, b)


def rpow(input, other):
    a, b = promote_operands(other, input)
    return Pow.apply(a, b)


def _float_unary(op):
    def fn(input):
        return op.apply(_to_float(input))
    fn.__name__ = op.__name__.lower()
    fn.__doc__ = op.__doc__
    return fn


exp = _float_unary(Exp)
log = _float_unary(Log)
log1p = _float_unary(Log1P)
log2 = _float_unary(Log2)
log10 = _float_unary(Log10)
sqrt = _float_unary(Sqrt)
rsqrt = _float_unary(Rsqrt)
reciprocal = _float_unary(Reciprocal)
sin = _float_unary(Sin)
cos = _float_unary(Cos)


def abs(input):  # noqa: A001
    return Abs.apply(input)


def square(input):
    return Square.apply(input)


def sign(input):
    return Sign.apply(input)


def floor(input):
    return Floor.apply(input)


def ceil(input):
    return Ceil.apply(input)


def round(input, decimals=0):  # noqa: A001
    if decimals:
        scale = 10.0 ** decimals
        return Round.apply(input * scale) / scale
    return Round.apply(input)


def trunc(input):
    return Trunc.apply(input)


def clamp(input, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    lo = min._data if hasattr(min, "_data") else min
    hi = max._data if hasattr(max, "_data") else max
    return Clamp.apply(input, lo, hi)


clip = clamp


def maximum(input, other):
    a, b = promote_operands(input, as_tensor(other, input))
    return Maximum.apply(a, b)


def minimum(input, other):
    a, b = promote_operands(input, as_tensor(other, input))
    return Minimum.apply(a, b)


def where(condition, input=None, other=None):
    """``where(cond, x, y)``; as a method, ``x.where(cond, y)``."""
    if input is None and other is None:
        from .index import nonzero
        return nonzero(condition, as_tuple=True)
    if hasattr(condition, "_data") and condition._data.dtype.kind != "b" and hasattr(input, "_data") \
            and input._data.dtype.kind == "b":
        condition, input = input, condition  # method form: x.where(cond, y)
    a, b = promote_operands(input, other)
    return Where.apply(as_tensor(condition), a, b)


def floor_divide(input, other):
    a, b = _raw_pair(input, other)
    return no_grad_result(_xp_of(a, b).floor_divide(a, b))


def remainder(input, other):
    a, b = _raw_pair(input, other)
    return no_grad_result(_xp_of(a, b).remainder(a, b))


def fmod(input, other):
    a, b = _raw_pair(input, other)
    return no_grad_result(_xp_of(a, b).fmod(a, b))


def lerp(input, end, weight):
    return add(input, mul(sub(end, input), weight))


def addcmul(input, tensor1, tensor2, value=1):
    return add(input, mul(mul(tensor1, tensor2), value))


def addcdiv(input, tensor1, tensor2, value=1):
    return add(input, mul(div(tensor1, tensor2), value))


# --- comparisons and logic: results carry no gradient ---------------------------------

def _raw_pair(a, b):
    a, b = promote_operands(a, b)
    return (a._data if hasattr(a, "_data") else a), (b._data if hasattr(b, "_data") else b)


def _xp_of(a, b):
    from ..backend import array_module
    return array_module(a if hasattr(a, "shape") else b)


def _compare(name):
    def fn(input, other):
        a, b = _raw_pair(input, other)
        return no_grad_result(getattr(_xp_of(a, b), name)(a, b))
    fn.__name__ = name
    return fn


eq = _compare("equal")
ne = _compare("not_equal")
lt = _compare("less")
le = _compare("less_equal")
gt = _compare("greater")
ge = _compare("greater_equal")
logical_and = _compare("logical_and")
logical_or = _compare("logical_or")
logical_xor = _compare("logical_xor")
bitwise_and = _compare("bitwise_and")
bitwise_or = _compare("bitwise_or")


def logical_not(input):
    return no_grad_result(_xp_of(input._data, None).logical_not(input._data))


def bitwise_not(input):
    return no_grad_result(_xp_of(input._data, None).invert(input._data))


def equal(input, other):
    """True when both tensors have the same shape and elements."""
    return input.shape == other.shape and bool((input._data == other._data).all())


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _raw_pair(input, other)
    return no_grad_result(_xp_of(a, b).isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def isnan(input):
    return no_grad_result(_xp_of(input._data, None).isnan(input._data))


def isinf(input):
    return no_grad_result(_xp_of(input._data, None).isinf(input._data))


def isfinite(input):
    return no_grad_result(_xp_of(input._data, None).isfinite(input._data))
