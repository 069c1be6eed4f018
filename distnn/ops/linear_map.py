"""Double backward for ops whose backward is a fixed linear map of the gradient (pooling,
padding, gathers): ``linear_map`` applies the map, and when the gradient is recorded
(``create_graph=True``) it becomes a ``LinearMap`` node whose backward is the map's
adjoint, itself recorded the same way, so such ops differentiate to any order.
"""

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording


class LinearMap(Op):
    """``fn(x, *args)`` for a linear ``fn`` whose adjoint is ``adjoint(g, *args)``."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, fn, adjoint, args):
        ctx.fn, ctx.adjoint, ctx.args = fn, adjoint, args
        return fn(ctx.xp, x, *args)

    @staticmethod
    def backward(ctx, g):
        return linear_map(ctx.xp, g, ctx.adjoint, ctx.fn, ctx.args), None, None, None


def linear_map(xp, x, fn, adjoint, args):
    """``fn(xp, x, *args)``; recorded, with ``adjoint`` as its backward, when ``x`` is a GraphArray."""
    if recording(x):
        return GraphArray(LinearMap.apply(x.t, fn, adjoint, args))
    return fn(xp, x, *args)
