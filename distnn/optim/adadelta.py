"""``Adadelta``: steps scaled by the ratio of running RMS of past updates to the
running RMS of gradients, so no hand-tuned learning rate is needed; PyTorch's update."""

from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, effective_grad, new_step_counter, require_nonnegative, update_by_blocks


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        require_nonnegative(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        require_nonnegative(eps=eps, weight_decay=weight_decay)
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize,
                    "capturable": capturable, "foreach": foreach, "differentiable": differentiable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["square_avg"] = _wrap(xp.zeros_like(param))
        state["acc_delta"] = _wrap(xp.zeros_like(param))

    def _replays_in_a_graph(self, group):
        return True

    def _update_group(self, group):
        lr = float(group["lr"])
        rho, eps, weight_decay, maximize = group["rho"], group["eps"], group["weight_decay"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            advance_step(state)

            def update(param, grad, square_avg, acc_delta):
                grad, _ = effective_grad(xp, param, grad, weight_decay, maximize)
                tmp = xp.multiply(grad, 1 - rho)            # square_avg.mul_(rho).addcmul_(g, g, 1 - rho)
                tmp *= grad
                square_avg *= rho
                square_avg += tmp
                std = xp.add(square_avg, eps)               # std = (square_avg + eps).sqrt()
                xp.sqrt(std, out=std)
                xp.add(acc_delta, eps, out=tmp)             # delta = (acc_delta + eps).sqrt() / std * grad
                xp.sqrt(tmp, out=tmp)
                tmp /= std
                tmp *= grad
                xp.multiply(tmp, 1 - rho, out=std)          # acc_delta.mul_(rho).addcmul_(d, d, 1 - rho)
                std *= tmp
                acc_delta *= rho
                acc_delta += std
                tmp *= -lr
                param += tmp

            update_by_blocks(xp, update, [param, p.grad._data, state["square_avg"]._data, state["acc_delta"]._data])
            p._vc[0] += 1
