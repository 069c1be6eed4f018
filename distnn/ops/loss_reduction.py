"""The ``reduction=`` argument every loss shares: parsing it (with PyTorch's deprecated
``size_average``/``reduce`` flags), applying it to an elementwise loss and to its gradient,
and naming fused loss ops after PyTorch's ``grad_fn``."""

import warnings

from ..autograd import grad_mode
from ..tensor import Tensor
from .common import as_array

_REDUCTIONS = ("mean", "sum", "none")


def _reduction_arg(size_average, reduce, reduction):
    """The reduction string, honouring the deprecated ``size_average``/``reduce`` flags."""
    if size_average is None and reduce is None:
        if reduction in _REDUCTIONS:
            return reduction
        if reduction == "elementwise_mean":
            warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
                          stacklevel=3)
            return "mean"
        raise ValueError(f"{reduction} is not a valid value for reduction")
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    result = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{result}' "
                  "instead.", stacklevel=3)
    return result


def _reduce(loss, reduction, divisor=None):
    """Reduce an elementwise loss array; full reductions come back as 0-dim arrays."""
    if reduction == "none":
        return as_array(loss)
    total = loss.sum()
    if reduction == "mean":
        total = total / (loss.size if divisor is None else divisor)
    return as_array(total)


def _upstream(g, reduction, n):
    """The gradient each element of the unreduced loss receives from ``g``."""
    return g / n if reduction == "mean" else g


def _refuse_grad(t, function, argument):
    if isinstance(t, Tensor) and t.requires_grad and grad_mode.is_grad_enabled():
        raise RuntimeError(f"The function '{function}' is not differentiable with respect to argument "
                           f"'{argument}'. This input cannot have requires_grad True.")
