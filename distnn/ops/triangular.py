"""Triangular and diagonal parts of matrices: ``tril`` and ``triu`` over the last two
dims, and ``diag`` (a vector to a diagonal matrix, a matrix to its diagonal), with
``diagonal`` shifting the boundary or the diagonal as in PyTorch.

All are linear maps that move some entries and zero the rest, so each gradient is
the upstream gradient moved back; recorded, it is an op again (the triangle, or
indexing), and differentiable to any order.
"""

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording
from .common import int_argument
from .index_put import put_into_zeros

__all__ = ["tril", "triu", "diag"]

TENSOR_METHODS = ("tril", "triu", "diag")


class Tril(Op):
    """Keeps the entries on and below diagonal ``k``; ``Triu`` keeps those on and above it."""

    double_backward = True
    upper = False

    @classmethod
    def forward(cls, ctx, a, k):
        ctx.k = k
        return _triangle(ctx.xp, a, k, cls.upper)

    @classmethod
    def backward(cls, ctx, g):
        if recording(g):
            return GraphArray(cls.apply(g.t, ctx.k)), None
        return _triangle(ctx.xp, g, ctx.k, cls.upper), None


class Triu(Tril):
    upper = True


def _triangle(xp, a, k, upper):
    return xp.triu(a, k) if upper else xp.tril(a, k)


class DiagEmbed(Op):
    """``diag`` of a vector: a square matrix with the vector on diagonal ``k``."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, k):
        n = a.shape[0] + abs(k)
        ctx.key = _diagonal_key(ctx.xp, (n, n), k)
        out = ctx.xp.zeros((n, n), a.dtype)
        out[ctx.key] = a
        return out

    @staticmethod
    def backward(ctx, g):
        return g[ctx.key], None


class Diagonal(Op):
    """``diag`` of a matrix: a copy of its diagonal ``k`` (PyTorch's ``diagonal_copy``)."""

    _node_suffix = "Backward0_copy"
    double_backward = True

    @staticmethod
    def forward(ctx, a, k):
        ctx.input_shape = a.shape
        ctx.key = _diagonal_key(ctx.xp, a.shape, k)
        return a[ctx.key]

    @staticmethod
    def backward(ctx, g):
        return put_into_zeros(ctx.xp, ctx.input_shape, ctx.key, g), None


def _diagonal_key(xp, shape, k):
    """``(rows, cols)`` of diagonal ``k`` of a ``shape`` matrix (above the main one for k > 0)."""
    rows, cols = shape
    first_row, first_col = max(-k, 0), max(k, 0)
    n = max(min(rows - first_row, cols - first_col), 0)
    steps = xp.arange(n)
    return steps + first_row, steps + first_col


def _check_matrix(input, name):
    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")


def tril(input, diagonal=0):
    """The lower triangle of the last two dims, on and below ``diagonal``; zeros elsewhere."""
    _check_matrix(input, "tril")
    return Tril.apply(input, int(diagonal))


def triu(input, diagonal=0):
    """The upper triangle of the last two dims, on and above ``diagonal``; zeros elsewhere."""
    _check_matrix(input, "triu")
    return Triu.apply(input, int(diagonal))


def diag(input, diagonal=0):
    """A 1-D ``input`` as the ``diagonal``-th diagonal of a square matrix of zeros; of a
    2-D ``input``, a copy of its ``diagonal``-th diagonal (above the main one for > 0)."""
    k = int_argument(diagonal, "diag", "diagonal", 2)
    if input.ndim == 1:
        return DiagEmbed.apply(input, k)
    if input.ndim == 2:
        return Diagonal.apply(input, k)
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
