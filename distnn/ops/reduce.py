"""Reductions: sum, mean, prod, var/std, norm, logsumexp, all/any, count_nonzero;
max/min, amax/amin and argmax/argmin live in ``minmax.py``, the scans cumsum and
cumprod in ``scan.py``.

``dim`` may be None (all axes), an int or a tuple, negative allowed. Backward
re-inserts the reduced axes (when ``keepdim`` dropped them) and broadcasts.
"""

import builtins
import math

import numpy as np  # errstate only

from .. import dtypes
from ..autograd.function import Op
from .._dims import normalize_dims
from .common import as_array, no_grad_result, renamed_op
from .minmax import (Amax, Amin, Max, MaxAll, Min, MinAll, ReturnTypes, amax, amin, argmax, argmin,  # noqa: F401
                     max, min)  # re-exported from their old home
from .reduce_dims import _INT64, _count, _dtype_arg, _expand_grad, _integral_to_int64, _remember, _unsqueeze_reduced
from .scan import cumprod_array

__all__ = ["sum", "mean", "prod", "var", "std", "var_mean", "std_mean", "norm", "logsumexp", "all", "any",
           "count_nonzero"]

TENSOR_METHODS = ("sum", "mean", "prod", "var", "std", "norm", "logsumexp", "all", "any", "count_nonzero")


# --- sums and products ---------------------------------------------------------

class Sum(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims, keepdim, dtype):
        _remember(ctx, a, dims, keepdim)
        return as_array(a.sum(axis=dims, keepdims=keepdim, dtype=dtype))

    @staticmethod
    def backward(ctx, g):
        return _expand_grad(ctx.xp, g, ctx), None, None, None


class Mean(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims, keepdim, dtype):
        _remember(ctx, a, dims, keepdim)
        ctx.count = _count(a.shape, dims)
        out = as_array(a.sum(axis=dims, keepdims=keepdim, dtype=dtype))
        out /= ctx.count  # numpy's mean is sum / count with more Python overhead
        return out

    @staticmethod
    def backward(ctx, g):
        return _expand_grad(ctx.xp, g / ctx.count, ctx), None, None, None


class Prod(Op):
    """Product over all elements (``ProdDim``: along one dim). The gradient is
    the product of all the *other* elements, from exclusive prefix and suffix
    products, so zeros in the input are handled exactly (no division by x).
    Those are cumprods (recorded as ``Cumprod`` under create_graph=True), so the
    second derivative is exact at zeros too."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, dims, keepdim, dtype):
        _remember(ctx, a, dims, keepdim)
        ctx.save_for_backward(a)
        return as_array(a.prod(axis=dims, keepdims=keepdim, dtype=dtype))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        xp = ctx.xp
        if len(ctx.dims) == 1:
            others = _exclusive_products(xp, a, ctx.dims[0])
        else:
            others = _exclusive_products(xp, a.reshape(-1), 0).reshape(a.shape)
        return _expand_grad(xp, g, ctx) * others, None, None, None


ProdDim = renamed_op(Prod, "Prod", 1)


def _exclusive_products(xp, a, axis):
    """For every element, the product of the other elements along ``axis``."""
    if a.shape[axis] == 0:
        return a
    lead = (slice(None),) * axis
    ones = xp.ones(a.shape[:axis] + (1,) + a.shape[axis + 1:], dtype=a.dtype)
    before = cumprod_array(xp, xp.concatenate([ones, a[lead + (slice(None, -1),)]], axis=axis), axis)
    after = xp.concatenate([a[lead + (slice(1, None),)], ones], axis=axis)
    after = xp.flip(cumprod_array(xp, xp.flip(after, axis), axis), axis)
    return before * after


class Logsumexp(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims, keepdim):
        _remember(ctx, a, dims, keepdim)
        xp = ctx.xp
        m = a.max(axis=dims, keepdims=True) if a.size else xp.zeros((1,) * a.ndim, a.dtype)
        m = xp.where(xp.isinf(m), 0, m).astype(a.dtype)  # all -inf (or +inf) rows stay finite in exp
        with np.errstate(divide="ignore"):  # an all -inf row: log(0) = -inf, as PyTorch's, which does not warn
            out = xp.log(xp.exp(a - m).sum(axis=dims, keepdims=True)) + m
        out = out if keepdim else out.squeeze(axis=dims)
        ctx.save_for_backward(a, out)  # the output itself, so double backward differentiates it too
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        xp = ctx.xp
        with np.errstate(invalid="ignore"):  # -inf - (-inf): NaN, as PyTorch's, which does not warn
            return _unsqueeze_reduced(xp, g, ctx) * xp.exp(a - _unsqueeze_reduced(xp, out, ctx)), None, None


# --- variance and norms ----------------------------------------------------------

class Var(Op):
    double_backward = True
    take_sqrt = False

    @classmethod
    def forward(cls, ctx, a, dims, correction, keepdim):
        _remember(ctx, a, dims, keepdim)
        ctx.divisor = _count(a.shape, dims) - correction
        mean = a.mean(axis=dims, keepdims=True)
        diff = a - mean
        out = (diff * diff).sum(axis=dims, keepdims=keepdim) / a.dtype.type(builtins.max(ctx.divisor, 0))
        if cls.take_sqrt:
            out = ctx.xp.sqrt(out)
        out = as_array(out)
        ctx.save_for_backward(a, out)
        return out

    @classmethod
    def backward(cls, ctx, g):
        a, out = ctx.saved_tensors
        xp = ctx.xp
        mean = a.mean(axis=ctx.dims, keepdims=True)  # from a, so double backward differentiates it too
        g = _unsqueeze_reduced(xp, g, ctx)
        if cls.take_sqrt:
            g = g / (2 * _unsqueeze_reduced(xp, out, ctx))
        return g * (2 / a.dtype.type(ctx.divisor)) * (a - mean), None, None, None


class Std(Var):
    take_sqrt = True


class LinalgVectorNorm(Op):
    """``sum(|x|^p)^(1/p)`` over ``dims`` (p = inf / -inf / 0 / any number)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, dims, p, keepdim):
        _remember(ctx, a, dims, keepdim)
        ctx.p = p
        xp = ctx.xp
        absa = xp.abs(a)
        if p == 2:
            out = xp.sqrt((a * a).sum(axis=dims, keepdims=True))
        elif p == 1:
            out = absa.sum(axis=dims, keepdims=True)
        elif p == math.inf:
            out = absa.max(axis=dims, keepdims=True)
        elif p == -math.inf:
            out = absa.min(axis=dims, keepdims=True)
        elif p == 0:
            out = (a != 0).sum(axis=dims, keepdims=True).astype(a.dtype)
        else:
            out = ((absa ** p).sum(axis=dims, keepdims=True)) ** (1.0 / p)
            out = out.astype(a.dtype)
        out = out if keepdim else out.squeeze(axis=dims)
        ctx.save_for_backward(a, out)  # the output itself, so double backward differentiates it too
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        xp, p = ctx.xp, ctx.p
        g = _unsqueeze_reduced(xp, g, ctx)
        out = _unsqueeze_reduced(xp, out, ctx)
        if p == 0:
            return xp.zeros(a.shape, dtype=a.dtype), None, None, None
        if p == 1:
            return g * xp.sign(a), None, None, None
        if p in (math.inf, -math.inf):
            share = (xp.abs(a) == out).astype(a.dtype)
            share /= share.sum(axis=ctx.dims, keepdims=True)
            return xp.sign(a) * g * share, None, None, None
        safe = xp.where(out == 0, 1, out).astype(a.dtype)  # PyTorch: zero gradient at a zero norm
        if p == 2:
            grad = a * (g / safe)
        else:
            grad = a * xp.abs(a) ** (p - 2) * (g / safe ** (p - 1))
        return xp.where(out == 0, 0, grad).astype(a.dtype), None, None, None


# --- functional forms ----------------------------------------------------------

def _type_name(np_dtype):
    return {"int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool", "float32": "Float", "float64": "Double", "float16": "Half"}[np_dtype.name]


def _require_float(input, name):
    if input._data.dtype.kind != "f":
        raise RuntimeError(f"{name}(): input dtype should be either floating point or complex dtypes. "
                           f"Got {_type_name(input._data.dtype)} instead.")


def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001  (PyTorch's name)
    dims = normalize_dims(dim, input._data.ndim)
    return Sum.apply(input, dims, keepdim, _integral_to_int64(input, _dtype_arg(dtype)))


def mean(input, dim=None, keepdim=False, *, dtype=None):
    np_dtype = _dtype_arg(dtype)
    if (np_dtype or input._data.dtype).kind != "f":
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating "
                           f"point or complex dtype. Got: {_type_name(np_dtype or input._data.dtype)}")
    return Mean.apply(input, normalize_dims(dim, input._data.ndim), keepdim, np_dtype)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    np_dtype = _integral_to_int64(input, _dtype_arg(dtype))
    if dim is None:
        return Prod.apply(input, tuple(range(input._data.ndim)), False, np_dtype)
    return ProdDim.apply(input, normalize_dims(int(dim), input._data.ndim), keepdim, np_dtype)


def logsumexp(input, dim, keepdim=False):
    if input._data.dtype.kind != "f":
        from .conversion import to_dtype
        input = to_dtype(input, dtypes.DEFAULT_FLOAT)
    return Logsumexp.apply(input, normalize_dims(dim, input._data.ndim), keepdim)


def _var_args(dim, unbiased, correction):
    """PyTorch's overloads: ``var(x, unbiased)``, ``var(x, dim, unbiased, keepdim)``, ``correction=``."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    if correction is not None and unbiased is not None:
        raise RuntimeError("var(): cannot pass both 'unbiased' and 'correction'")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    _require_float(input, "var")
    dim, correction = _var_args(dim, unbiased, correction)
    return Var.apply(input, normalize_dims(dim, input._data.ndim), correction, keepdim)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    _require_float(input, "std")
    dim, correction = _var_args(dim, unbiased, correction)
    return Std.apply(input, normalize_dims(dim, input._data.ndim), correction, keepdim)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """``torch.norm``: vector norms over ``dim`` ('fro' is the 2-norm of the flattened dims)."""
    if p == "fro" or p is None:
        p = 2
    elif isinstance(p, str):
        raise NotImplementedError(f"norm(): p='{p}' is not supported; use 'fro' or a number")
    if dtype is not None:
        from .conversion import to_dtype
        input = to_dtype(input, dtypes.to_np(dtype))
    if input._data.dtype.kind != "f":
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_type_name(input._data.dtype)}")
    dims = normalize_dims(dim, input._data.ndim)
    return LinalgVectorNorm.apply(input, dims, float(p), keepdim)


def all(input, dim=None, keepdim=False):  # noqa: A001
    return _logical_reduce(input, dim, keepdim, "all")


def any(input, dim=None, keepdim=False):  # noqa: A001
    return _logical_reduce(input, dim, keepdim, "any")


def _logical_reduce(input, dim, keepdim, name):
    data = input._data
    dims = normalize_dims(dim, data.ndim)
    out = as_array(getattr(data, name)(axis=dims, keepdims=keepdim))
    if data.dtype.kind == "u":  # PyTorch keeps uint8 for uint8 input
        out = out.astype(data.dtype)
    return no_grad_result(out)


def count_nonzero(input, dim=None):
    data = input._data
    dims = normalize_dims(dim, data.ndim)
    return no_grad_result(as_array((data != 0).sum(axis=dims, dtype=_INT64)))
