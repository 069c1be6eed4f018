"""``NAdam``: Adam with Nesterov momentum and a momentum schedule that warms up
by ``momentum_decay``, optionally with decoupled weight decay; PyTorch's update."""

import numpy as np

from ..tensor import _wrap
from .optimizer import (Optimizer, adam_grad, advance_step, new_step_counter, require_nonnegative, update_by_blocks,
                        update_moments)
from .unshaped_state import UnshapedStateLoading
from .validation import require_betas


class NAdam(UnshapedStateLoading, Optimizer):
    """``torch.optim.NAdam``; ``decoupled_weight_decay=True`` decays the weights
    directly (NAdamW) instead of adding the decay to the gradient."""

    _unshaped_state = ("mu_product",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        require_nonnegative(lr=lr, eps=eps)
        require_betas(betas)
        require_nonnegative(weight_decay=weight_decay, momentum_decay=momentum_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay, "decoupled_weight_decay": decoupled_weight_decay,
                    "maximize": maximize, "foreach": foreach, "capturable": capturable,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        # The product of the momentum schedule so far: a float32 CPU scalar, like step.
        state["mu_product"] = _wrap(np.ones((), dtype=np.float32))
        state["exp_avg"] = _wrap(xp.zeros_like(param))
        state["exp_avg_sq"] = _wrap(xp.zeros_like(param))

    def _update_group(self, group):
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps, weight_decay, momentum_decay = group["eps"], group["weight_decay"], group["momentum_decay"]
        decoupled, maximize = group["decoupled_weight_decay"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            bias_correction2 = 1 - beta2 ** step
            mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
            mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
            mu_product = state["mu_product"]._data
            mu_product *= mu                            # in the scalar's own dtype, as PyTorch
            mu_product = float(mu_product)
            mu_product_next = mu_product * mu_next

            def update(param, grad, exp_avg, exp_avg_sq):
                grad = adam_grad(xp, param, grad, lr, weight_decay, decoupled, maximize)
                tmp = update_moments(xp, grad, exp_avg, exp_avg_sq, beta1, beta2)
                denom = xp.divide(exp_avg_sq, bias_correction2)
                xp.sqrt(denom, out=denom)
                denom += eps
                xp.divide(grad, denom, out=tmp)             # the Nesterov step: current gradient ...
                tmp *= -lr * (1.0 - mu) / (1.0 - mu_product)
                param += tmp
                xp.divide(exp_avg, denom, out=tmp)          # ... and the momentum
                tmp *= (-lr * mu_next) / (1.0 - mu_product_next)
                param += tmp

            update_by_blocks(xp, update, [param, p.grad._data, state["exp_avg"]._data, state["exp_avg_sq"]._data])
            p._vc[0] += 1
