"""``Adam`` and ``AdamW`` (Adam with decoupled weight decay): PyTorch's
single-tensor update, including amsgrad and maximize."""

import numpy as np

from ..tensor import _wrap
from ..threads import in_flat_blocks
from . import fused_cuda
from .optimizer import (Optimizer, adam_grad, advance_step, new_step_counter, require_nonnegative,
                        update_moments)


# Big parameters go through the update 128K elements at a time, over the intra-op
# threads (threads.in_flat_blocks): its dozen passes then run in cache. AdamW on a
# 21M-parameter set (twelve 1024x1024, two 4096x1024): 51.5 -> 43.2 ms a step at 1
# thread, 49.0 -> 27.3 at 2.
_BLOCK_ELEMENTS = 1 << 17
_BLOCKED_MIN_ELEMENTS = 1 << 18


class Adam(Optimizer):
    """``torch.optim.Adam``; ``decoupled_weight_decay=True`` makes it AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        require_nonnegative(lr=lr, eps=eps)
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        require_nonnegative(weight_decay=weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach, "capturable": capturable,
                    "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _init_state(self, xp, param, state, group):
        state["step"] = new_step_counter()
        state["exp_avg"] = _wrap(xp.zeros_like(param))
        state["exp_avg_sq"] = _wrap(xp.zeros_like(param))
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = _wrap(xp.zeros_like(param))

    def _update_group(self, group):
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps, weight_decay = group["eps"], group["weight_decay"]
        amsgrad, maximize, decoupled = group["amsgrad"], group["maximize"], group["decoupled_weight_decay"]
        for p, param, xp, state in self._params_with_grad(group):
            step = advance_step(state)
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            step_size = lr / (1 - beta1 ** step)
            moments = [state[k]._data for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if k in state]
            # On the GPU one kernel does it all; moments that do not match the amsgrad flag
            # (a state dict from another run) take the array path, as before.
            if (xp is not np and len(moments) == 2 + amsgrad
                    and fused_cuda.can_fuse([param, p.grad._data] + moments)):
                fused_cuda.adam_step(param, p.grad._data, *moments[:2], moments[2] if amsgrad else None,
                                     lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                                     decoupled=decoupled, maximize=maximize,
                                     bias_correction2_sqrt=bias_correction2_sqrt, step_size=step_size)
                p._vc[0] += 1
                continue

            def update(param, grad, exp_avg, exp_avg_sq, max_sq=None):
                grad = adam_grad(xp, param, grad, lr, weight_decay, decoupled, maximize)
                tmp = update_moments(xp, grad, exp_avg, exp_avg_sq, beta1, beta2)  # one scratch for all below
                if amsgrad:
                    xp.maximum(max_sq, exp_avg_sq, out=max_sq)
                    xp.sqrt(max_sq, out=tmp)
                else:
                    xp.sqrt(exp_avg_sq, out=tmp)
                tmp /= bias_correction2_sqrt                # denom
                tmp += eps
                xp.divide(exp_avg, tmp, out=tmp)            # param.addcdiv_(exp_avg, denom, -step_size)
                tmp *= -step_size
                param += tmp

            in_flat_blocks(xp, update, [param, p.grad._data] + moments, _BLOCK_ELEMENTS, _BLOCKED_MIN_ELEMENTS)
            p._vc[0] += 1


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam whose weight decay shrinks the parameters directly
    instead of being added to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True

