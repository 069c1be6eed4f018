"""The backward engine for ``create_graph=True``: gradients are Tensors, and every
step (each node's backward, the sums, the broadcast reductions and casts) is
itself recorded, so the gradients can be differentiated again.

The order, dependency counting, hooks and capture are the first-order engine's
(``engine.py``), which stays on raw arrays so ``create_graph=False`` pays nothing
for this. A built-in op runs its array formula on ``GraphArray``s
(``graph_xp.py``) when it declares ``double_backward = True``; any other op
computes its gradient on arrays and hands it on with a node that refuses to be
differentiated, naming the op (never a silently wrong second derivative).
"""

import heapq

import numpy as np

from ..backend import array_module, as_array
from ..tensor import Tensor, _wrap
from . import grad_mode
from .engine import _callbacks, reduction_axes, run_callbacks, run_hooked, start
from .function import refuse_double_backward
from .graph_xp import GraphArray, graph_namespace
from .node import _THIS_NODE, AccumulateGrad, apply_tensor_hooks, grad_tuple, run_post_accumulate_hooks


def run_backward_graph(roots, retain_graph=True, capture=None):
    """As ``engine.run_backward``, with ``roots`` of ``(node, output_nr, grad Tensor)``."""
    pending, heap, captured, outer = start(roots, capture)
    try:
        with grad_mode.enable_grad():
            while heap:
                node = heapq.heappop(heap)[1]
                grads = pending.pop(node)[1:]
                results = run_hooked(node, grads, capture, captured, _run, True)
                if not retain_graph:
                    node.release_saved()
                for edge, grad in zip(node._next, results):
                    if edge is None:
                        continue
                    waiting = pending[edge[0]]
                    if grad is not None:
                        grad = _conform(grad, edge[2], edge[3])
                        waiting[edge[1] + 1] = grad if waiting[edge[1] + 1] is None else waiting[edge[1] + 1] + grad
                    waiting[0] -= 1
                    if waiting[0] == 0:
                        heapq.heappush(heap, (edge[0]._seq, edge[0]))
            run_callbacks()
    finally:
        _callbacks.queue = outer
    return captured


def _conform(grad, shape, dtype):
    """The recorded broadcast reduction and cast of a gradient to its input's shape and dtype."""
    d = grad._data
    if d.shape != shape:
        axes = reduction_axes(d.shape, shape)
        if axes:
            grad = grad.sum(axes, keepdim=True)
        grad = grad.reshape(shape)
    if grad._data.dtype != dtype:
        grad = grad.to(dtype)
    return grad


def _run(node, grads):
    """A node's backward on Tensors, recorded: the graph form of ``node.run``."""
    if type(node) is AccumulateGrad:
        _accumulate(node, grads[0])
        return ()
    if node._op_backward:
        return _op_backward(node, grads)
    return _function_backward(node, grads)


def _accumulate(node, g):
    """A leaf's ``.grad`` as PyTorch keeps it under create_graph: a recorded clone
    the first time, then a recorded (out-of-place) sum."""
    var = node._variable()
    if var is None or g is None:
        return
    if var._backward_hooks:
        g = apply_tensor_hooks(var._backward_hooks.values(), g)
    var.grad = g.clone() if var.grad is None else var.grad + g
    if var._post_accumulate_hooks:
        run_post_accumulate_hooks(var)


def _function_backward(node, grads):
    """A user Function's backward, on Tensors, recorded (``once_differentiable`` opts out)."""
    if node.materialize_grads:
        grads = [_wrap(array_module(m[2]).zeros(m[0], m[1])) if g is None and m is not None else g
                 for g, m in zip(grads, node._output_meta)]
    result = grad_tuple(node, node._fn.backward(node, *grads))
    return tuple(_as_tensor(r, node.xp) for r in result)


def _op_backward(node, grads):
    fn = node._fn
    if not fn.double_backward:
        arrays = node.run([None if g is None else g._data for g in grads])
        return refuse_double_backward(fn, node, arrays, grads)
    ctx = _GraphCtx(node)
    if node._num_outputs == 1:
        result = fn.backward(ctx, GraphArray(grads[0]))
    else:
        xp = node.xp
        result = fn.backward(ctx, *(xp.zeros(m[0], m[1]) if g is None else GraphArray(g)
                                    for g, m in zip(grads, node._output_meta)))
    return tuple(_as_tensor(r, node.xp) for r in grad_tuple(node, result))


def _as_tensor(r, xp):
    """A backward result as a Tensor: a formula's constant arrays wrapped where they are,
    and its scalars on the node's device (``xp``), beside the gradients they join."""
    if r is None or isinstance(r, Tensor):
        return r
    if type(r) is GraphArray:
        return r.t
    return _wrap(as_array(r) if xp is np else xp.asarray(r))


class _GraphCtx:
    """An op's node as its backward sees it in graph mode: ``xp`` records, and the
    saved inputs and outputs come back as GraphArrays of the tensors they belong to."""

    __slots__ = ("_node", "saved_tensors", "xp")

    def __init__(self, node):
        self._node = node
        self.xp = graph_namespace(node.xp)
        records = {id(r[2]): r for r in node._saved_versions if r[2].dtype.kind in "fc"}  # others: constants
        self.saved_tensors = tuple(
            GraphArray(_saved_tensor(node, records[id(s)])) if id(s) in records else s
            for s in node.saved_tensors)

    def __getattr__(self, name):
        return getattr(self._node, name)


def _saved_tensor(node, record):
    """The tensor a saved array came from, with its history: one of the node's own
    outputs, a non-leaf input (its producer and output_nr), a leaf input itself, or
    (when nothing differentiable produced it) a constant."""
    counter, _, array, output_nr, producer = record
    if producer is None:
        for edge in node._next:
            if edge is not None and type(edge[0]) is AccumulateGrad:
                var = edge[0]._variable()
                if var is not None and var._data is array:
                    return var
        t = _wrap(array)
    else:
        t = _wrap(array, True, node if producer is _THIS_NODE else producer, output_nr)
    t._vc = counter
    return t
