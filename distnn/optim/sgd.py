"""``SGD``: stochastic gradient descent with optional momentum, dampening,
Nesterov momentum, weight decay and maximize; PyTorch's update, step for step."""

import numpy as np

from ..tensor import _wrap
from ..threads import in_flat_blocks
from . import fused_cuda
from .optimizer import Optimizer, effective_grad, require_nonnegative

# Big parameters go through the update 256K elements at a time, over the intra-op
# threads (threads.in_flat_blocks): its passes then run in cache. ResNet-18's 11.2M
# parameters, momentum and weight decay: 11.0 -> 9.7 ms a step at 1 thread, 11.5 -> 8.6
# at 2 (64K-element blocks: 11.2 and 9.8, the Python per block costing more). Without
# momentum (the LSTM LM's 4.6M): 1.8 -> 1.6 ms at 2 threads, the same at 1.
_BLOCK_ELEMENTS = 1 << 18
_BLOCKED_MIN_ELEMENTS = 1 << 18


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

    def _replays_in_a_graph(self, group):
        return True

    def _update_group(self, group):
        lr = float(group["lr"])
        momentum, dampening = group["momentum"], group["dampening"]
        weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
        for p, param, xp, state in self._params_with_grad(group):
            if xp is not np and _fused_update(xp, param, p.grad._data, state, lr, momentum, dampening,
                                              weight_decay, nesterov, maximize):
                p._vc[0] += 1
                continue
            first = momentum != 0 and "momentum_buffer" not in state
            if first:  # the buffer starts as the first (effective) gradient itself
                grad, owned = effective_grad(xp, param, p.grad._data, weight_decay, maximize)
                state["momentum_buffer"] = _wrap(grad if owned else grad.copy())

            def update(param, grad, buf=None):
                grad, owned = effective_grad(xp, param, grad, weight_decay, maximize)
                if buf is not None:
                    if not first:
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

            arrays = [param, p.grad._data] + ([state["momentum_buffer"]._data] if momentum != 0 else [])
            if first:  # no buffer to step yet
                update(*arrays)
            else:
                in_flat_blocks(xp, update, arrays, _BLOCK_ELEMENTS, _BLOCKED_MIN_ELEMENTS)
            p._vc[0] += 1


def _fused_update(xp, param, grad, state, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """The update above as one CUDA kernel (``fused_cuda.sgd_step``) where the arrays
    allow it; False, having touched nothing, where they do not."""
    first = momentum != 0 and "momentum_buffer" not in state
    buf = None if momentum == 0 or first else state["momentum_buffer"]._data
    if not fused_cuda.can_fuse([param, grad] + ([buf] if buf is not None else [])):
        return False
    if first:
        buf = xp.empty_like(param)  # the kernel fills it with the first effective gradient
        state["momentum_buffer"] = _wrap(buf)
    fused_cuda.sgd_step(param, grad, buf, first=first, lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    return True
