"""The backward engine: runs a graph of ``Node``s in dependency order.

Iterative, never recursive: dependencies are counted with an explicit stack,
then nodes run from a heap ordered like PyTorch's (latest-created first, leaf
accumulation as soon as it is ready), so a 10,000-op chain backprops and
gradient hooks on parameters fire while the rest of backward still runs.
The loop is pop, run, send: each node kind owns its ``run`` (node.py), and
sending is where broadcast gradients are reduced and cast, once for every op.
This loop works on raw arrays; ``create_graph=True`` runs the same steps on
Tensors, recorded (graph_engine.py), sharing ``start``, ``run_callbacks`` and ``run_hooked``.
"""

import heapq
import threading

import numpy as np

from ..backend import as_array
from ..tensor import _wrap
from . import grad_mode
from .node import AccumulateGrad, _apply_tensor_hooks, apply_tensor_hooks


def run_backward(roots, retain_graph=False, capture=None):
    """Backpropagate from ``roots``: a list of ``(node, output_nr, grad_array)``.

    ``capture`` (for ``autograd.grad``) maps ``(node, output_nr)`` to a slot in
    the returned list; when given, leaves are not accumulated into ``.grad``.
    """
    pending, heap, captured, outer = start(roots, capture)
    heappop, heappush, ndarray = heapq.heappop, heapq.heappush, np.ndarray
    prev_mode = grad_mode._state.enabled
    grad_mode._state.enabled = False
    try:
        while heap:
            node = heappop(heap)[1]
            grads = pending.pop(node)
            del grads[0]  # the dependency count, now 0
            if node._hooked or capture is not None:
                results = run_hooked(node, grads, capture, captured, _run_arrays, False)
            else:
                results = node.run(grads)
            if not retain_graph:
                node.release_saved()
            # Send each input gradient to the node that produced that input.
            sent = None
            for edge, grad in zip(node._next, results):
                if edge is None:
                    continue
                nxt = edge[0]
                waiting = pending[nxt]
                if grad is not None:
                    if type(grad) is not ndarray or grad.shape != edge[2] or grad.dtype is not edge[3]:
                        grad = _conform(grad, edge[2], edge[3])
                    if sent is None:
                        sent = [grad]
                    else:
                        for other in sent:
                            if other is grad:
                                grad = grad.copy()  # one array sent two ways must not alias
                                break
                        sent.append(grad)
                    slot = edge[1] + 1
                    prev = waiting[slot]
                    waiting[slot] = grad if prev is None else _sum(prev, grad)
                remaining = waiting[0] - 1
                waiting[0] = remaining
                if remaining == 0:
                    heappush(heap, (nxt._seq, nxt))
        run_callbacks()
    finally:
        grad_mode._state.enabled = prev_mode
        _callbacks.queue = outer
    return captured


def start(roots, capture):
    """What a backward pass begins with: the pending gradients of every node reachable
    from ``roots`` (the roots' own gradients in place), the heap of nodes ready to run,
    the list ``capture`` fills, and the callback queue of any backward this one runs in
    (the caller puts it back when done)."""
    pending = _count_dependencies([node for node, _, _ in roots])
    for node, nr, grad in roots:
        waiting = pending[node]
        waiting[nr + 1] = grad if waiting[nr + 1] is None else waiting[nr + 1] + grad
    captured = None
    if capture is not None:
        captured = [None] * (max(capture.values()) + 1 if capture else 0)
    heap = [(node._seq, node) for node in {node for node, _, _ in roots} if pending[node][0] == 0]
    heapq.heapify(heap)
    outer = _callbacks.queue
    _callbacks.queue = []
    return pending, heap, captured, outer


def run_callbacks():
    """Run the callbacks this pass queued, in order (one may queue another)."""
    while _callbacks.queue:
        _callbacks.queue.pop(0)()


class _Callbacks(threading.local):
    queue = None


_callbacks = _Callbacks()


def queue_callback(fn):
    """Run ``fn()`` once the backward pass now running has finished (DDP waits for
    its last gradient buckets here). Only valid during backward."""
    if _callbacks.queue is None:
        raise RuntimeError("queue_callback can only be called during the backward pass")
    _callbacks.queue.append(fn)


def _count_dependencies(roots):
    """``{node: [number of edges into it, then one gradient slot per output]}`` for
    every node reachable from ``roots``."""
    pending = {}
    stack = []
    for node in roots:
        if node not in pending:
            pending[node] = [0] + [None] * node._num_outputs
            stack.append(node)
    while stack:
        for edge in stack.pop()._next:
            if edge is None:
                continue
            nxt = edge[0]
            waiting = pending.get(nxt)
            if waiting is not None:
                waiting[0] += 1
            else:
                pending[nxt] = [1, None] if nxt._num_outputs == 1 else [1] + [None] * nxt._num_outputs
                stack.append(nxt)
    return pending


def _sum(prev, grad):
    """Two gradients of one output summed (numpy gives a scalar for 0-dim arrays)."""
    total = prev + grad
    return total if type(total) is np.ndarray else as_array(total)


def sum_to_shape(grad, shape):
    """Reduce a broadcast gradient back to ``shape`` (leading dims, then size-1 dims)."""
    if grad.shape == shape:
        return grad
    axes = reduction_axes(grad.shape, shape)
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    return out.reshape(shape)


def reduction_axes(grad_shape, shape):
    """The axes a gradient of ``grad_shape`` sums over to come back to the input ``shape``."""
    lead = len(grad_shape) - len(shape)
    if lead < 0:
        raise RuntimeError(f"gradient of shape {list(grad_shape)} cannot be reduced to shape {list(shape)}")
    for i, n in enumerate(shape):
        if n != 1 and grad_shape[lead + i] != n:
            raise RuntimeError(f"gradient of shape {list(grad_shape)} is not broadcast-compatible "
                               f"with the input shape {list(shape)}")
    return tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad_shape[lead + i] != 1)


def _conform(grad, shape, dtype):
    """The gradient as an array of its input's shape and dtype (the central reduction)."""
    grad = as_array(grad)  # numpy turns 0-dim results into scalars
    if grad.shape != shape:
        grad = sum_to_shape(grad, shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def _run_arrays(node, grads):
    return node.run(grads)


def run_hooked(node, grads, capture, captured, run, tensors):
    """One node's step the general way, in either engine: pre-hooks, captured gradients
    (``autograd.grad``), ``run(node, grads)``, post-hooks. ``tensors``: the gradients are
    Tensors already (create_graph), else arrays that hooks see wrapped."""
    if all(g is None for g in grads):
        grads = None  # no gradient reached this node
    elif node._tensor_pre_hooks or node._pre_hooks:
        grads = _run_pre_hooks(node, grads, tensors)
        if all(g is None for g in grads):
            grads = None
    if capture is not None:
        if grads is not None:
            for nr in range(node._num_outputs):
                slot = capture.get((node, nr))
                if slot is not None:
                    captured[slot] = grads[nr]
        if type(node) is AccumulateGrad:
            return ()  # a leaf: autograd.grad never touches .grad
    if grads is None:
        return (None,) * len(node._next)
    results = run(node, grads)
    if node._post_hooks:
        as_tensors = _identity if tensors else _as_tensors
        for hook in tuple(node._post_hooks.values()):
            hook(as_tensors(results), as_tensors(grads))
    return results


def _run_pre_hooks(node, grads, tensors):
    grads = list(grads)
    if node._tensor_pre_hooks:
        run_hooks = apply_tensor_hooks if tensors else _apply_tensor_hooks
        for nr, hooks in node._tensor_pre_hooks.items():
            if hooks and grads[nr] is not None:
                grads[nr] = run_hooks(hooks.values(), grads[nr])
    for hook in tuple(node._pre_hooks.values()) if node._pre_hooks else ():
        out = hook(tuple(grads) if tensors else _as_tensors(grads))
        if out is not None:
            grads = list(out) if tensors else [None if g is None else g._data for g in out]
    return grads


def _identity(grads):
    return tuple(grads)


def _as_tensors(arrays):
    return tuple(None if g is None else _wrap(g) for g in arrays)
