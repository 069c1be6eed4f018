"""``ASGD``: averaged stochastic gradient descent; SGD with a decaying step size
``eta`` whose iterates are averaged into ``ax`` once ``t0`` steps have passed;
PyTorch's update."""

import numpy as np

from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, effective_grad, new_step_counter, require_nonnegative, update_by_blocks
from .unshaped_state import UnshapedStateLoading


class ASGD(UnshapedStateLoading, Optimizer):
    """``torch.optim.ASGD``: the averaged parameters are ``optimizer.state[p]['ax']``."""

    _unshaped_state = ("eta", "mu")

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0, foreach=None,
                 maximize=False, differentiable=False, capturable=False):
        require_nonnegative(lr=lr, weight_decay=weight_decay)
        defaults = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize, "differentiable": differentiable,
                    "capturable": capturable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        # eta (the step size) and mu (the averaging rate) are float32 CPU scalars, like
        # step: the update reads them back rounded to float32, as PyTorch's does.
        state["step"] = new_step_counter()
        state["eta"] = _wrap(np.array(float(group["lr"]), dtype=np.float32))
        state["mu"] = _wrap(np.ones((), dtype=np.float32))
        state["ax"] = _wrap(xp.zeros_like(param))

    def _update_group(self, group):
        lr = float(group["lr"])
        lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
        weight_decay, maximize = group["weight_decay"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            eta, mu = state["eta"]._data, state["mu"]._data
            eta_value, mu_value = float(eta), float(mu)

            def update(param, grad, ax):
                grad, _ = effective_grad(xp, param, grad, weight_decay, maximize)
                param *= 1 - lambd * eta_value          # decay term
                param += xp.multiply(grad, -eta_value)
                if mu_value != 1:                       # average the iterates from t0 on
                    tmp = xp.subtract(param, ax)
                    tmp *= mu_value
                    ax += tmp
                else:
                    ax[...] = param

            update_by_blocks(xp, update, [param, p.grad._data, state["ax"]._data])

            # rounded to float32 even where a loaded state holds them in float64, as PyTorch
            eta[...] = np.float32(lr / ((1 + lambd * lr * step) ** alpha))
            mu[...] = np.float32(1 / max(1, step - t0))
            p._vc[0] += 1
