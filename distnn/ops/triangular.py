"""Triangular parts of matrices: ``tril`` and ``triu`` over the last two dims, with
``diagonal`` shifting the boundary as in PyTorch.

Both are linear maps that keep some entries and zero the rest, so the gradient is
the same triangle of the upstream gradient; recorded, it is the op again, and
differentiable to any order.
"""

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording

__all__ = ["tril", "triu"]

TENSOR_METHODS = ("tril", "triu")


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
