"""``Adamax``: Adam whose second moment is an exponentially weighted infinity
norm of the gradients; PyTorch's update."""

from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, effective_grad, new_step_counter, require_nonnegative, update_by_blocks
from .validation import require_betas


class Adamax(Optimizer):
    """``torch.optim.Adamax``."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        require_nonnegative(lr=lr, eps=eps)
        require_betas(betas)
        require_nonnegative(weight_decay=weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize, "differentiable": differentiable,
                    "capturable": capturable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["exp_avg"] = _wrap(xp.zeros_like(param))
        state["exp_inf"] = _wrap(xp.zeros_like(param))

    def _update_group(self, group):
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps, weight_decay, maximize = group["eps"], group["weight_decay"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            clr = lr / (1 - beta1 ** step)

            def update(param, grad, exp_avg, exp_inf):
                grad, _ = effective_grad(xp, param, grad, weight_decay, maximize)
                tmp = xp.subtract(grad, exp_avg)            # exp_avg.lerp_(grad, 1 - beta1)
                tmp *= 1 - beta1
                exp_avg += tmp
                xp.abs(grad, out=tmp)                       # exp_inf = max(beta2 * exp_inf, |grad| + eps)
                tmp += eps
                exp_inf *= beta2
                xp.maximum(exp_inf, tmp, out=exp_inf)
                xp.divide(exp_avg, exp_inf, out=tmp)        # param.addcdiv_(exp_avg, exp_inf, -clr)
                tmp *= -clr
                param += tmp

            update_by_blocks(xp, update, [param, p.grad._data, state["exp_avg"]._data, state["exp_inf"]._data])
            p._vc[0] += 1
