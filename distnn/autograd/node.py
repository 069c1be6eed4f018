"""The backward graph: a ``Node`` per recorded operation (the ``grad_fn`` of its
outputs), ``OpNode`` for built-in ops and ``AccumulateGrad`` for leaves.

A node is also the ``ctx`` its forward saw: it holds what backward needs
(``save_for_backward``), the edges to the nodes of its inputs, and the version
of every saved tensor, so backward refuses values modified in place since.
Each node kind owns ``run``, the engine's one call: gradients of its outputs in,
gradients of its inputs out. Broadcast reduction and the cast back to each
input's dtype happen once, in the engine, so no op has to remember them.
"""

import itertools
import weakref

import numpy as np

from ..tensor import _TYPE_NAMES, Tensor, _wrap

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
    _op_backward = False  # True for built-in ops (OpNode): backward runs on arrays
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
    def run(self, grads):
        """Backward on the gradient arrays of this node's outputs (None where none
        arrived): the gradient for each input, in edge order."""
        for g in grads:
            if g is not None:
                return self._fn._backward_arrays(self, grads)
        return (None,) * len(self._next)  # no gradient reached this node

    def release_saved(self):
        """Free what backward saved, once it ran (``retain_graph=False``)."""
        self._saved = None
        self._saved_versions = ()
        self._freed = True


class OpNode(Node):
    """The node of a built-in op: backward is called directly on the arrays."""

    _op_backward = True

    def run(self, grads):
        if len(grads) != 1:
            return Node.run(self, grads)
        g = grads[0]
        if g is None:
            return (None,) * len(self._next)
        results = self._fn.backward(self, g)
        if type(results) is not tuple or len(results) != len(self._next):
            results = grad_tuple(self, results)
        return results


class AccumulateGrad(Node):
    """The node of a leaf tensor: sums incoming gradients into ``tensor.grad``."""

    def __init__(self, variable):
        # The leaf owns its accumulator; a weak link back avoids a reference cycle.
        self._variable = weakref.ref(variable)
        self._seq = _ACCUMULATE_PRIORITY + next(_sequence)

    @property
    def variable(self):
        return self._variable()

    def release_saved(self):
        pass  # a leaf saves nothing

    def run(self, grads):
        var = self._variable()
        g = grads[0]
        if var is None or g is None:  # the leaf is gone (nobody can read its gradient), or none came
            return ()
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


def _edge_of(t):
    """The edge from a node to the producer of input ``t`` (see ``Node._next``)."""
    d = t._data
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr, d.shape, d.dtype)
    return (t._accumulator or t._get_accumulator(), 0, d.shape, d.dtype)


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
    _, _, array, output_nr, producer = record
    text = f"[torch.{_TYPE_NAMES.get(array.dtype.name, array.dtype.name)} {list(array.shape)}]"
    if producer is not None:
        name = type(node if producer is _THIS_NODE else producer).__name__
        text += f", which is output {output_nr} of {name}"
    return text
