"""How a module call runs its hooks: forward pre-hooks, forward hooks, the
global (every-module) hooks, and full backward hooks, which wrap the module's
inputs and outputs in identity nodes (as ``torch.utils.hooks.BackwardHook``
does) so ``grad_input`` really is the gradient w.r.t. the module's inputs.
"""

import warnings
from collections import OrderedDict

from ...autograd import grad_mode
from ...autograd.function import Function
from ...autograd.node import RemovableHandle
from ...tensor import Tensor, _wrap

# Hooks every module runs (debugging/profiling), as in torch.nn.modules.module.
_global_forward_pre_hooks = OrderedDict()
_global_forward_hooks = OrderedDict()
_global_forward_hooks_with_kwargs = OrderedDict()
_global_forward_hooks_always_called = OrderedDict()
_global_backward_pre_hooks = OrderedDict()
_global_backward_hooks = OrderedDict()


class HookHandle(RemovableHandle):
    """``RemovableHandle`` that also drops the hook's entries in flag dicts
    (``with_kwargs``, ``always_call``) when removed."""

    def __init__(self, hooks, *flag_dicts):
        super().__init__(hooks)
        self._flag_dicts = flag_dicts

    def remove(self):
        super().remove()
        for flags in self._flag_dicts:
            flags.pop(self.id, None)


def add_hook(hooks, hook, prepend=False, flag_dicts=()):
    """Store ``hook`` in the ordered dict ``hooks`` and return its handle."""
    handle = HookHandle(hooks, *flag_dicts)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


def register_module_forward_pre_hook(hook):
    """``hook(module, args)`` before every module's forward."""
    return add_hook(_global_forward_pre_hooks, hook)


def register_module_forward_hook(hook, *, with_kwargs=False, always_call=False):
    """``hook(module, args, output)`` after every module's forward."""
    handle = add_hook(_global_forward_hooks, hook, flag_dicts=(
        _global_forward_hooks_with_kwargs, _global_forward_hooks_always_called))
    if with_kwargs:
        _global_forward_hooks_with_kwargs[handle.id] = True
    if always_call:
        _global_forward_hooks_always_called[handle.id] = True
    return handle


def register_module_full_backward_pre_hook(hook):
    """``hook(module, grad_output)`` for every module."""
    return add_hook(_global_backward_pre_hooks, hook)


def register_module_full_backward_hook(hook):
    """``hook(module, grad_input, grad_output)`` for every module."""
    return add_hook(_global_backward_hooks, hook)


register_module_backward_hook = register_module_full_backward_hook


def call_with_hooks(module, args, kwargs):
    """``module(*args, **kwargs)`` with its forward pre-hooks, forward hooks and backward hooks."""
    result = None
    called_always = set()
    try:
        for hook_id, hook in (*_global_forward_pre_hooks.items(), *module._forward_pre_hooks.items()):
            if hook_id in module._forward_pre_hooks_with_kwargs:
                out = hook(module, args, kwargs)
                if out is not None:
                    if not (isinstance(out, tuple) and len(out) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {out}.")
                    args, kwargs = out
            else:
                out = hook(module, args)
                if out is not None:
                    args = out if isinstance(out, tuple) else (out,)
        bw_hook = None
        full_hooks = [*_global_backward_hooks.values(), *module._backward_hooks.values()]
        pre_hooks = [*_global_backward_pre_hooks.values(), *module._backward_pre_hooks.values()]
        if full_hooks or pre_hooks:
            bw_hook = BackwardHook(module, full_hooks, pre_hooks)
            args = bw_hook.setup_input_hook(args)
        result = module.forward(*args, **kwargs)
        for hook_id, hook in (*_global_forward_hooks.items(), *module._forward_hooks.items()):
            if hook_id in module._forward_hooks_always_called or hook_id in _global_forward_hooks_always_called:
                called_always.add(hook_id)
            if hook_id in module._forward_hooks_with_kwargs or hook_id in _global_forward_hooks_with_kwargs:
                out = hook(module, args, kwargs, result)
            else:
                out = hook(module, args, result)
            if out is not None:
                result = out
        if bw_hook is not None:
            if not isinstance(result, (Tensor, tuple)):
                warnings.warn("For backward hooks to be called, module output should be a Tensor or "
                              f"a tuple of Tensors but received {type(result)}", stacklevel=3)
            result = bw_hook.setup_output_hook(result)
        return result
    except Exception:
        _run_always_called_hooks(module, args, kwargs, result, called_always)
        raise


def _run_always_called_hooks(module, args, kwargs, result, already_called):
    """After forward raised: the ``always_call`` forward hooks not yet run, errors silenced."""
    for hook_id, hook in (*_global_forward_hooks.items(), *module._forward_hooks.items()):
        always = hook_id in module._forward_hooks_always_called or hook_id in _global_forward_hooks_always_called
        if not always or hook_id in already_called:
            continue
        try:
            if hook_id in module._forward_hooks_with_kwargs:
                out = hook(module, args, kwargs, result)
            else:
                out = hook(module, args, result)
            if out is not None:
                result = out
        except Exception as exc:
            warnings.warn("module forward hook with ``always_call=True`` raised an exception that "
                          f"was silenced as another error was raised in forward: {exc}", stacklevel=3)


class BackwardHookFunction(Function):
    """Identity on the tensors given; its backward hands the gradients to ``on_backward``."""

    @staticmethod
    def forward(ctx, *tensors, on_backward, materialize):
        ctx.set_materialize_grads(materialize)
        ctx.on_backward = on_backward
        outs = tuple(t.detach() for t in tensors)
        ctx.mark_non_differentiable(*(o for o, t in zip(outs, tensors) if not t.requires_grad))
        return outs

    @staticmethod
    def backward(ctx, *grads):
        return ctx.on_backward(grads)


def _pack_with_none(indices, values, size):
    packed = [None] * size
    for i, v in zip(indices, values):
        packed[i] = v
    return tuple(packed)


def _fresh(grad):
    # The hooks may keep what they were given; what flows on (into a leaf's
    # .grad, accumulated in place later) must not alias it. A recorded gradient
    # (create_graph=True) is cloned by an op, so it stays differentiable.
    if grad is None:
        return None
    return grad.clone() if grad.requires_grad else _wrap(grad._data.copy())


class BackwardHook:
    """One module call's full backward hooks and backward pre-hooks.

    The output identity's backward records ``grad_output`` (after the
    pre-hooks); the input identity's backward then calls
    ``hook(module, grad_input, grad_output)`` with both.
    """

    def __init__(self, module, user_hooks, user_pre_hooks):
        self.module = module
        self.user_hooks = user_hooks
        self.user_pre_hooks = user_pre_hooks
        self.grad_outputs = None
        self.n_inputs = 0
        self.input_index = None
        self.n_outputs = 0
        self.output_index = None

    def setup_input_hook(self, args):
        # As in PyTorch, grad_input holds zeros (not None) for a tensor input that
        # got no gradient, once any input requires grad.
        self.n_inputs = len(args)
        args, self.input_index = self._wrap_tensors(args, self._on_grad_input, materialize=True)
        return args

    def setup_output_hook(self, result):
        # ...while grad_output holds None for an output that got no gradient.
        is_tuple = isinstance(result, tuple)
        outputs = result if is_tuple else (result,)
        self.n_outputs = len(outputs)
        outputs, self.output_index = self._wrap_tensors(outputs, self._on_grad_output, materialize=False)
        return outputs if is_tuple else outputs[0]

    @staticmethod
    def _wrap_tensors(values, on_backward, materialize):
        """Pass the tensors of ``values`` through one identity node, when any requires grad."""
        index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
        if not any(values[i].requires_grad for i in index) or not grad_mode.is_grad_enabled():
            return values, None
        wrapped = BackwardHookFunction.apply(*(values[i] for i in index), on_backward=on_backward,
                                             materialize=materialize)
        items = list(values)
        for i, w in zip(index, wrapped):
            items[i] = w
        return (tuple(items) if type(values) is tuple else type(values)(*items)), index

    def _on_grad_output(self, grads):
        self.grad_outputs = _pack_with_none(self.output_index, grads, self.n_outputs)
        for pre_hook in self.user_pre_hooks:
            replaced = pre_hook(self.module, self.grad_outputs)
            if replaced is None:
                continue
            if len(replaced) != len(self.grad_outputs):
                raise RuntimeError("Backward pre hook returned an invalid number of grad_output, "
                                   f"got {len(replaced)}, but expected {len(self.grad_outputs)}")
            self.grad_outputs = tuple(replaced)
        grad_outputs = self.grad_outputs
        if self.input_index is None:  # no input needs a gradient: the hooks fire here
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients.", stacklevel=2)
            grad_inputs = (None,) * self.n_inputs
            for hook in self.user_hooks:
                res = hook(self.module, grad_inputs, grad_outputs)
                if res is not None and not (isinstance(res, tuple) and all(r is None for r in res)):
                    raise RuntimeError("Backward hook for Modules where no input requires gradient "
                                       "should always return None or None for all gradients.")
            self.grad_outputs = None
        return tuple(_fresh(grad_outputs[i]) for i in self.output_index)

    def _on_grad_input(self, grads):
        if self.grad_outputs is None:  # the gradient did not pass through the module's outputs
            return grads
        grad_inputs = _pack_with_none(self.input_index, grads, self.n_inputs)
        for hook in self.user_hooks:
            replaced = hook(self.module, grad_inputs, self.grad_outputs)
            if replaced is None:
                continue
            if len(replaced) != len(grad_inputs):
                raise RuntimeError("Backward hook returned an invalid number of grad_input, "
                                   f"got {len(replaced)}, but expected {len(grad_inputs)}")
            grad_inputs = tuple(replaced)
        self.grad_outputs = None
        return tuple(_fresh(grad_inputs[i]) for i in self.input_index)
