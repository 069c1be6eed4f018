"""Loading state entries that are not shaped like their parameter: ASGD's ``eta``
and ``mu``, NAdam's ``mu_product`` (0-d scalars) and LBFGS's flat history (vectors
of all parameters, lists of them, plain numbers). ``Optimizer.load_state_dict``
checks every state tensor against its parameter's shape; these skip that check
and, as in PyTorch, are copied and cast to the parameter's floating dtype."""

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap
from .optimizer import _as_index, _copy_plain


class UnshapedStateLoading:
    """Mixin for an ``Optimizer`` whose ``_unshaped_state`` names such state keys."""

    _unshaped_state = ()

    def load_state_dict(self, state_dict):
        if "state" not in state_dict or "param_groups" not in state_dict:
            return super().load_state_dict(state_dict)  # which says what is missing
        shaped, unshaped = {}, {}
        for key, values in state_dict["state"].items():
            shaped[key] = {n: v for n, v in values.items() if n not in self._unshaped_state}
            unshaped[key] = {n: v for n, v in values.items() if n in self._unshaped_state}
        super().load_state_dict({**state_dict, "state": shaped})
        id_map = {}
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            id_map.update(zip((_as_index(i) for i in saved["params"]), group["params"]))
        for key, values in unshaped.items():
            param = id_map.get(_as_index(key))
            if param is None:
                self.state[key].update(_copy_plain(values))
                continue
            self.state[param].update({name: _cast_like(param, value) for name, value in values.items()})


def _cast_like(param, value):
    """A copy of ``value`` (a Tensor, array, list of them or plain data) with its
    arrays in ``param``'s floating dtype; 0-d scalars stay on the CPU, like ``step``."""
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_like(param, v) for v in value)
    if isinstance(value, np.ndarray):
        value = _wrap(value)
    if not isinstance(value, Tensor):
        return _copy_plain(value)
    arr = value._data
    arr = backend.to_numpy(arr) if arr.ndim == 0 else backend.move_to(arr, param.device)
    dtype = param._data.dtype if param._data.dtype.kind == "f" else arr.dtype
    return _wrap(arr.astype(dtype, copy=True))
