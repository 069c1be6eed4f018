"""The backward engine: runs a graph of ``Node``s in dependency order.

Iterative, never recursive: dependencies are counted with an explicit stack,
then nodes run from a heap ordered like PyTorch's (latest-created first, leaf
accumulation as soon as it is ready), so a 10,000-op chain backprops and
gradient hooks on parameters fire while the rest of backward still runs.
Broadcast reduction and dtype casting of every gradient happen here, once.
"""

import heapq
import threading

import numpy as np

from . import grad_mode
from .function import (AccumulateGrad, _apply_tensor_hooks, accumulate_into, grad_tuple,
                       run_post_accumulate_hooks)


_NUMPY_SCALARS = frozenset(np.sctypeDict.values()) - {np.ndarray}


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


def run_backward(roots, retain_graph=False, capture=None):
    """Backpropagate from ``roots``: a list of ``(node, output_nr, grad_array)``.

    ``capture`` (for ``autograd.grad``) maps ``(node, output_nr)`` to a slot in
    the returned list; when given, leaves are not accumulated into ``.grad``.
    """
    # One list per node still to run: [dependencies left, gradient of output 0, of output 1, ...]
    pending = _count_dependencies([node for node, _, _ in roots])
    for node, nr, grad in roots:
        _accumulate(pending[node], nr + 1, grad)
    captured = None
    if capture is not None:
        captured = [None] * (max(capture.values()) + 1 if capture else 0)
    heap = [(node._seq, node) for node in {node for node, _, _ in roots} if pending[node][0] == 0]
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush
    inline_leaves = capture is None  # autograd.grad captures leaf gradients instead
    ndarray = np.ndarray
    prev_mode = grad_mode._state.enabled
    grad_mode._state.enabled = False
    outer_callbacks = _callbacks.queue
    _callbacks.queue = []
    try:
        while heap:
            node = heappop(heap)[1]
            grads = pending.pop(node)
            del grads[0]
            if inline_leaves and node._op_backward and not node._hooked and len(grads) == 1:
                # the common node: a built-in op with one output, no hooks, nothing captured
                grad = grads[0]
                if grad is None:
                    results = (None,) * len(node._next)
                else:
                    results = node._fn.backward(node, grad)
                    if type(results) is not tuple or len(results) != len(node._next):
                        results = grad_tuple(node, results)
            else:
                results = _run_node(node, grads, capture, captured)
            if not retain_graph and node._fn is not None:  # free what backward saved (leaves keep nothing)
                node._saved = None
                node._saved_versions = ()
                node._freed = True
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
                    if prev is None:
                        waiting[slot] = grad
                    else:
                        total = prev + grad
                        waiting[slot] = np.asarray(total) if type(total) in _NUMPY_SCALARS else total
                remaining = waiting[0] - 1
                waiting[0] = remaining
                if remaining == 0:
                    if inline_leaves and type(nxt) is AccumulateGrad and not nxt._hooked:
                        # A leaf would run next anyway (leaves come first): unless a hook may
                        # change its gradient, sum into its .grad here, off the heap, and run its
                        # post-accumulate hooks (DDP's) as that node would.
                        var = nxt._variable()
                        if var is not None and not var._backward_hooks:
                            del pending[nxt]
                            if waiting[1] is not None:
                                accumulate_into(var, waiting[1])
                                if var._post_accumulate_hooks:
                                    run_post_accumulate_hooks(var)
                            continue
                    heappush(heap, (nxt._seq, nxt))
        while _callbacks.queue:  # run in order; a callback may queue another
            _callbacks.queue.pop(0)()
    finally:
        grad_mode._state.enabled = prev_mode
        _callbacks.queue = outer_callbacks
    return captured


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


def _conform(grad, shape, dtype):
    """The gradient as an array of its input's shape and dtype (the central reduction)."""
    if type(grad) in _NUMPY_SCALARS:  # numpy turns 0-dim results into scalars
        grad = np.asarray(grad)
    if grad.shape != shape:
        grad = sum_to_shape(grad, shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def _run_node(node, grads, capture, captured):
    """One node's backward the general way: hooks, captured gradients, several outputs."""
    empty = all(g is None for g in grads)
    if empty:
        grads = None  # no gradient reached this node
    elif node._tensor_pre_hooks or node._pre_hooks:
        grads = _run_pre_hooks(node, grads)
        empty = all(g is None for g in grads)
    if capture is not None:
        _capture(capture, captured, node, grads)
        if node._fn is None:
            return ()  # a leaf: autograd.grad never touches .grad
    if empty:
        return (None,) * len(node._next)
    if node._op_backward and len(grads) == 1:
        # a built-in op's node: its backward runs on the arrays directly
        results = node._fn.backward(node, grads[0])
        if type(results) is not tuple or len(results) != len(node._next):
            results = grad_tuple(node, results)
    else:
        results = node._run_backward(grads)
    if node._post_hooks:
        _run_post_hooks(node, results, grads)
    return results


def _capture(capture, captured, node, grads):
    if grads is None:
        return
    for nr in range(node._num_outputs):
        slot = capture.get((node, nr))
        if slot is not None:
            captured[slot] = grads[nr]


def _accumulate(waiting, slot, grad):
    prev = waiting[slot]
    if prev is None:
        waiting[slot] = grad
    else:
        total = prev + grad
        waiting[slot] = np.asarray(total) if type(total) in _NUMPY_SCALARS else total


def _run_pre_hooks(node, grads):
    if node._tensor_pre_hooks:
        grads = list(grads)
        for nr, hooks in node._tensor_pre_hooks.items():
            if hooks and grads[nr] is not None:
                grads[nr] = _apply_tensor_hooks(hooks.values(), grads[nr])
    if node._pre_hooks:
        from ..tensor import _wrap
        for hook in tuple(node._pre_hooks.values()):
            out = hook(tuple(None if g is None else _wrap(g) for g in grads))
            if out is not None:
                grads = [None if g is None else g._data for g in out]
    return grads


def _run_post_hooks(node, results, grads):
    from ..tensor import _wrap
    as_tensors = tuple(None if g is None else _wrap(g) for g in results)
    outs = tuple(None if g is None else _wrap(g) for g in grads)
    for hook in tuple(node._post_hooks.values()):
        hook(as_tensors, outs)
