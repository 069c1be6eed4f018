"""Max and min reductions: max/min (a value, ``(values, indices)`` along a dim, or the
elementwise maximum/minimum of two tensors), amax/amin and argmax/argmin."""

from .. import dtypes
from ..autograd.function import Op
from ..tensor import Tensor
from .._dims import normalize_dim, normalize_dims
from .common import as_array, no_grad_result, renamed_op
from .reduce_dims import _INT64, _remember, _unsqueeze_reduced

__all__ = ["max", "min", "amax", "amin", "argmax", "argmin"]

TENSOR_METHODS = ("max", "min", "amax", "amin", "argmax", "argmin")


# --- max / min -----------------------------------------------------------------

class Amax(Op):
    """Max over ``dims``; the gradient is split evenly between tied maxima, as in PyTorch."""

    double_backward = True
    reduce = "max"

    @classmethod
    def forward(cls, ctx, a, dims, keepdim):
        _remember(ctx, a, dims, keepdim)
        out = getattr(a, cls.reduce)(axis=dims, keepdims=True)
        ctx.save_for_backward(a, out)
        return out if keepdim else out.squeeze(axis=dims)

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        share = (a == out).astype(g.dtype)
        share /= share.sum(axis=ctx.dims, keepdims=True)
        return _unsqueeze_reduced(ctx.xp, g, ctx) * share, None, None


class Amin(Amax):
    reduce = "min"


MaxAll = renamed_op(Amax, "Max", 1)  # PyTorch names the full max/min reductions MaxBackward1
MinAll = renamed_op(Amin, "Min", 1)


class Max(Op):
    """``max(x, dim)``: values gathered at precomputed indices; the gradient goes to those indices."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, index, dim, keepdim):
        ctx.input_shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.save_for_backward(index)
        out = ctx.xp.take_along_axis(a, index, axis=dim)
        return out if keepdim else out.squeeze(dim)

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved_tensors
        xp = ctx.xp
        n = ctx.input_shape[ctx.dim]
        positions = xp.arange(n).reshape((n,) + (1,) * (len(ctx.input_shape) - ctx.dim - 1))
        g = g if ctx.keepdim else xp.expand_dims(g, ctx.dim)
        return xp.where(positions == index, g, g.dtype.type(0)), None, None, None


Min = renamed_op(Max, "Min")


class ReturnTypes(tuple):
    """``(values, indices)`` as PyTorch's ``torch.return_types.max``: a tuple with names."""

    _name = "max"

    def __new__(cls, values, indices, name="max"):
        self = super().__new__(cls, (values, indices))
        self._name = name
        return self

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]

    def __repr__(self):
        return f"torch.return_types.{self._name}(\nvalues={self[0]!r},\nindices={self[1]!r})"


# --- functional forms ----------------------------------------------------------

def _check_nonempty(input, name, dims):
    shape = input._data.shape
    for d in dims:
        if shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    if not dims and input._data.size == 0:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           "Specify the reduction dim with the 'dim' argument.")


def _max_min(input, dim, keepdim, other, name):
    if isinstance(dim, Tensor):
        other = dim
    if other is not None:
        from .elementwise import maximum, minimum
        return (maximum if name == "max" else minimum)(input, other)
    if dim is None:
        if input._data.size == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                               "Specify the reduction dim with the 'dim' argument.")
        return (MaxAll if name == "max" else MinAll).apply(input, tuple(range(input._data.ndim)), False)
    n = input._data.ndim
    d = normalize_dim(dim, n)
    if n == 0:
        from .conversion import clone
        from ..creation import zeros
        return ReturnTypes(clone(input), zeros((), dtype=dtypes.int64, device=input.device), name)
    _check_nonempty(input, name, (d,))
    arg = input._data.argmax if name == "max" else input._data.argmin
    index = arg(axis=d, keepdims=True)
    values = (Max if name == "max" else Min).apply(input, index, d, keepdim)
    return ReturnTypes(values, no_grad_result(index if keepdim else index.squeeze(d)), name)


def max(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    """``max(x)`` -> value; ``max(x, dim)`` -> (values, indices); ``max(x, y)`` -> maximum."""
    return _max_min(input, dim, keepdim, other, "max")


def min(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    return _max_min(input, dim, keepdim, other, "min")


def amax(input, dim=(), keepdim=False):
    dims = normalize_dims(dim, input._data.ndim)
    _check_nonempty(input, "amax", dims)
    return Amax.apply(input, dims, keepdim)


def amin(input, dim=(), keepdim=False):
    dims = normalize_dims(dim, input._data.ndim)
    _check_nonempty(input, "amin", dims)
    return Amin.apply(input, dims, keepdim)


def _arg_reduce(input, dim, keepdim, name):
    data = input._data
    if data.size == 0 and dim is None:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
    fn = data.argmax if name == "argmax" else data.argmin
    if dim is None:
        index = as_array(fn())
        if keepdim:
            index = index.reshape((1,) * data.ndim)
    else:
        d = normalize_dim(dim, data.ndim)
        index = as_array(fn(axis=d, keepdims=keepdim)) if data.ndim else as_array(fn())
    return no_grad_result(index.astype(_INT64, copy=False))


def argmax(input, dim=None, keepdim=False):
    return _arg_reduce(input, dim, keepdim, "argmax")


def argmin(input, dim=None, keepdim=False):
    return _arg_reduce(input, dim, keepdim, "argmin")
