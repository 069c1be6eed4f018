"""``RMSprop``: divide the gradient by a running root-mean-square of recent
gradients, optionally centered and with momentum; PyTorch's update."""

from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, effective_grad, new_step_counter, require_nonnegative, update_by_blocks


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        require_nonnegative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay, "capturable": capturable, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["square_avg"] = _wrap(xp.zeros_like(param))
        if group["momentum"] > 0:
            state["momentum_buffer"] = _wrap(xp.zeros_like(param))
        if group["centered"]:
            state["grad_avg"] = _wrap(xp.zeros_like(param))

    def _replays_in_a_graph(self, group):
        return True

    def _update_group(self, group):
        lr = float(group["lr"])
        alpha, eps, weight_decay = group["alpha"], group["eps"], group["weight_decay"]
        momentum, centered, maximize = group["momentum"], group["centered"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            advance_step(state)

            def update(param, grad, square_avg, *rest):
                grad, _ = effective_grad(xp, param, grad, weight_decay, maximize)
                tmp = xp.multiply(grad, 1 - alpha)          # square_avg.mul_(a).addcmul_(g, g, 1 - a)
                tmp *= grad
                square_avg *= alpha
                square_avg += tmp
                if centered:
                    grad_avg = rest[0]
                    xp.subtract(grad, grad_avg, out=tmp)    # grad_avg.lerp_(grad, 1 - alpha)
                    tmp *= 1 - alpha
                    grad_avg += tmp
                    xp.multiply(grad_avg, grad_avg, out=tmp)
                    xp.subtract(square_avg, tmp, out=tmp)
                    xp.sqrt(tmp, out=tmp)
                else:
                    xp.sqrt(square_avg, out=tmp)
                tmp += eps                                  # avg
                xp.divide(grad, tmp, out=tmp)
                if momentum > 0:
                    buf = rest[-1]                          # buf.mul_(m).addcdiv_(grad, avg)
                    buf *= momentum
                    buf += tmp
                    xp.multiply(buf, -lr, out=tmp)
                else:
                    tmp *= -lr
                param += tmp

            state_arrays = [state[k]._data for k in ("square_avg", "grad_avg", "momentum_buffer") if k in state]
            update_by_blocks(xp, update, [param, p.grad._data] + state_arrays)
            p._vc[0] += 1
