"""Views and in-place ops, as PyTorch keeps them consistent.

A view op's output shares its base's data and version counter and remembers
how it was made from its root base (``_view_replay``: the chain of view ops)
and the root's ``grad_fn`` at that time (``_view_fn``). Two things follow:

- When the base's history changes afterwards (an in-place op on the base, or
  ``mark_dirty``), the view's ``grad_fn`` is regenerated from the base's new
  history the next time the view is used, so it does not backprop through the
  stale one.
- An in-place op on a view writes the new values into the base's history
  (PyTorch's CopySlices, here an ``index_put`` at the view's positions), rebases
  the base onto it, and regenerates the view from the base.
"""

from ..backend import array_module
from ..tensor import _wrap
from . import grad_mode

# ``_view_fn`` of a view made without grad mode: such a view is never regenerated.
UNTRACKED = object()


def view_record(base, op, args, kwargs, index):
    """``(root base, replay chain)`` of a view made by ``op.apply(base, *args, **kwargs)``
    (``index``: which output, for ops returning several views; ``op`` None: an input a
    custom Function returned as is); the chain is None when ``base`` is itself a view
    that cannot be replayed."""
    root = base._base if base._base is not None else base
    if base._base is not None and base._view_replay is None:
        return root, None
    return root, (base._view_replay or ()) + ((op, args, kwargs, index),)


def refresh_view(t):
    """Give view ``t`` a ``grad_fn`` from its root's current history, when that changed."""
    root = t._base
    if t._view_fn is UNTRACKED or t._view_fn is root.grad_fn:
        return
    if t._view_replay is None:
        raise RuntimeError("a view was used after its base was modified in place, but distnn cannot regenerate "
                           "its history (it is not the output of a view op): clone() it before modifying the base")
    for op, args, _, index in t._view_replay:
        if op is None:
            raise RuntimeError(
                f"Output {index} of {args[0]} is a view and its base or another view of its base has been modified "
                "inplace. This view was created inside a custom Function (or because an input was returned as-is) "
                "and the autograd logic to handle view+inplace would override the custom backward associated with "
                "the custom Function, leading to incorrect gradients. This behavior is forbidden. You can fix this "
                "by cloning the output of the custom Function.")
    with grad_mode.enable_grad():
        current = _replay(root, t._view_replay)
    t.grad_fn, t._output_nr, t.requires_grad = current.grad_fn, current._output_nr, current.requires_grad
    t._view_fn = root.grad_fn


def _replay(root, chain):
    current = root
    for op, args, kwargs, index in chain:
        if op is None:  # an input a custom Function returned as is (refresh_view refuses those)
            continue
        out = op.apply(current, *args, **kwargs)
        current = out if index is None else out[index]
    return current


def modify_view(view, new_value):
    """Rebase an in-place op's result ``new_value`` (recorded, the view's new values) into
    the view's root base: the root's history becomes ``index_put`` of those values at the
    view's positions, the data is written through the view, and the view is regenerated."""
    root = view._base
    if root.requires_grad and root.grad_fn is None:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    if view._view_fn is UNTRACKED:
        raise RuntimeError("A view was created in no_grad mode and is being modified inplace with grad mode "
                           "enabled. This view is the output of a function that returns multiple views or was "
                           "created in no_grad mode; clone() it first.")
    if view._view_replay and view._view_replay[-1][3] is not None:
        op = view._view_replay[-1][0]
        raise RuntimeError(f"Output {view._view_replay[-1][3]} of {op.__name__} is a view and is being modified "
                           "inplace. This view is the output of a function that returns multiple views. Such "
                           "functions do not allow the output views to be modified inplace. You should replace "
                           "the inplace operation by an out-of-place one.")
    if view._view_replay is None:
        raise RuntimeError("in-place modification of a view that is not the output of a view op is not "
                           "supported when gradients are recorded: clone() it first")
    xp = array_module(root._data)
    with grad_mode.no_grad():
        positions = _replay(_wrap(xp.arange(root._data.size).reshape(root._data.shape)), view._view_replay)._data
    if xp.unique(positions).size != positions.size:
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a "
                           "single memory location. Please clone() the tensor before performing the operation.")
    # Tensor methods, not ops: this layer sits below ops, whose methods tensor_methods.py attached.
    flat = root.reshape(-1).index_put((_wrap(positions.reshape(-1)),), new_value.reshape(-1))
    rebased = flat.reshape(root._data.shape)
    view._data[...] = new_value._data
    root.grad_fn, root._output_nr, root.requires_grad = rebased.grad_fn, rebased._output_nr, True
    refresh_view(view)
