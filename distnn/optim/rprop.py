"""``Rprop``: resilient backpropagation; each weight keeps its own step size,
grown while its gradient keeps its sign and shrunk when the sign flips, and moves
by that step against the gradient's sign only; PyTorch's update."""

from ..tensor import _wrap
from .optimizer import Optimizer, advance_step, new_step_counter, require_nonnegative, update_by_blocks


class Rprop(Optimizer):
    """``torch.optim.Rprop``: ``etas=(shrink, grow)`` bound the step-size changes and
    ``step_sizes=(min, max)`` the step sizes themselves."""

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, capturable=False,
                 foreach=None, maximize=False, differentiable=False):
        require_nonnegative(lr=lr)
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = {"lr": lr, "etas": tuple(etas), "step_sizes": tuple(step_sizes), "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable, "capturable": capturable}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["prev"] = _wrap(xp.zeros_like(param))
        state["step_size"] = _wrap(xp.full_like(param, float(group["lr"])))

    def _update_group(self, group):
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        maximize = group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            advance_step(state)

            def update(param, grad, prev, step_size):
                grad = -grad if maximize else grad.copy()
                agreement = xp.multiply(grad, prev)     # > 0: same sign as last step, < 0: flipped
                flipped = agreement < 0
                factor = xp.ones_like(agreement)
                factor[agreement > 0] = etaplus
                factor[flipped] = etaminus
                step_size *= factor
                xp.clip(step_size, step_size_min, step_size_max, out=step_size)
                grad[flipped] = 0                       # after a flip: no step, and no flip next time
                xp.sign(grad, out=agreement)
                agreement *= step_size
                param -= agreement
                prev[...] = grad

            update_by_blocks(xp, update, [param, p.grad._data, state["prev"]._data, state["step_size"]._data])
            p._vc[0] += 1
