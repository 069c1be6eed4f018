"""Loss functions as in ``torch.nn.functional``: the regression losses (mse, l1,
smooth_l1, huber), binary cross-entropy on probabilities and on logits, and kl_div;
nll_loss and cross_entropy live in ``classification_loss.py``.

Operand dtypes follow PyTorch: mse, smooth_l1 and huber compute in the operands'
result type and refuse a non-floating one (``"mse_cpu" not implemented for 'Long'``);
l1_loss is ``(input - target).abs()`` then the reduction, so integers stay integers.

Each loss is one fused op with a closed-form backward. Where PyTorch builds a loss
out of smaller ops, our op is renamed after PyTorch's last one (``renamed_op``)
so ``print(loss)`` shows the same ``grad_fn`` (l1_loss: ``MeanBackward0``).
"""

import math
import warnings

import numpy as np

from .. import dtypes
from ..autograd.function import Op
from ..autograd.graph_xp import recording
from ..debug import checks_values
from ..tensor import Tensor
from .activation import _log_sigmoid
from .classification_loss import (LabelSmoothingLoss, NllLoss, NllLoss2D, SoftTargetCrossEntropy,  # noqa: F401
                                  cross_entropy, nll_loss)  # re-exported from their old home
from .common import as_array, as_tensor, promote_operands, renamed_op
from .conversion import to_dtype
from .elementwise import abs as abs_, div, mul, refuse_bool_subtraction, sub
from .loss_reduction import _reduce, _reduction_arg, _refuse_grad, _upstream
from .reduce import _type_name, mean, sum as sum_
from .selection import select

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

TENSOR_METHODS = ()


def _warn_size_mismatch(input, target):
    if target._data.shape != input._data.shape:
        # stacklevel 4: the warning points at the caller of mse_loss & co.
        warnings.warn(f"Using a target size ({target.size()}) that is different to the input size "
                      f"({input.size()}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=4)
        try:
            np.broadcast_shapes(input.shape, target.shape)
        except ValueError:
            raise RuntimeError(f"Expect: target shape broadcastable to input shape {list(input.shape)}, "
                               f"Actual: {list(target.shape)}") from None


# --- regression losses: a function of d = input - target ------------------------------

class _PointwiseLoss(Op):
    """``value(d)`` elementwise on d = input - target, then reduced; ``grad(d, up)``
    is its derivative times the upstream gradient ``up``. ``kernel``: PyTorch's kernel
    name, for its error on non-floating operands (None: l1, which accepts integers)."""

    kernel = None
    double_backward = True

    @classmethod
    def forward(cls, ctx, input, target, reduction, param):
        d = input - target
        ctx.save_for_backward(d, input, target)
        ctx.reduction, ctx.param = reduction, param
        return _reduce(cls.value(ctx.xp, d, param), reduction)

    @classmethod
    def backward(cls, ctx, g):
        d, input, target = ctx.saved_tensors
        if recording(input):  # d, saved from forward, must be differentiated too
            d = input - target
        grad = cls.grad(ctx.xp, d, ctx.param, _upstream(g, ctx.reduction, d.size))
        need_input, need_target = ctx.needs_input_grad[:2]
        return (grad if need_input else None), (-grad if need_target else None), None, None


class MseLoss(_PointwiseLoss):
    kernel = "mse"

    @classmethod
    def forward(cls, ctx, input, target, reduction, param):
        # the hot path of every regression step: one subtraction and one dot product
        d = input - target
        ctx.save_for_backward(d, input, target)
        ctx.reduction, ctx.param = reduction, param
        if reduction == "none":
            return as_array(d * d)
        flat = d.reshape(-1)
        total = ctx.xp.dot(flat, flat)
        return as_array(total / d.size if reduction == "mean" else total)

    @staticmethod
    def grad(xp, d, param, up):
        return d * (up * 2)


class L1Loss(_PointwiseLoss):
    @staticmethod
    def value(xp, d, param):
        return xp.abs(d)

    @staticmethod
    def grad(xp, d, param, up):
        return xp.sign(d) * up


class SmoothL1Loss(_PointwiseLoss):
    kernel = "smooth_l1"

    @staticmethod
    def value(xp, d, beta):
        ad = xp.abs(d)
        return select(xp, ad < beta, (0.5 / beta) * d * d, ad - 0.5 * beta)

    @staticmethod
    def grad(xp, d, beta, up):
        return xp.clip(d, -beta, beta) * (up / beta)


class HuberLoss(_PointwiseLoss):
    kernel = "huber"

    @staticmethod
    def value(xp, d, delta):
        ad = xp.abs(d)
        return select(xp, ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))

    @staticmethod
    def grad(xp, d, delta, up):
        return xp.clip(d, -delta, delta) * up


_L1_BY_REDUCTION = {"mean": renamed_op(L1Loss, "Mean"), "sum": renamed_op(L1Loss, "Sum"),
                    "none": renamed_op(L1Loss, "Abs")}


def _pointwise(op, input, target, reduction, param=None, weight=None, weighted_mean="weight", out_dtype=None):
    """``op`` on the operands promoted to their result type; ``out_dtype``: the dtype
    the elementwise loss is stored in before weighting and reduction (huber's)."""
    target = as_tensor(target, input)
    _warn_size_mismatch(input, target)
    if weight is not None and weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    common = dtypes.promote(input._data, target._data)
    if op.kernel is None:  # l1: PyTorch's (input - target).abs(), so integers stay integers
        refuse_bool_subtraction(input, target)
        if common.kind != "f":
            return _weighted_reduction(abs_(sub(input, target)), reduction, weight, weighted_mean)
    elif common.kind != "f":  # an int64 mse is an error in PyTorch, not a float64 loss
        raise NotImplementedError(f"\"{op.kernel}_{input.device.type}\" not implemented for '{_type_name(common)}'")
    input, target = promote_operands(input, target)
    out_dtype = common if out_dtype is None else out_dtype
    if weight is None and out_dtype == common:
        return op.apply(input, target, reduction, param)
    loss = op.apply(input, target, "none", param)
    if out_dtype != common:
        loss = to_dtype(loss, out_dtype)
    return _weighted_reduction(loss, reduction, weight, weighted_mean)


def _weighted_reduction(loss, reduction, weight, weighted_mean):
    if weight is None:
        return loss if reduction == "none" else sum_(loss) if reduction == "sum" else mean(loss)
    weighted = mul(loss, weight)
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return sum_(weighted)
    # PyTorch: mse/l1 divide by the total weight, huber by the element count
    return div(sum_(weighted), sum_(weight)) if weighted_mean == "weight" else mean(weighted)


def _can_cast(source, target):
    """PyTorch's canCast: never floating -> integral, never non-bool -> bool."""
    return not (source.kind == "f" and target.kind in "biu") and not (source.kind != "b" and target.kind == "b")


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    if (weight is None and size_average is None and reduce is None and isinstance(target, Tensor)
            and (reduction == "mean" or reduction == "sum" or reduction == "none")
            and input._data.shape == target._data.shape and input._data.dtype is target._data.dtype
            and input._data.dtype.kind == "f"):
        return MseLoss.apply(input, target, reduction, None)  # what _pointwise comes to, unchecked
    reduction = _reduction_arg(size_average, reduce, reduction)
    return _pointwise(MseLoss, input, target, reduction, weight=weight)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _reduction_arg(size_average, reduce, reduction)
    return _pointwise(_L1_BY_REDUCTION[reduction], input, target, reduction, weight=weight)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    reduction = _reduction_arg(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return _pointwise(_L1_BY_REDUCTION[reduction], input, target, reduction)
    return _pointwise(SmoothL1Loss, input, target, reduction, float(beta))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    reduction = _reduction_arg(None, None, reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    # PyTorch writes the loss into a tensor of the input's dtype: a float16 input with a
    # float32 target gives float16, and an integer input cannot hold a float loss.
    target = as_tensor(target, input)
    common, out_dtype = dtypes.promote(input._data, target._data), input._data.dtype
    if not _can_cast(common, out_dtype):
        raise RuntimeError(f"result type {_type_name(common)} can't be cast to the desired output type "
                           f"{_type_name(out_dtype)}")
    return _pointwise(HuberLoss, input, target, reduction, float(delta), weight, "count", out_dtype)


# --- binary cross-entropy and KL divergence -------------------------------------------

class BinaryCrossEntropy(Op):
    """-w (t log p + (1 - t) log(1 - p)), each log clamped to >= -100 as in PyTorch."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, target, weight, reduction):
        xp = ctx.xp
        # on a GPU PyTorch asserts this on the device; we check it only in debug mode
        if checks_values(input) and not bool(((input >= 0) & (input <= 1)).all()):
            raise RuntimeError("all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped just below
            loss = ((target - 1) * xp.clip(xp.log1p(-input), -100, math.inf)
                    - target * xp.clip(xp.log(input), -100, math.inf))
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(input, target, weight)
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        input, target, weight = ctx.saved_tensors
        up = _upstream(g, ctx.reduction, input.size)
        if weight is not None:
            up = up * weight
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_input = (input - target) / xp.maximum((1 - input) * input, 1e-12) * up
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore"):
                grad_target = (xp.log1p(-input) - xp.log(input)) * up
        return grad_input, grad_target, None, None


class BinaryCrossEntropyWithLogits(Op):
    """(1 - t) x - (1 + (pos_weight - 1) t) log(sigmoid(x)), times weight; stable for any x."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction):
        xp = ctx.xp
        log_sig = _log_sigmoid(xp, input)
        if pos_weight is None:
            loss = (1 - target) * input - log_sig
        else:
            loss = (1 - target) * input - ((pos_weight - 1) * target + 1) * log_sig
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(input, target, weight, pos_weight, log_sig)
        ctx.reduction = reduction
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        input, target, weight, pos_weight, log_sig = ctx.saved_tensors
        if recording(input):  # log_sig, saved from forward, must be differentiated too
            log_sig = _log_sigmoid(xp, input)
        up = _upstream(g, ctx.reduction, log_sig.size)
        if weight is not None:
            up = up * weight
        grad_input = grad_target = None
        if ctx.needs_input_grad[0]:
            sig = xp.exp(log_sig)
            if pos_weight is None:
                grad_input = (sig - target) * up
            else:
                pt = pos_weight * target
                grad_input = ((pt + 1 - target) * sig - pt) * up
        if ctx.needs_input_grad[1]:
            slope = input if pos_weight is None else input + (pos_weight - 1) * log_sig
            grad_target = -slope * up
        return grad_input, grad_target, None, None, None


class KlDiv(Op):
    """Pointwise KL term: t (log t - x), or exp(t) (t - x) when the target is in log space."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, target, reduction, log_target):
        xp = ctx.xp
        if log_target:
            loss = xp.exp(target) * (target - input)
        else:  # xlogy(t, t) is 0 where t == 0
            loss = target * xp.log(xp.where(target == 0, 1, target)) - target * input
        ctx.save_for_backward(input, target)
        ctx.reduction, ctx.log_target = reduction, log_target
        if reduction == "batchmean":  # the sum over the batch size (PyTorch: no division for 0-dim)
            ctx.divisor = input.shape[0] if input.ndim else 1
            return _reduce(loss, "mean", ctx.divisor)
        ctx.divisor = loss.size
        return _reduce(loss, reduction)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        input, target = ctx.saved_tensors
        up = g / ctx.divisor if ctx.reduction in ("mean", "batchmean") else g
        grad_input = grad_target = None
        if ctx.log_target:
            e = xp.exp(target)
            grad_input = -e * up if ctx.needs_input_grad[0] else None
            grad_target = e * (target - input + 1) * up if ctx.needs_input_grad[1] else None
        else:
            grad_input = -target * up if ctx.needs_input_grad[0] else None
            if ctx.needs_input_grad[1]:
                grad_target = (xp.log(xp.where(target == 0, 1, target)) + 1 - input) * up
        return grad_input, grad_target, None, None


def _kl_node_name(reduction, log_target):
    if reduction == "none":
        return "Mul" if log_target else "Sub"
    return {"mean": "Mean", "sum": "Sum", "batchmean": "Div"}[reduction]


_KL_BY_REDUCTION = {(r, lt): renamed_op(KlDiv, _kl_node_name(r, lt))
                    for r in ("mean", "sum", "batchmean", "none") for lt in (False, True)}


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.size()}) that is different to the input size "
                         f"({input.size()}) is deprecated. Please ensure they have the same size.")
    _refuse_grad(weight, "binary_cross_entropy", "weight")
    input, target = promote_operands(input, target)
    return BinaryCrossEntropy.apply(input, target, weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    reduction = _reduction_arg(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.size()}) must be the same as input size ({input.size()})")
    _refuse_grad(weight, "binary_cross_entropy_with_logits", "weight")
    _refuse_grad(pos_weight, "binary_cross_entropy_with_logits", "pos_weight")
    input, target = promote_operands(input, target)
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    if reduction != "batchmean":
        reduction = _reduction_arg(size_average, reduce, reduction)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    input, target = promote_operands(input, as_tensor(target, input))
    return _KL_BY_REDUCTION[reduction, bool(log_target)].apply(input, target, reduction, bool(log_target))
