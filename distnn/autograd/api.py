"""``autograd.backward`` and ``autograd.grad``: the roots of a backward pass, handed
to the first-order engine (arrays) or, with ``create_graph=True``, the graph engine."""

import numpy as np

from ..backend import array_module
from ..tensor import Tensor, _wrap
from .engine import run_backward
from .graph_engine import run_backward_graph
from .views import refresh_view


def Variable(data, requires_grad=False, volatile=False):
    """The pre-0.4 wrapper: now just returns the tensor (with ``requires_grad`` set)."""
    if not isinstance(data, Tensor):
        raise TypeError(f"Expect: Variable(Tensor), Actual: Variable({type(data).__name__})")
    if requires_grad:
        data.requires_grad_(True)
    return data


def _root_grads(outputs, grad_outputs, create_graph=False):
    """``(node, output_nr, gradient)`` per output: arrays, or Tensors under create_graph."""
    roots = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if out._base is not None:
            refresh_view(out)
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if out._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            grad = backend_ones_like(out._data)
            if create_graph:
                grad = _wrap(grad)
        else:
            if tuple(g.shape) != tuple(out.shape):
                raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and "
                                   f"output[{i}] has a shape of {out.shape}.")
            if create_graph:
                grad = g if g._data.dtype == out._data.dtype else g.to(out.dtype)
            else:
                grad = g._data.astype(out._data.dtype, copy=True)
        node = out.grad_fn if out.grad_fn is not None else out._get_accumulator()
        roots.append((node, out._output_nr if out.grad_fn is not None else 0, grad))
    return roots


def backend_ones_like(array):
    xp = array_module(array)
    if array.ndim == 0 and xp is np:
        return xp.array(1, dtype=array.dtype)  # the usual scalar loss: skip ones_like's Python
    # (CuPy's array(1) is a host-to-device copy, 67 us on an H200; ones is one fill kernel)
    return xp.ones(array.shape, array.dtype)


def _as_tuple(x):
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensors)/d(leaf) into every leaf's ``.grad``."""
    if grad_tensors is None and type(tensors) is Tensor and not create_graph and inputs is None:
        fn = tensors.grad_fn
        if fn is not None and tensors.requires_grad and tensors._data.ndim == 0:
            # loss.backward(): the one root and implicit gradient _root_grads would make
            run_backward([(fn, tensors._output_nr, backend_ones_like(tensors._data))],
                         retain_graph=bool(retain_graph))
            return
    if inputs is not None:
        raise NotImplementedError("backward(inputs=...) is not supported; use autograd.grad")
    tensors = _as_tuple(tensors)
    grads = _as_tuple(grad_tensors) or (None,) * len(tensors)
    if len(grads) != len(tensors):
        raise RuntimeError(f"got {len(grads)} gradients for {len(tensors)} tensors")
    if create_graph:
        run_backward_graph(_root_grads(tensors, grads, True), _retain(retain_graph, create_graph))
    else:
        run_backward(_root_grads(tensors, grads), retain_graph=bool(retain_graph))


def _retain(retain_graph, create_graph):
    """PyTorch's default: keep the graph when the backward pass itself was recorded."""
    return create_graph if retain_graph is None else bool(retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         only_inputs=True, allow_unused=False, is_grads_batched=False, materialize_grads=False):
    """d(outputs)/d(inputs) as a tuple, without touching any ``.grad``."""
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    grad_outputs = _as_tuple(grad_outputs) or (None,) * len(outputs)
    capture = {}
    for i, t in enumerate(inputs):
        if t._base is not None:
            refresh_view(t)
        if not t.requires_grad:
            raise RuntimeError(f"One of the differentiated Tensors (input {i}) does not require grad")
        key = (t.grad_fn, t._output_nr) if t.grad_fn is not None else (t._get_accumulator(), 0)
        capture[key] = i
    if create_graph:
        captured = run_backward_graph(_root_grads(outputs, grad_outputs, True),
                                      _retain(retain_graph, create_graph), capture)
    else:
        captured = run_backward(_root_grads(outputs, grad_outputs), retain_graph=bool(retain_graph),
                                capture=capture)
    result = []
    for i, (t, g) in enumerate(zip(inputs, captured)):
        if g is None:
            if materialize_grads:
                result.append(_wrap(backend_ones_like(t._data) * 0))
                continue
            if not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in "
                                   "the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(None)
        else:
            result.append(g if create_graph else _wrap(g))
    return tuple(result)
