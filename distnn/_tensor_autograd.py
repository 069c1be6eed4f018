"""The autograd methods of ``Tensor``: ``requires_grad_``, ``detach``, ``backward``,
tensor hooks and ``retain_grad``, kept apart from the rest of the class."""

from . import autograd
from .autograd.node import AccumulateGrad, _add_hook
from .tensor import _wrap


class AutogradMethods:
    """Attached to ``Tensor`` by ``_tensor_methods.py``."""

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self._data.dtype.kind not in "fc":
            raise RuntimeError("only Tensors of floating point and complex dtype can require gradients")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want "
                               "to use a computed variable in a subgraph that doesn't require "
                               "differentiation use var_no_grad = var.detach().")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        out = _wrap(self._data)
        out._vc = self._vc
        return out

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        autograd.backward(self, gradient, retain_graph, create_graph, inputs)

    def register_hook(self, hook):
        """``hook(grad) -> Tensor | None`` runs when this tensor's gradient is computed."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            if self._backward_hooks is None:
                self._backward_hooks = {}
            return _add_hook(self._backward_hooks, hook)
        node = self.grad_fn
        if node._tensor_pre_hooks is None:
            node._tensor_pre_hooks = {}
        node._hooked = True
        return _add_hook(node._tensor_pre_hooks.setdefault(self._output_nr, {}), hook)

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor)`` runs after a leaf's ``.grad`` was accumulated (DDP uses this)."""
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_accumulate_hooks is None:
            self._post_accumulate_hooks = {}
        return _add_hook(self._post_accumulate_hooks, hook)

    def retain_grad(self):
        if self.grad_fn is None:
            return
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._retains_grad:
            return
        self._retains_grad = True

        def store(grad):
            if self.grad is None:
                self.grad = _wrap(grad._data.copy())
            else:
                self.grad = _wrap(self.grad._data + grad._data)
        self.register_hook(store)

    @property
    def retains_grad(self):
        return bool(self._retains_grad)

    def _get_accumulator(self):
        acc = self._accumulator
        if acc is None:
            acc = self._accumulator = AccumulateGrad(self)
        return acc
