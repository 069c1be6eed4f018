"""Shape ops: views and reshapes (view, reshape, transpose, permute, ...).

View-returning ops set ``is_view`` so the output shares its input's version
counter; their gradients are the inverse rearrangement of the upstream gradient.
"""

from ..autograd.function import Op
from .common import normalize_dim

__all__ = ["view", "reshape", "transpose", "swapaxes", "permute", "t"]

TENSOR_METHODS = ("view", "reshape", "transpose", "swapaxes", "permute", "t")


def _sizes(size):
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f(torch.Size([2, 3]))``."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def _infer_shape(shape, numel):
    """Resolve one ``-1`` in ``shape``; raise PyTorch's error when sizes do not match."""
    known = 1
    infer = None
    for i, s in enumerate(shape):
        if s == -1:
            if infer is not None:
                raise RuntimeError("only one dimension can be inferred")
            infer = i
        elif s < 0:
            raise RuntimeError(f"invalid shape dimension {s}")
        else:
            known *= s
    if infer is not None:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = shape[:infer] + (numel // known,) + shape[infer + 1:]
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _try_view(xp, a, shape):
    """``a`` reshaped without copying, or None when the strides do not allow it."""
    out = a.view()
    try:
        out.shape = shape
    except AttributeError:
        return None
    return out


class View(Op):
    is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        out = _try_view(ctx.xp, a, shape)
        if out is None:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least "
                               "one dimension spans across two contiguous subspaces). Use .reshape(...) "
                               "instead.")
        return out

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


class UnsafeView(Op):
    """``reshape`` of a tensor whose strides do not allow a view: a copy."""

    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


class Transpose(Op):
    is_view = True

    @staticmethod
    def forward(ctx, a, d0, d1):
        ctx.dims = (d0, d1)
        return ctx.xp.swapaxes(a, d0, d1)

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.swapaxes(g, *ctx.dims), None, None


class T(Transpose):
    """``x.t()``: a transpose of a matrix (no-op view for 0-d and 1-d)."""


class Permute(Op):
    is_view = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return ctx.xp.transpose(a, dims)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return ctx.xp.transpose(g, inverse), None


def view(input, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)) and hasattr(shape[0], "np"):
        raise NotImplementedError("view(dtype) is not supported")
    shape = _infer_shape(_sizes(shape), input._data.size)
    return View.apply(input, shape)


def reshape(input, *shape):
    shape = _infer_shape(_sizes(shape), input._data.size)
    if _try_view(None, input._data, shape) is not None:
        return View.apply(input, shape)
    return UnsafeView.apply(input, shape)


def transpose(input, dim0, dim1):
    n = input._data.ndim
    return Transpose.apply(input, normalize_dim(dim0, n), normalize_dim(dim1, n))


swapaxes = transpose


def permute(input, *dims):
    dims = _sizes(dims)
    n = input._data.ndim
    if len(dims) != n:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match "
                           f"the length of the desired ordering of dimensions i.e. input.dim() = {n} "
                           f"is not equal to len(dims) = {len(dims)}")
    norm = tuple(normalize_dim(d, n) for d in dims)
    if len(set(norm)) != n:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return Permute.apply(input, norm)


def t(input):
    n = input._data.ndim
    if n > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {n}D")
    return T.apply(input, 0, 1) if n == 2 else T.apply(input, 0, 0)
