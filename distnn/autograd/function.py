"""Recorded operations: ``Function`` (user-defined, Tensor level), ``Op`` (built-in,
array level) and the graph ``Node`` each application leaves behind as ``grad_fn``.

A node is also the ``ctx`` its forward saw: it holds what backward needs
(``save_for_backward``), the edges to the nodes of its inputs, and the version
of every saved tensor, so backward refuses values modified in place since.
Broadcast reduction and the cast back to each input's dtype happen once, in
the engine, so no op has to remember them.
"""

import functools
import itertools
import warnings
import weakref

import numpy as np

from .. import backend
from ..backend import array_module, device_of, is_gpu_array
from . import grad_mode
from .views import UNTRACKED, modify_view, refresh_view, view_record

# The engine's ready queue pops the smallest ``_seq`` first, so sequence numbers
# count down: the latest-created node runs first, and leaf accumulation (lower
# still) as soon as it is ready, as in PyTorch.
_sequence = itertools.count(-1, -1)
_ACCUMULATE_PRIORITY = -(1 << 62)


class Node:
    """A recorded operation in the backward graph (the ``grad_fn`` of its outputs)."""

    _fn = None  # the Function/Op class this node belongs to
    # Defaults live on the class so creating a node (once per op) sets one attribute.
    # One edge per input: None, or (producer node, its output_nr, the input's shape
    # and dtype), the last two for the engine's reduction and cast.
    _next = ()
    _saved = ()
    _saved_versions = ()
    _num_outputs = 1
    _output_meta = None
    _tensor_pre_hooks = None  # {output_nr: {handle_id: fn}} from Tensor.register_hook
    _pre_hooks = None
    _post_hooks = None
    _hooked = False  # set with the first hook of any kind: the engine's one check for "no hooks here"
    _freed = False
    _op_backward = False  # True for built-in ops: the engine calls _fn.backward(node, grad) itself
    needs_input_grad = ()
    xp = np  # the array module of the inputs; Op.apply sets it for non-numpy arrays
    materialize_grads = True
    _non_differentiable = ()
    _dirty = ()  # what forward passed to mark_dirty; apply takes it back

    _seq = 0  # minus the creation order (PyTorch's sequence_nr), set when the node joins a graph

    # --- what forward may call on ctx -------------------------------------
    def save_for_backward(self, *values):
        self._saved = values

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable = tuple(id(t) for t in tensors)

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors):
        """Declare the inputs forward modified in place. Each must be returned: ``apply``
        hands back that same tensor with its history replaced by this node and its
        version bumped, so graphs that saved it before refuse to backprop through it."""
        self._dirty = tensors

    @property
    def saved_tensors(self):
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Saved intermediate values of the "
                "graph are freed when you call .backward() or autograd.grad(). Specify "
                "retain_graph=True if you need to backward through the graph a second time or "
                "if you need to access saved tensors after calling backward.")
        for record in self._saved_versions:
            counter, version = record[0], record[1]
            if counter[0] != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: {_describe(record, self)}, is at "
                    f"version {counter[0]}; expected version {version} instead.")
        saved = self._saved
        if any(type(s) is _OwnOutput for s in saved):
            saved = tuple(s.unpack(self) if type(s) is _OwnOutput else s for s in saved)
        return saved

    # --- graph inspection, as in PyTorch ----------------------------------
    def name(self):
        return type(self).__name__

    @property
    def next_functions(self):
        return tuple((e[0], e[1]) if e is not None else (None, 0) for e in self._next)

    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs)`` runs after this node's backward."""
        if self._post_hooks is None:
            self._post_hooks = {}
        self._hooked = True
        return _add_hook(self._post_hooks, fn)

    def register_prehook(self, fn):
        """``fn(grad_outputs)`` runs before this node's backward; may return new grads."""
        if self._pre_hooks is None:
            self._pre_hooks = {}
        self._hooked = True
        return _add_hook(self._pre_hooks, fn)

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    # --- what the engine calls ---------------------------------------------
    def _run_backward(self, grads):
        return self._fn._backward_arrays(self, grads)


class AccumulateGrad(Node):
    """The node of a leaf tensor: sums incoming gradients into ``tensor.grad``."""

    def __init__(self, variable):
        # The leaf owns its accumulator; a weak link back avoids a reference cycle.
        self._variable = weakref.ref(variable)
        self._seq = _ACCUMULATE_PRIORITY + next(_sequence)

    @property
    def variable(self):
        return self._variable()

    def _run_backward(self, grads):
        var = self._variable()
        if var is None:  # the leaf is gone, so nobody can read its gradient
            return ()
        g = grads[0]
        if var._backward_hooks:
            g = _apply_tensor_hooks(var._backward_hooks.values(), g)
        accumulate_into(var, g)
        if var._post_accumulate_hooks:
            run_post_accumulate_hooks(var)
        return ()


def run_post_accumulate_hooks(var):
    for hook in tuple(var._post_accumulate_hooks.values()):
        hook(var)


def accumulate_into(var, g):
    """Sum gradient array ``g`` into the leaf ``var``'s ``.grad``; a fresh ``.grad``
    takes ``g`` itself when it is contiguous and writeable (later sums go in place)."""
    grad = var.grad
    if grad is None:
        flags = g.flags
        if not flags.c_contiguous or not getattr(flags, "writeable", True):
            g = g.copy()
        var.grad = _wrap(g)
    else:
        grad._data += g


class _RemovableHandle:
    _next_id = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(self._next_id)

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


RemovableHandle = _RemovableHandle


def _add_hook(hooks, fn):
    handle = _RemovableHandle(hooks)
    hooks[handle.id] = fn
    return handle


def _apply_tensor_hooks(hooks, g):
    """Run Tensor hooks on one gradient array (the first-order engine's form)."""
    return apply_tensor_hooks(hooks, _wrap(g))._data


def apply_tensor_hooks(hooks, g):
    """Run Tensor hooks (``fn(grad) -> grad | None``) on gradient Tensor ``g``."""
    for hook in tuple(hooks):
        out = hook(g)
        if out is not None:
            if not isinstance(out, Tensor):
                raise TypeError(f"Expect: a hook to return a Tensor or None, Actual: {type(out).__name__}")
            if out.shape != g.shape:
                raise RuntimeError(f"hook returned a gradient of shape {list(out.shape)}, "
                                   f"expected {list(g.shape)}")
            g = out
    return g


def grad_tuple(node, result):
    """What a backward returned as a tuple of one gradient per input of ``node``."""
    if not isinstance(result, tuple):
        result = (result,)
    if len(result) != len(node._next):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                           f"(expected {len(node._next)}, got {len(result)})")
    return result


def _make_node_class(fn_cls, suffix, base):
    return type(f"{fn_cls.__name__}{suffix}", (base,), {"_fn": fn_cls})


def _edge_of(t):
    """The edge from a node to the producer of input ``t`` (see ``Node._next``)."""
    d = t._data
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr, d.shape, d.dtype)
    return (t._accumulator or t._get_accumulator(), 0, d.shape, d.dtype)


def _check_same_device(arrays):
    devices = {str(device_of(a)) for a in arrays
               if type(a) is np.ndarray or is_gpu_array(a)}
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
        from .graph_engine import refuse_double_backward
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
        ctx._seq = next(_sequence)
        ctx._num_outputs = len(outs)
        ctx._output_meta = tuple((o._data.shape, o._data.dtype, o._data) if isinstance(o, Tensor) else None
                                 for o in wrapped)
        saved = ctx._saved or ()
        ctx._saved_versions = tuple(_version_record(t, ctx) for t in saved if isinstance(t, Tensor))
        if any(isinstance(t, Tensor) and t.grad_fn is ctx for t in saved):
            ctx._saved = tuple(_OwnOutput(t) if isinstance(t, Tensor) and t.grad_fn is ctx else t for t in saved)
        return wrapped[0] if single else wrapped

    @classmethod
    def _backward_arrays(cls, ctx, grads):
        from ..tensor import Tensor, _wrap
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


class _OpNode(Node):
    """The node class of built-in ops: backward is called directly on arrays
    (by the engine itself for a single output)."""

    _op_backward = True


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
    _node_base = _OpNode
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
                d = a._data
                arrays.append(d)
                if a.requires_grad:
                    needs.append(True)
                    if enabled:
                        record = True
                        fn = a.grad_fn
                        if fn is not None:
                            edges.append((fn, a._output_nr, d.shape, d.dtype))
                        else:
                            edges.append((a._accumulator or a._get_accumulator(), 0, d.shape, d.dtype))
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
                out = _as_arrays(out)
            result = outs = tuple(_wrap(o, record, ctx if record else None, i) for i, o in enumerate(out))
        else:
            if type(out) is not np.ndarray and not foreign:
                out = _as_array(out)
            result = _new_tensor(Tensor)  # _wrap, inlined
            result._data = out
            result._vc = [0]
            if record:
                result.requires_grad = True
                result.grad_fn = ctx
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
            ctx._seq = next(_sequence)
            ctx._next = edges
            if len(outs) > 1:
                ctx._num_outputs = len(outs)
                ctx._output_meta = tuple((o._data.shape, o._data.dtype, o._data) for o in outs)
            saved = ctx._saved
            if saved:
                # Version records for the saved arrays that belong to an input or output tensor.
                records = []
                for s in saved:
                    for i, d in enumerate(arrays):
                        if d is s:
                            t = args[i]
                            if isinstance(t, Tensor):
                                records.append((t._vc, t._vc[0], s, t._output_nr, t.grad_fn))
                                break
                    else:
                        for t in outs:
                            if t._data is s:
                                records.append((t._vc, t._vc[0], s, t._output_nr, _THIS_NODE))
                                break
                ctx._saved_versions = records
        return result

    @classmethod
    def _backward_arrays(cls, ctx, grads):
        if ctx._num_outputs == 1:
            result = cls.backward(ctx, grads[0])
        else:
            xp = ctx.xp
            grads = [xp.zeros(m[0], m[1]) if g is None else g for g, m in zip(grads, ctx._output_meta)]
            result = cls.backward(ctx, *grads)
        return grad_tuple(ctx, result)


def _as_array(out):
    """numpy reductions return scalars (np.float32), not 0-dim arrays; a Tensor always
    holds an array. A GPU array made from host inputs (a copy to the device) stays."""
    if type(out) is np.ndarray or is_gpu_array(out):
        return out
    return np.asarray(out)


def _as_arrays(out):
    if type(out) is tuple:
        return tuple(_as_array(o) for o in out)
    return _as_array(out)


# A saved tensor's version record: (shared counter, version when saved, array,
# output_nr, node that produced it), the last three only for the error message.
# The producer of an op's own output is the node holding the record, named by
# this marker rather than a reference to itself (a cycle only the GC could free).
_THIS_NODE = object()


class _OwnOutput:
    """A Function's own output among its saved tensors, kept without the tensor (whose
    ``grad_fn`` is the node: a cycle only the garbage collector could free); rebuilt,
    sharing data and version counter, when backward asks for it (as PyTorch does)."""

    __slots__ = ("data", "version_counter", "output_nr")

    def __init__(self, t):
        self.data, self.version_counter, self.output_nr = t._data, t._vc, t._output_nr

    def unpack(self, node):
        t = _wrap(self.data)
        t._vc = self.version_counter
        t.requires_grad, t.grad_fn, t._output_nr = True, node, self.output_nr
        return t


def _version_record(t, node):
    fn = t.grad_fn
    return (t._vc, t._vc[0], t._data, t._output_nr, _THIS_NODE if fn is node else fn)


def _describe(record, node):
    """How the version-check error names a saved tensor, e.g. "[torch.FloatTensor [3, 4]]"."""
    from ..tensor import _TYPE_NAMES
    _, _, array, output_nr, producer = record
    text = f"[torch.{_TYPE_NAMES.get(array.dtype.name, array.dtype.name)} {list(array.shape)}]"
    if producer is not None:
        name = type(node if producer is _THIS_NODE else producer).__name__
        text += f", which is output {output_nr} of {name}"
    return text


from ..tensor import Tensor, _new_tensor, _wrap  # noqa: E402  (tensor.py imports this module lazily)
