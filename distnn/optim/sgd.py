"""``SGD``: stochastic gradient descent with optional momentum, dampening,
Nesterov momentum, weight decay and maximize; PyTorch's update, step for step."""

from ..tensor import _wrap
from .optimizer import Optimizer, effective_grad, require_nonnegative


class SGD(Optimizer):
    """``torch.optim.SGD``: ``p -= lr * (momentum buffer or gradient)``."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        require_nonnegative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "maximize": maximize, "foreach": foreach,
                    "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def _keeps_state(self, group):
        return group["momentum"] != 0  # the momentum buffer, made from the first gradient

    def _update_group(self, group):
        lr = float(group["lr"])
        momentum, dampening = group["momentum"], group["dampening"]
        weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            grad, owned = effective_grad(xp, param, p.grad._data, weight_decay, maximize)
            if momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = grad if owned else grad.copy()
                    state["momentum_buffer"] = _wrap(buf)
                    owned = False  # grad is now the buffer itself
                else:
                    buf = buf._data
                    buf *= momentum
                    if dampening != 0:
                        buf += xp.multiply(grad, 1 - dampening)
                    else:
                        buf += grad
                if nesterov:
                    # grad + momentum * buf, written into grad when it is ours to overwrite
                    scaled = xp.multiply(buf, momentum)
                    if owned:
                        grad += scaled
                    else:
                        scaled += grad
                        grad, owned = scaled, True
                else:
                    grad, owned = buf, False
            if owned:
                grad *= -lr
                param += grad
            else:
                param += xp.multiply(grad, -lr)
            p._vc[0] += 1
