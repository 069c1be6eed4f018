"""Writing values at a key into a new array: ``IndexPut`` (the value of ``x[key] = v``)
and ``put``, the one routine every indexing op's backward uses to place its gradient.

On arrays ``put`` writes directly; on GraphArrays (``create_graph=True``) it records
``IndexPut``, whose own backward is ``put`` again, so indexing differentiates to any order.
"""

from ..autograd.function import Op
from ..autograd.graph_xp import GraphArray, recording
from ..tensor import _wrap


def put(xp, a, key, value, accumulate=False):
    """A copy of ``a`` with ``value`` written at ``key`` (summed instead with
    ``accumulate``, repeated indices adding up)."""
    if recording(a) or recording(value):
        a = a.t if recording(a) else _wrap(a)
        if recording(value):
            value = value.t
        return GraphArray(IndexPut.apply(a, key, value, accumulate=accumulate))
    out = xp.array(a)  # a copy, and an array even when a 0-dim gradient arrives as a scalar
    if accumulate:
        xp.add.at(out, key, value)
    else:
        out[key] = value
    return out


def put_into_zeros(xp, shape, key, g, accumulate=False):
    """The gradient of indexing: zeros of ``shape`` with ``g`` placed at ``key``."""
    grad = xp.zeros(shape, g.dtype)
    if recording(g):
        return put(xp, grad, key, g, accumulate)
    if accumulate:
        xp.add.at(grad, key, g)
    else:
        grad[key] = g  # into the fresh zeros: no copy, as put would make
    return grad


class IndexPut(Op):
    """The value of ``a[key] = value`` (or ``+=``, repeats accumulating) as a new array."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, key, value, accumulate=False):
        ctx.key, ctx.accumulate = key, accumulate
        ctx.value_ndim = getattr(value, "ndim", 0)
        return put(ctx.xp, a, key, value, accumulate)

    @staticmethod
    def backward(ctx, g):
        need_a, _, need_value = ctx.needs_input_grad
        ga = gv = None
        if need_a:
            ga = ctx.xp.array(g) if ctx.accumulate else put(ctx.xp, g, ctx.key, 0)
        if need_value:
            gv = ctx.xp.asarray(g[ctx.key])
            if gv.ndim < ctx.value_ndim:  # numpy lets the value carry extra leading 1s
                gv = gv.reshape((1,) * (ctx.value_ndim - gv.ndim) + gv.shape)
        return ga, None, gv
