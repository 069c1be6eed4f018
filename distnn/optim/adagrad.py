"""``Adagrad``: per-coordinate learning rates from the running sum of squared
gradients, with learning-rate decay; PyTorch's update."""

from .. import backend
from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, effective_grad, new_step_counter, require_nonnegative, update_by_blocks


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``; like PyTorch, its state exists from construction."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        require_nonnegative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                            initial_accumulator_value=initial_accumulator_value, eps=eps)
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        for group in self.param_groups:  # PyTorch's Adagrad makes its state up front
            for p in group["params"]:
                self._init_state(backend.array_module(p._data), p._data, self.state[p], group)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["sum"] = _wrap(xp.full_like(param, group["initial_accumulator_value"]))

    def _replays_in_a_graph(self, group):
        return group["lr_decay"] == 0

    def _update_group(self, group):
        lr = float(group["lr"])
        lr_decay, eps, weight_decay, maximize = (group["lr_decay"], group["eps"], group["weight_decay"],
                                                 group["maximize"])
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            clr = lr / (1 + (step - 1) * lr_decay)

            def update(param, grad, state_sum):
                grad, _ = effective_grad(xp, param, grad, weight_decay, maximize)
                tmp = xp.multiply(grad, grad)               # state_sum.addcmul_(grad, grad, value=1)
                state_sum += tmp
                xp.sqrt(state_sum, out=tmp)                 # std = state_sum.sqrt().add_(eps)
                tmp += eps
                xp.divide(grad, tmp, out=tmp)               # param.addcdiv_(grad, std, value=-clr)
                tmp *= -clr
                param += tmp

            update_by_blocks(xp, update, [param, p.grad._data, state["sum"]._data])
            p._vc[0] += 1
