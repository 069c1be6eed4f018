"""``Optimizer``: the base every optimizer shares: param groups, per-parameter
state, ``zero_grad`` and ``state_dict`` / ``load_state_dict`` in PyTorch's layout.

Subclasses implement ``_update_group(group)`` and update parameters by working
on their raw arrays (``p._data``) through the array module, which skips Tensor
dispatch and lets every temporary be written with ``out=``.
"""

import warnings
from collections import defaultdict

import numpy as np

from .. import backend
from ..autograd.grad_mode import enable_grad, no_grad
from ..nn.utils.grads import zero_grads
from ..tensor import Tensor, _wrap
from ..threads import in_flat_blocks


class _RequiredParameter:
    """Marks a default that every param group must set (``lr`` of a bare Optimizer)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()

# Options PyTorch accepts for speed paths distnn does not have; they are kept in
# the groups (so reprs and state dicts look like PyTorch's) but must be off.
_UNSUPPORTED_FLAGS = ("fused", "capturable", "differentiable")


class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of Tensors, of ``(name, Tensor)`` pairs, or of
    dicts (param groups) whose keys override ``defaults`` for that group.
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        for flag in _UNSUPPORTED_FLAGS:
            if defaults.get(flag):
                raise NotImplementedError(f"{type(self).__name__}({flag}=True) is not supported by distnn; "
                                          f"Expect: {flag}=False or None")
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got {params.type()}")
        self.state = defaultdict(dict)
        self.param_groups = []
        # Set by step(); an LR scheduler reads it to warn when it is stepped first.
        self._opt_called = False
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key != "params")
        return "\n".join(lines) + "\n)"

    # --- param groups -----------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group of parameters with its own options (fine-tuning, unfrozen layers)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list instead.")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(params):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        param_group["params"] = params
        if names:
            param_group["param_names"] = names

        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__module__}.{type(p).__name__}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            param_group.setdefault(name, default)
        for flag in _UNSUPPORTED_FLAGS:
            if param_group.get(flag):
                raise NotImplementedError(f"{flag}=True is not supported by distnn; Expect: {flag}=False or None")

        ids = [id(p) for p in params]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error", stacklevel=3)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for group in self.param_groups:
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # --- stepping ------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (``set_to_none``) or fill it with zeros."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        """One optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if backend.capturing():
            self._check_capturable()
        with no_grad():
            for group in self.param_groups:
                self._update_group(group)
        self._opt_called = True
        return loss

    def _update_group(self, group):
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def _replays_in_a_graph(self, group):
        """Whether a CUDA graph captured from one step of ``group`` computes every later
        step: false where the step reads host values that change per step (a bias
        correction or decay from the step count), which a graph would freeze. (Replays
        leave the host-side step counter in the state where the capture left it.)"""
        return False

    def _check_capturable(self):
        for group in self.param_groups:
            if not self._replays_in_a_graph(group):
                raise RuntimeError(
                    f"{type(self).__name__}.step() cannot be captured in a CUDA graph: its update uses host "
                    "values that change every step (step count, bias corrections), which a replay would "
                    "freeze at the captured step; step it outside the graph, or use SGD, RMSprop or Adadelta")

    def _params_with_grad(self, group):
        """(parameter, its array, that array's module, its state) for every parameter of
        ``group`` that has a gradient; an empty state is filled by ``_init_state`` first.
        The state is None where ``_keeps_state(group)`` says there is none (as in PyTorch's
        state_dict)."""
        keeps_state = self._keeps_state(group)
        for p in group["params"]:
            if p.grad is None:
                continue
            param = p._data
            xp = backend.array_module(param)
            state = None
            if keeps_state:
                state = self.state[p]
                if not state:
                    self._init_state(xp, param, state, group)
            yield p, param, xp, state

    def _keeps_state(self, group):
        return True

    def _init_state(self, xp, param, state, group):
        """Fill a parameter's empty state (nothing by default)."""

    # --- checkpoints -----------------------------------------------------------------
    def state_dict(self):
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}``.

        State tensors are the live ones (as in PyTorch); the loader copies them.
        """
        index_of = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index_of[id(k)] if isinstance(k, Tensor) else k): dict(v) for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore state saved by ``state_dict()``; state tensors are copied and cast to
        their parameter's dtype and device (``step`` stays a float32 CPU scalar)."""
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"Expect: an optimizer state dict with keys 'state' and 'param_groups', "
                               f"Actual: keys {sorted(map(str, state_dict))}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups "
                             f"(Expect: {len(self.param_groups)}, Actual: {len(saved_groups)})")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                                 f"of optimizer's group (group {i}: Expect: {len(group['params'])} params, "
                                 f"Actual: {len(saved['params'])})")
        id_map = {}
        for group, saved in zip(self.param_groups, saved_groups):
            id_map.update(zip((_as_index(i) for i in saved["params"]), group["params"]))

        state = defaultdict(dict)
        for key, values in state_dict["state"].items():
            index = _as_index(key)
            if index not in id_map:
                state[key] = _copy_plain(values)
                continue
            param = id_map[index]
            state[param] = {name: _cast_state(param, index, name, value) for name, value in values.items()}

        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {k: _copy_plain(v) for k, v in saved.items() if k != "params"}
            if isinstance(new_group.get("betas"), list):  # serializers may turn tuples into lists
                new_group["betas"] = tuple(new_group["betas"])
            for name, default in self.defaults.items():
                new_group.setdefault(name, default)
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            new_groups.append(new_group)
        self.state = state
        self.param_groups = new_groups


def _as_index(key):
    """State keys are ints; a text serializer may have turned them into strings."""
    if isinstance(key, str) and key.isdigit():
        return int(key)
    return key


def _cast_state(param, index, name, value):
    """A private copy of one saved state value, on the parameter's device and dtype."""
    if isinstance(value, np.ndarray):
        value = _wrap(value)
    if name == "step":
        # Like PyTorch, the step count lives on the CPU as a float32 scalar.
        arr = backend.to_numpy(value._data) if isinstance(value, Tensor) else np.asarray(value)
        return _wrap(np.array(arr, dtype=np.float32).reshape(()))
    if not isinstance(value, Tensor):
        return _copy_plain(value)
    if tuple(value.shape) != tuple(param.shape):
        raise ValueError(f"loaded state '{name}' of parameter {index} has the wrong shape "
                         f"(Expect: {tuple(param.shape)}, Actual: {tuple(value.shape)})")
    arr = backend.move_to(value._data, param.device)
    dtype = param._data.dtype if param._data.dtype.kind == "f" else arr.dtype
    return _wrap(arr.astype(dtype, copy=True))


def _copy_plain(value):
    """Copy nested dicts / lists / tuples, cloning Tensors, so nothing aliases the input."""
    if isinstance(value, Tensor):
        return _wrap(value._data.copy())
    if isinstance(value, dict):
        return {k: _copy_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_plain(v) for v in value)
    return value


def effective_grad(xp, param, grad, weight_decay, maximize):
    """``-grad if maximize`` plus ``weight_decay * param`` (PyTorch's coupled decay).

    Returns ``(array, owned)``: ``owned`` says the array is a fresh temporary the
    caller may overwrite; otherwise it is the gradient itself and is read-only.
    """
    if weight_decay != 0:
        out = xp.multiply(param, weight_decay)
        if maximize:
            xp.subtract(out, grad, out=out)
        else:
            out += grad
        return out, True
    if maximize:
        return xp.negative(grad), True
    return grad, False


def adam_grad(xp, param, grad, lr, weight_decay, decoupled, maximize):
    """The gradient an Adam-family step uses: decoupled (AdamW's) weight decay shrinks
    ``param`` in place by ``lr * weight_decay``, coupled decay is added to the gradient."""
    if weight_decay != 0 and decoupled:
        param *= 1 - lr * weight_decay
        weight_decay = 0
    return effective_grad(xp, param, grad, weight_decay, maximize)[0]


def update_moments(xp, grad, exp_avg, exp_avg_sq, beta1, beta2):
    """Adam's moment estimates, in place: ``exp_avg.lerp_(grad, 1 - beta1)`` and
    ``exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)``. Returns the scratch
    array it used, for the caller's own temporaries."""
    tmp = xp.subtract(grad, exp_avg)
    tmp *= 1 - beta1
    exp_avg += tmp
    xp.multiply(grad, 1 - beta2, out=tmp)
    tmp *= grad
    exp_avg_sq *= beta2
    exp_avg_sq += tmp
    return tmp


# Big parameters go through an update 128K elements at a time over the intra-op
# threads: its passes then run in cache (numbers in adam.py, whose own sizes these are).
_BLOCK_ELEMENTS = 1 << 17
_BLOCKED_MIN_ELEMENTS = 1 << 18


def update_by_blocks(xp, update, arrays):
    """``update(*arrays)``, an elementwise update writing into some of the arrays (the
    parameter, its gradient, its state), by flat blocks (``threads.in_flat_blocks``)."""
    in_flat_blocks(xp, update, arrays, _BLOCK_ELEMENTS, _BLOCKED_MIN_ELEMENTS)


def advance_step(state):
    """Add one to the per-parameter float32 ``step`` counter and return its value."""
    step = state["step"]._data
    step += 1
    return float(step)


def new_step_counter():
    return _wrap(np.zeros((), dtype=np.float32))


_LABELS = {"lr": "learning rate", "eps": "epsilon value"}


def require_nonnegative(**values):
    """PyTorch's constructor checks: ``ValueError("Invalid learning rate: -1")`` and the like."""
    for name, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {_LABELS.get(name, name + ' value')}: {value}")
