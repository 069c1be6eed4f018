"""``RAdam``: Adam whose adaptive step is switched on, and scaled by a variance
rectification term, only once enough steps make the second moment reliable;
PyTorch's update, with optional decoupled weight decay."""

from ..tensor import _wrap
from .optimizer import (Optimizer, adam_grad, advance_step, new_step_counter, require_nonnegative, update_by_blocks,
                        update_moments)
from .validation import require_betas


class RAdam(Optimizer):
    """``torch.optim.RAdam``; ``decoupled_weight_decay=True`` decays the weights
    directly (as AdamW) instead of adding the decay to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        require_nonnegative(lr=lr, eps=eps)
        require_betas(betas)
        require_nonnegative(weight_decay=weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize, "foreach": foreach, "capturable": capturable,
                    "decoupled_weight_decay": decoupled_weight_decay, "differentiable": differentiable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["exp_avg"] = _wrap(xp.zeros_like(param))
        state["exp_avg_sq"] = _wrap(xp.zeros_like(param))

    def _update_group(self, group):
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps, weight_decay = group["eps"], group["weight_decay"]
        decoupled, maximize = group["decoupled_weight_decay"], group["maximize"]
        # The maximum length of the approximated simple moving average.
        rho_inf = 2 / (1 - beta2) - 1
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            bias_correction1 = 1 - beta1 ** step
            bias_correction2 = 1 - beta2 ** step
            rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
            rect = None
            if rho_t > 5.0:  # the variance is tractable: the rectified adaptive step
                rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

            def update(param, grad, exp_avg, exp_avg_sq):
                grad = adam_grad(xp, param, grad, lr, weight_decay, decoupled, maximize)
                tmp = update_moments(xp, grad, exp_avg, exp_avg_sq, beta1, beta2)
                step_update = xp.divide(exp_avg, bias_correction1)
                step_update *= lr
                if rect is not None:
                    xp.sqrt(exp_avg_sq, out=tmp)            # adaptive lr = sqrt(bc2) / (sqrt(v) + eps)
                    tmp += eps
                    xp.divide(bias_correction2 ** 0.5, tmp, out=tmp)
                    step_update *= tmp
                    step_update *= rect
                param -= step_update                        # else: plain bias-corrected momentum (SGD)

            update_by_blocks(xp, update, [param, p.grad._data, state["exp_avg"]._data, state["exp_avg_sq"]._data])
            p._vc[0] += 1
