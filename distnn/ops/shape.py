"""Shape ops on one tensor: views and reshapes (view, reshape, flatten, squeeze, expand,
transpose, permute, movedim) and the copying rearrangements repeat, tile and flip.
Joining tensors and cutting one into pieces along a dim live in ``join.py``.

View-returning ops set ``is_view`` so the output shares its input's version
counter; every gradient is the inverse rearrangement of the upstream gradient.
"""

from ..autograd.function import Op
from .._dims import normalize_dim, normalize_dims
from .common import renamed_op

__all__ = ["view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze",
           "expand", "expand_as", "repeat", "tile", "transpose", "swapaxes", "swapdims", "permute", "t",
           "movedim", "moveaxis", "flip"]

TENSOR_METHODS = ("view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze",
                  "unsqueeze", "expand", "expand_as", "repeat", "tile", "transpose", "swapaxes",
                  "swapdims", "permute", "t", "movedim", "moveaxis", "flip")


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
            raise RuntimeError(f"invalid shape dimension {s} at index {i} of shape {list(shape)}")
        else:
            known *= s
    if infer is not None:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        return shape[:infer] + (numel // known,) + shape[infer + 1:]
    if known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _try_view(a, shape):
    """``a`` reshaped without copying, or None when its strides do not allow it."""
    out = a.view()
    try:
        out.shape = shape  # numpy and cupy refuse (AttributeError) instead of copying
    except (AttributeError, ValueError):
        return None
    return out


# --- ops --------------------------------------------------------------------------

class View(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        out = _try_view(a, shape)
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

    double_backward = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


class Squeeze(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, axes):
        ctx.input_shape = a.shape
        return ctx.xp.squeeze(a, axis=axes) if axes else a.view()

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


SqueezeDim = renamed_op(Squeeze, "Squeeze", 1)
SqueezeDims = renamed_op(Squeeze, "Squeeze", 2)


class Unsqueeze(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, dim):
        ctx.input_shape = a.shape
        return ctx.xp.expand_dims(a, dim)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.input_shape), None


class Expand(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        return ctx.xp.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums a broadcast gradient back to the input's shape


class Repeat(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, repeats):
        ctx.padded_shape = (1,) * (len(repeats) - a.ndim) + a.shape
        ctx.input_shape = a.shape
        ctx.repeats = repeats
        return ctx.xp.tile(a, repeats)

    @staticmethod
    def backward(ctx, g):
        # view the gradient as (r0, s0, r1, s1, ...) and sum every repeat axis
        interleaved = []
        for r, s in zip(ctx.repeats, ctx.padded_shape):
            interleaved += [r, s]
        summed = g.reshape(interleaved).sum(axis=tuple(range(0, len(interleaved), 2)))
        return summed.reshape(ctx.input_shape), None


class Transpose(Op):
    double_backward = True
    is_view = True

    @staticmethod
    def forward(ctx, a, d0, d1):
        ctx.dims = (d0, d1)
        return ctx.xp.swapaxes(a, d0, d1) if a.ndim else a.view()

    @staticmethod
    def backward(ctx, g):
        return (ctx.xp.swapaxes(g, *ctx.dims) if g.ndim else g.view()), None, None


class T(Transpose):
    """``x.t()``: the transpose of a matrix; 0-d and 1-d tensors come back as views."""


TInPlace = renamed_op(T, "T", 1)  # ``x.t_()`` swaps x's dims for this view of it; PyTorch's TBackward1


class Permute(Op):
    double_backward = True
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


class Flip(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return ctx.xp.flip(a, dims).copy()  # PyTorch's flip copies; a numpy view would alias

    @staticmethod
    def backward(ctx, g):
        return ctx.xp.flip(g, ctx.dims), None


# --- functional forms -------------------------------------------------------------

def view(input, *shape):
    shape = _infer_shape(_sizes(shape), input._data.size)
    return View.apply(input, shape)


def view_as(input, other):
    return view(input, other._data.shape)


def reshape(input, *shape):
    shape = _infer_shape(_sizes(shape), input._data.size)
    if _try_view(input._data, shape) is not None:
        return View.apply(input, shape)
    return UnsafeView.apply(input, shape)


def reshape_as(input, other):
    return reshape(input, other._data.shape)


def flatten(input, start_dim=0, end_dim=-1):
    shape = input._data.shape
    if not shape:
        return reshape(input, (1,))
    start, end = normalize_dim(start_dim, len(shape)), normalize_dim(end_dim, len(shape))
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if start == end:
        return input
    n = 1
    for s in shape[start:end + 1]:
        n *= s
    return reshape(input, shape[:start] + (n,) + shape[end + 1:])


def unflatten(input, dim, sizes):
    shape = input._data.shape
    d = normalize_dim(dim, len(shape))
    sizes = tuple(int(s) for s in sizes)
    try:
        sizes = _infer_shape(sizes, shape[d])
    except RuntimeError:
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim "
                           f"{dim} ({shape[d]}) in the input tensor") from None
    return reshape(input, shape[:d] + sizes + shape[d + 1:])


def squeeze(input, dim=None):
    shape = input._data.shape
    if dim is None:
        return Squeeze.apply(input, tuple(i for i, s in enumerate(shape) if s == 1))
    axes = normalize_dims(dim, len(shape), empty_means_all=False)
    op = SqueezeDims if isinstance(dim, (tuple, list)) else SqueezeDim
    # PyTorch leaves dims whose size is not 1 alone instead of raising
    return op.apply(input, tuple(a for a in axes if shape[a] == 1))


def unsqueeze(input, dim):
    return Unsqueeze.apply(input, normalize_dim(dim, input._data.ndim + 1))


def expand(input, *sizes):
    sizes = _sizes(sizes)
    shape = input._data.shape
    if len(sizes) < len(shape):
        raise RuntimeError(f"expand({input.type()}{{{list(shape)}}}, size={list(sizes)}): the number of "
                           f"sizes provided ({len(sizes)}) must be greater or equal to the number of "
                           f"dimensions in the tensor ({len(shape)})")
    lead = len(sizes) - len(shape)
    target = []
    for i, s in enumerate(sizes):
        old = shape[i - lead] if i >= lead else None
        if s == -1:
            if old is None:
                raise RuntimeError(f"The expanded size of the tensor (-1) isn't allowed in a leading, "
                                   f"non-existing dimension {i}")
            s = old
        elif old is not None and old != 1 and old != s:
            raise RuntimeError(f"The expanded size of the tensor ({s}) must match the existing size ({old}) "
                               f"at non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                               f"Tensor sizes: {list(shape)}")
        target.append(s)
    return Expand.apply(input, tuple(target))


def expand_as(input, other):
    return expand(input, other._data.shape)


def repeat(input, *sizes):
    sizes = _sizes(sizes)
    if len(sizes) < input._data.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    return Repeat.apply(input, sizes)


def tile(input, *dims):
    dims = _sizes(dims)
    return Repeat.apply(input, (1,) * (input._data.ndim - len(dims)) + dims)


def transpose(input, dim0, dim1):
    n = input._data.ndim
    return Transpose.apply(input, normalize_dim(dim0, n), normalize_dim(dim1, n))


swapaxes = swapdims = transpose


def permute(input, *dims):
    dims = _sizes(dims)
    n = input._data.ndim
    if len(dims) != n:
        raise RuntimeError("permute(sparse_coo): number of dimensions in the tensor input does not match "
                           "the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {n} is not equal to len(dims) = {len(dims)}")
    norm = tuple(normalize_dim(d, n) for d in dims)
    if len(set(norm)) != n:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return Permute.apply(input, norm)


def t(input):
    n = input._data.ndim
    if n > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {n}D")
    return T.apply(input, 0, 1) if n == 2 else T.apply(input, 0, 0)


def movedim(input, source, destination):
    n = input._data.ndim
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} dims) should "
                           f"contain the same number of dims as destination ({list(dst)} dims)")
    src = [normalize_dim(d, n) for d in src]
    dst = [normalize_dim(d, n) for d in dst]
    order = [None] * n
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(n) if d not in src)
    return Permute.apply(input, tuple(o if o is not None else next(rest) for o in order))


moveaxis = movedim


def flip(input, *dims):
    dims = _sizes(dims)
    n = input._data.ndim
    return Flip.apply(input, normalize_dims(dims, n, empty_means_all=False))

