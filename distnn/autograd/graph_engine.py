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

from . import grad_mode
from .engine import _callbacks, _capture, _count_dependencies, reduction_axes
from .function import AccumulateGrad, Function, apply_tensor_hooks, grad_tuple, run_post_accumulate_hooks
from .graph_xp import GraphArray, graph_namespace


def run_backward_graph(roots, retain_graph=True, capture=None):
    """As ``engine.run_backward``, with ``roots`` of ``(node, output_nr, grad Tensor)``."""
    pending = _count_dependencies([node for node, _, _ in roots])
    for node, nr, grad in roots:
        _send(pending[node], nr + 1, grad)
    captured = None
    if capture is not None:
        captured = [None] * (max(capture.values()) + 1 if capture else 0)
    heap = [(node._seq, node) for node in {node for node, _, _ in roots} if pending[node][0] == 0]
    heapq.heapify(heap)
    outer_callbacks = _callbacks.queue
    _callbacks.queue = []
    try:
        with grad_mode.enable_grad():
            while heap:
                node = heapq.heappop(heap)[1]
                grads = pending.pop(node)[1:]
                results = _run_node(node, grads, capture, captured)
                if not retain_graph and node._fn is not None:
                    node._saved, node._saved_versions, node._freed = None, (), True
                for edge, grad in zip(node._next, results):
                    if edge is None:
                        continue
                    waiting = pending[edge[0]]
                    if grad is not None:
                        _send(waiting, edge[1] + 1, _conform(grad, edge[2], edge[3]))
                    waiting[0] -= 1
                    if waiting[0] == 0:
                        heapq.heappush(heap, (edge[0]._seq, edge[0]))
            while _callbacks.queue:
                _callbacks.queue.pop(0)()
    finally:
        _callbacks.queue = outer_callbacks
    return captured


def _send(waiting, slot, grad):
    waiting[slot] = grad if waiting[slot] is None else waiting[slot] + grad


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


def _run_node(node, grads, capture, captured):
    if all(g is None for g in grads):
        grads = None
    elif node._tensor_pre_hooks or node._pre_hooks:
        grads = _run_pre_hooks(node, grads)
    if capture is not None:
        _capture(capture, captured, node, grads)
        if node._fn is None:
            return ()
    if grads is None or all(g is None for g in grads):
        return (None,) * len(node._next)
    if type(node) is AccumulateGrad:
        _accumulate(node, grads[0])
        return ()
    if node._op_backward:
        results = _op_backward(node, grads)
    else:
        results = _function_backward(node, grads)
    if node._post_hooks:
        for hook in tuple(node._post_hooks.values()):
            hook(tuple(results), tuple(grads))
    return results


def _run_pre_hooks(node, grads):
    grads = list(grads)
    if node._tensor_pre_hooks:
        for nr, hooks in node._tensor_pre_hooks.items():
            if hooks and grads[nr] is not None:
                grads[nr] = apply_tensor_hooks(hooks.values(), grads[nr])
    if node._pre_hooks:
        for hook in tuple(node._pre_hooks.values()):
            out = hook(tuple(grads))
            if out is not None:
                grads = list(out)
    return grads


def _accumulate(node, g):
    """A leaf's ``.grad`` as PyTorch keeps it under create_graph: a recorded clone
    the first time, then a recorded (out-of-place) sum."""
    var = node._variable()
    if var is None:
        return
    if var._backward_hooks:
        g = apply_tensor_hooks(var._backward_hooks.values(), g)
    var.grad = g.clone() if var.grad is None else var.grad + g
    if var._post_accumulate_hooks:
        run_post_accumulate_hooks(var)


def _function_backward(node, grads):
    """A user Function's backward, on Tensors, recorded (``once_differentiable`` opts out)."""
    from ..creation import zeros
    if node.materialize_grads:
        grads = [zeros(m[0], dtype=m[1], device=_device(m[2])) if g is None and m is not None else g
                 for g, m in zip(grads, node._output_meta)]
    result = grad_tuple(node, node._fn.backward(node, *grads))
    return tuple(_as_tensor(r) for r in result)


def _op_backward(node, grads):
    fn = node._fn
    if not fn.double_backward:
        arrays = fn._backward_arrays(node, [None if g is None else g._data for g in grads])
        return refuse_double_backward(fn, node, arrays, grads)
    ctx = _GraphCtx(node)
    if node._num_outputs == 1:
        result = fn.backward(ctx, GraphArray(grads[0]))
    else:
        xp = node.xp
        result = fn.backward(ctx, *(xp.zeros(m[0], m[1]) if g is None else GraphArray(g)
                                    for g, m in zip(grads, node._output_meta)))
    return tuple(_as_tensor(r) for r in grad_tuple(node, result))


def _as_tensor(r):
    """A backward result as a Tensor: a formula's constant arrays and scalars wrapped."""
    from ..ops.common import as_array
    from ..tensor import Tensor, _wrap
    if r is None or isinstance(r, Tensor):
        return r
    if type(r) is GraphArray:
        return r.t
    return _wrap(as_array(r))


def _device(array):
    from ..backend import device_of
    return device_of(array)


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
    from ..tensor import _wrap
    from .function import _THIS_NODE
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


class DoubleBackwardRefused(Function):
    """Stands behind a gradient computed by an op without double-backward support."""

    _node_suffix = ""

    @staticmethod
    def forward(ctx, *grads):
        raise RuntimeError("DoubleBackwardRefused nodes are made by the engine only")

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"{ctx.op_name} does not support double backward: a gradient was computed through it with "
            "create_graph=True, but its backward is not differentiable in distnn, so this second derivative "
            "is refused rather than given wrong")


def refuse_double_backward(fn, node, arrays, grads):
    """``arrays`` (node's input gradients) as Tensors whose ``grad_fn`` refuses backward
    and names the op, so a graph built through them fails only if differentiated."""
    from ..tensor import _wrap
    from .function import _edge_of, _sequence
    inputs = [g for g in grads if g is not None and g.requires_grad]
    refusal = DoubleBackwardRefused._Node()
    refusal.op_name = f"{fn.__name__}{fn._node_suffix}"
    refusal._next = tuple(_edge_of(g) for g in inputs)
    refusal.needs_input_grad = (True,) * len(inputs)
    refusal._seq = next(_sequence)
    refusal._num_outputs = len(arrays)
    refusal._output_meta = tuple(None if a is None else (a.shape, a.dtype, a) for a in arrays)
    return tuple(None if a is None else _wrap(a, True, refusal, i) for i, a in enumerate(arrays))
