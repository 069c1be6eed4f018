"""Recording operations: ``Function`` (user-defined, on Tensors) and ``Op``
(built-in, on raw arrays); ``apply`` runs forward and, when gradients are
recorded, leaves a node (``node.py``) behind as the outputs' ``grad_fn``.
"""

import functools
import warnings

import numpy as np

from .. import backend
from ..backend import array_module, as_array, device_of, is_gpu_array
from ..tensor import Tensor, _wrap
from . import grad_mode
from .node import Node, OpNode, _edge_of, _OwnOutput, _sequence, _version_record, grad_tuple
from .views import UNTRACKED, modify_view, refresh_view, view_record


def _make_node_class(fn_cls, suffix, base):
    return type(f"{fn_cls.__name__}{suffix}", (base,), {"_fn": fn_cls})


def _check_same_device(arrays):
    """Every numpy and GPU array among ``arrays`` on one device (GPUs by index; a
    string per array cost 10 us an op on a GPU step)."""
    first = None
    for a in arrays:
        if type(a) is np.ndarray:
            where = -1
        elif is_gpu_array(a):
            where = a.device.id
        else:
            continue
        if first is None:
            first = where
        elif where != first:
            break
    else:
        return
    devices = {str(device_of(a)) for a in arrays if type(a) is np.ndarray or is_gpu_array(a)}
    if len(devices) > 1:
        a, b = sorted(devices)[:2]
        raise RuntimeError("Expected all tensors to be on the same device, but found at least "
                           f"two devices, {a} and {b}!")


def once_differentiable(backward):
    """Decorate a Function's ``backward`` that is not itself differentiable (it works on
    ``.numpy()`` or in place): it runs without recording, and under ``create_graph=True``
    its gradients refuse to be differentiated again, naming the Function, rather than
    silently giving a zero second derivative."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with grad_mode.no_grad():
            result = backward(ctx, *grads)
        recorded = [g for g in grads if isinstance(g, Tensor) and g.requires_grad]
        if not grad_mode.is_grad_enabled() or not (recorded or any(ctx.needs_input_grad)):
            return result
        single = not isinstance(result, tuple)
        results = (result,) if single else result
        arrays = [r._data if isinstance(r, Tensor) else None for r in results]
        refused = refuse_double_backward(type(ctx)._fn, ctx, arrays, grads)
        refused = tuple(r if isinstance(o, Tensor) else o for r, o in zip(refused, results))
        return refused[0] if single else refused
    return wrapper


class Function:
    """A user-defined differentiable operation, as ``torch.autograd.Function``.

    Subclasses write ``forward(ctx, *args)`` on Tensors and
    ``backward(ctx, *grad_outputs)`` returning one gradient (or None) per
    forward argument, and call it with ``MyFn.apply(...)``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._Node = _make_node_class(cls, cls._node_suffix, cls._node_base)

    _node_suffix = "Backward"
    _node_base = Node

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement the backward function for custom autograd.Function.")

    @classmethod
    def apply(cls, *args, **kwargs):
        if grad_mode._state.enabled:
            for a in args:
                if isinstance(a, Tensor) and a._base is not None:
                    refresh_view(a)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = grad_mode._state.enabled and any(needs)
        ctx = cls._Node()
        ctx.needs_input_grad = needs
        with grad_mode.no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        inputs = {id(a) for a in args if isinstance(a, Tensor)}
        dirty = _take_dirty(ctx, inputs, outs, record) if ctx._dirty else ()
        if not record:
            return out
        # The edges go to the inputs' histories before this call: a dirty input is rebased below.
        ctx._next = tuple(_edge_of(a) if r else None for a, r in zip(args, needs))
        wrapped = tuple(_as_output(o, i, ctx, id(o) in inputs, id(o) in dirty) if isinstance(o, Tensor) else o
                        for i, o in enumerate(outs))
        for o in wrapped:
            if isinstance(o, Tensor) and id(o) in dirty and o._base is not None:
                modify_view(o, _wrap(o._data, True, ctx, o._output_nr))  # the base's history takes it too
        join_graph(ctx, ctx._next, wrapped)
        if len(wrapped) == 1:  # materialize_grads needs the shape of a single output too
            ctx._output_meta = _output_meta(wrapped)
        saved = ctx._saved or ()
        ctx._saved_versions = tuple(_version_record(t, ctx) for t in saved if isinstance(t, Tensor))
        if any(isinstance(t, Tensor) and t.grad_fn is ctx for t in saved):
            ctx._saved = tuple(_OwnOutput(t) if isinstance(t, Tensor) and t.grad_fn is ctx else t for t in saved)
        return wrapped[0] if single else wrapped

    @classmethod
    def _backward_arrays(cls, ctx, grads):
        tensors = []
        for g, meta in zip(grads, ctx._output_meta):
            if g is None and meta is not None and ctx.materialize_grads:
                g = array_module(meta[2]).zeros(meta[0], meta[1])
            tensors.append(None if g is None else _wrap(g))
        result = grad_tuple(ctx, cls.backward(ctx, *tensors))
        return tuple(r._data if isinstance(r, Tensor) else r for r in result)


def _take_dirty(ctx, inputs, outs, record):
    """Check what forward marked dirty and bump its version counters (shared with its views);
    returns their ids. The node lets go of them: a dirty output's ``grad_fn`` is the node."""
    dirty = ctx._dirty
    del ctx._dirty
    returned = {id(o) for o in outs}
    if any(id(t) not in returned for t in dirty):
        raise RuntimeError("Some elements marked as dirty during the forward method were not returned as "
                           "output. The inputs that are modified inplace must all be outputs of the Function.")
    for t in dirty:
        if record:
            _check_can_rebase(t)
        if id(t) not in inputs:
            warnings.warn("Only input Tensors should be given to ctx.mark_dirty(). If a Tensor is not an "
                          "input, there is no need to pass it to mark_dirty().", stacklevel=3)
        t._vc[0] += 1
    return {id(t) for t in dirty}


def _check_can_rebase(t):
    if t.requires_grad and t.grad_fn is None:
        raise RuntimeError("a leaf Variable that requires grad has been used in an in-place operation.")
    base = t._base
    if base is not None and base.requires_grad:
        if base.grad_fn is None:
            raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                               "operation.")


def _as_output(t, output_nr, node, is_input, is_dirty):
    """Forward's output ``t`` as the Function returns it, with ``node`` as its ``grad_fn``.

    A dirty input is rebased in place (the same object comes back). Any other input
    comes back as a new alias of it (same data, version counter and base), so the
    input keeps its own history, as in PyTorch."""
    if id(t) in node._non_differentiable:
        return t.detach() if is_input else t
    if is_input and not is_dirty:
        alias = _wrap(t._data)
        alias._vc = t._vc
        alias._base, alias._view_replay = view_record(t, None, (type(node)._fn.__name__,), {}, output_nr)
        alias._view_fn = alias._base.grad_fn
        t = alias
    t.requires_grad = True
    t.grad_fn = node
    t._output_nr = output_nr
    return t


class Op(Function):
    """A built-in operation: ``forward(ctx, *arrays, **params)`` and
    ``backward(ctx, *grad_arrays)`` work on raw xp arrays (numpy or cupy).

    Tensor arguments are unwrapped before forward; other positional
    arguments (Python scalars) pass through. ``ctx.xp`` is the array module of
    the inputs. Arrays backward needs go through ``ctx.save_for_backward``;
    saved inputs and outputs are version-checked automatically. An op whose
    output is a view of its first input sets ``is_view = True``. Backward
    returns one array (or None) per positional forward argument and must not
    return the same array object twice.
    """

    _node_suffix = "Backward0"
    _node_base = OpNode
    is_view = False
    # True once backward has been audited to run on GraphArrays (graph_xp.py) for
    # create_graph=True: no in-place writes, and no saved intermediate that depends on
    # an input (it would be a constant there). Checked by gradgradcheck in the op tests.
    double_backward = False

    @classmethod
    def apply(cls, *args, **kwargs):
        # The per-op hot path: everything here runs once per recorded operation.
        enabled = grad_mode._state.enabled
        arrays = []
        needs = []
        edges = []  # see Node._next; used only when the op is recorded
        record = False
        for a in args:
            if isinstance(a, Tensor):
                if a._base is not None and enabled and a._view_fn is not a._base.grad_fn:
                    refresh_view(a)  # its base was modified in place since the view was made
                arrays.append(a._data)
                if a.requires_grad:
                    needs.append(True)
                    if enabled:
                        record = True
                        edges.append(_edge_of(a))
                    continue
                needs.append(False)
            else:
                arrays.append(a)
                needs.append(False)
            edges.append(None)
        ctx = cls._Node()
        ctx.needs_input_grad = needs
        # Arrays other than numpy's exist only once CuPy has been loaded.
        foreign = backend._cupy is not None and any(is_gpu_array(d) for d in arrays)
        if foreign:
            _check_same_device(arrays)
            ctx.xp = array_module(next(d for d in arrays if is_gpu_array(d)))
        out = cls.forward(ctx, *arrays, **kwargs)
        if type(out) is tuple:
            if not foreign:
                out = tuple(as_array(o) for o in out)
            result = outs = tuple(_wrap(o, record, ctx if record else None, i) for i, o in enumerate(out))
        else:
            if type(out) is not np.ndarray and not foreign:
                out = as_array(out)
            result = _wrap(out, record, ctx)
            outs = (result,)
        if cls.is_view:
            base = args[0]
            several = type(result) is tuple
            for i, o in enumerate(outs):
                o._vc = base._vc
                if enabled:
                    o._base, o._view_replay = view_record(base, cls, args[1:], kwargs, i if several else None)
                    o._view_fn = o._base.grad_fn
                else:
                    o._base, o._view_fn = base._base if base._base is not None else base, UNTRACKED
        if record:
            join_graph(ctx, edges, outs)
            if ctx._saved:
                ctx._saved_versions = _saved_versions(ctx._saved, args, arrays, outs, ctx)
        return result

    @classmethod
    def _backward_arrays(cls, ctx, grads):
        """Several outputs (``OpNode.run`` calls backward itself for one): zeros for the
        outputs no gradient reached."""
        xp = ctx.xp
        grads = [xp.zeros(m[0], m[1]) if g is None else g for g, m in zip(grads, ctx._output_meta)]
        return grad_tuple(ctx, cls.backward(ctx, *grads))


def join_graph(ctx, edges, outs):
    """Make node ``ctx`` part of the graph, for either ``apply``: its place in the
    engine's order, its edges to the inputs' producers, and what it knows of several outputs."""
    ctx._seq = next(_sequence)
    ctx._next = edges
    if len(outs) > 1:
        ctx._num_outputs = len(outs)
        ctx._output_meta = _output_meta(outs)


def _output_meta(outs):
    return tuple((o._data.shape, o._data.dtype, o._data) if isinstance(o, Tensor) else None for o in outs)


def _saved_versions(saved, args, arrays, outs, ctx):
    """An op's version records (node.py) for the saved arrays that belong to an input or an output."""
    records = []
    for s in saved:
        for i, d in enumerate(arrays):
            if d is s and isinstance(args[i], Tensor):
                records.append(_version_record(args[i], ctx))
                break
        else:
            for t in outs:
                if t._data is s:
                    records.append(_version_record(t, ctx))
                    break
    return records


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
    inputs = [g for g in grads if g is not None and g.requires_grad]
    refusal = DoubleBackwardRefused._Node()
    refusal.op_name = f"{fn.__name__}{fn._node_suffix}"
    refusal._next = tuple(_edge_of(g) for g in inputs)
    refusal.needs_input_grad = (True,) * len(inputs)
    refusal._seq = next(_sequence)
    refusal._num_outputs = len(arrays)
    refusal._output_meta = tuple(None if a is None else (a.shape, a.dtype, a) for a in arrays)
    return tuple(None if a is None else _wrap(a, True, refusal, i) for i, a in enumerate(arrays))
