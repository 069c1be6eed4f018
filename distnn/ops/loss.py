"""Loss functions as in ``torch.nn.functional``: nll_loss and cross_entropy (class
indices or class probabilities), the regression losses (mse, l1, smooth_l1, huber),
binary cross-entropy on probabilities and on logits, and kl_div.

Each loss is one fused op with a closed-form backward. Where PyTorch builds a loss
out of smaller ops, our op is renamed after PyTorch's last one (``_torch_named``)
so ``print(loss)`` shows the same ``grad_fn`` (l1_loss: ``MeanBackward0``).
"""

import warnings

import numpy as np

from .. import dtypes
from ..autograd import grad_mode
from ..autograd.function import Op
from ..tensor import Tensor
from .activation import log_softmax
from .common import as_tensor, promote_operands
from .elementwise import add, div, mul
from .reduce import mean, sum as sum_

__all__ = ["nll_loss", "cross_entropy", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

TENSOR_METHODS = ()

_REDUCTIONS = ("mean", "sum", "none")


def _torch_named(op, name, suffix="Backward0"):
    """``op`` under another node name: PyTorch composes some losses from smaller ops
    and its grad_fn is the last of them (``MeanBackward0`` for l1_loss)."""
    return type(name, (op,), {"_node_suffix": suffix, "__doc__": op.__doc__})


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


def _reduce(xp, loss, reduction, divisor=None):
    """Reduce an elementwise loss array; full reductions come back as 0-dim arrays."""
    if reduction == "none":
        return xp.asarray(loss)  # numpy turns 0-dim results into scalars
    total = loss.sum()
    if reduction == "mean":
        total = total / (loss.size if divisor is None else divisor)
    return xp.asarray(total)


def _upstream(g, reduction, n):
    """The gradient each element of the unreduced loss receives from ``g``."""
    return g / n if reduction == "mean" else g


def _refuse_grad(t, function, argument):
    if isinstance(t, Tensor) and t.requires_grad and grad_mode.is_grad_enabled():
        raise RuntimeError(f"The function '{function}' is not differentiable with respect to argument "
                           f"'{argument}'. This input cannot have requires_grad True.")


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
    is its derivative times the upstream gradient ``up``."""

    @classmethod
    def forward(cls, ctx, input, target, reduction, param):
        d = input - target
        ctx.save_for_backward(d)
        ctx.reduction, ctx.param = reduction, param
        return _reduce(ctx.xp, cls.value(ctx.xp, d, param), reduction)

    @classmethod
    def backward(cls, ctx, g):
        (d,) = ctx.saved_tensors
        grad = cls.grad(ctx.xp, d, ctx.param, _upstream(g, ctx.reduction, d.size))
        need_input, need_target = ctx.needs_input_grad[:2]
        return (grad if need_input else None), (-grad if need_target else None), None, None


class MseLoss(_PointwiseLoss):
    @classmethod
    def forward(cls, ctx, input, target, reduction, param):
        # the hot path of every regression step: one subtraction and one dot product
        d = input - target
        ctx.save_for_backward(d)
        ctx.reduction, ctx.param = reduction, param
        if reduction == "none":
            return ctx.xp.asarray(d * d)
        flat = d.reshape(-1)
        total = ctx.xp.dot(flat, flat)
        return ctx.xp.asarray(total / d.size if reduction == "mean" else total)

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
    @staticmethod
    def value(xp, d, beta):
        ad = xp.abs(d)
        return xp.where(ad < beta, (0.5 / beta) * d * d, ad - 0.5 * beta)

    @staticmethod
    def grad(xp, d, beta, up):
        return xp.clip(d, -beta, beta) * (up / beta)


class HuberLoss(_PointwiseLoss):
    @staticmethod
    def value(xp, d, delta):
        ad = xp.abs(d)
        return xp.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))

    @staticmethod
    def grad(xp, d, delta, up):
        return xp.clip(d, -delta, delta) * up


_L1_BY_REDUCTION = {"mean": _torch_named(L1Loss, "Mean"), "sum": _torch_named(L1Loss, "Sum"),
                    "none": _torch_named(L1Loss, "Abs")}


def _pointwise(op, input, target, reduction, param=None, weight=None, weighted_mean="weight"):
    target = as_tensor(target, input)
    _warn_size_mismatch(input, target)
    input, target = promote_operands(input, target)
    if weight is None:
        return op.apply(input, target, reduction, param)
    if weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    weighted = mul(op.apply(input, target, "none", param), weight)
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return sum_(weighted)
    # PyTorch: mse/l1 divide by the total weight, huber by the element count
    return div(sum_(weighted), sum_(weight)) if weighted_mean == "weight" else mean(weighted)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    if (weight is None and size_average is None and reduce is None and isinstance(target, Tensor)
            and (reduction == "mean" or reduction == "sum" or reduction == "none")
            and input._data.shape == target._data.shape and input._data.dtype is target._data.dtype):
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
    return _pointwise(HuberLoss, input, target, reduction, float(delta), weight, weighted_mean="count")


# --- binary cross-entropy and KL divergence -------------------------------------------

class BinaryCrossEntropy(Op):
    """-w (t log p + (1 - t) log(1 - p)), each log clamped to >= -100 as in PyTorch."""

    @staticmethod
    def forward(ctx, input, target, weight, reduction):
        xp = ctx.xp
        if not bool(((input >= 0) & (input <= 1)).all()):
            raise RuntimeError("all elements of input should be between 0 and 1")
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped just below
            loss = (target - 1) * xp.maximum(xp.log1p(-input), -100) - target * xp.maximum(xp.log(input), -100)
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(input, target, weight)
        ctx.reduction = reduction
        return _reduce(xp, loss, reduction)

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

    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction):
        xp = ctx.xp
        log_sig = xp.minimum(input, 0) - xp.log1p(xp.exp(-xp.abs(input)))
        if pos_weight is None:
            loss = (1 - target) * input - log_sig
        else:
            loss = (1 - target) * input - ((pos_weight - 1) * target + 1) * log_sig
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(input, target, weight, pos_weight, log_sig)
        ctx.reduction = reduction
        return _reduce(xp, loss, reduction)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        input, target, weight, pos_weight, log_sig = ctx.saved_tensors
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
            return _reduce(xp, loss, "mean", ctx.divisor)
        ctx.divisor = loss.size
        return _reduce(xp, loss, reduction)

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


_KL_BY_REDUCTION = {(r, lt): _torch_named(KlDiv, _kl_node_name(r, lt))
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


# --- classification: negative log-likelihood and cross-entropy ------------------------

def _class_axis(x):
    return 0 if x.ndim == 1 else 1


def _weight_along(weight, x, axis):
    """A per-class weight vector shaped to broadcast along ``x``'s class axis."""
    return weight.astype(x.dtype, copy=False).reshape((-1,) + (1,) * (x.ndim - axis - 1))


class NllLoss(Op):
    """-w[t] * input[t] for each sample; 'mean' divides by the summed weight of the
    targets that are not ``ignore_index``, as PyTorch does."""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        xp = ctx.xp
        axis = _class_axis(logp)
        n_classes = logp.shape[axis]
        valid = target != ignore_index
        bad = valid & ((target < 0) | (target >= n_classes))
        if bool(bad.any()):
            raise IndexError(f"Target {int(target[bad].reshape(-1)[0])} is out of bounds.")
        safe = xp.where(valid, target, 0)
        if logp.ndim == 2:  # the common (N, C) case: plain fancy indexing is cheapest
            picked = logp[xp.arange(logp.shape[0]), safe]
        else:
            picked = xp.take_along_axis(logp, xp.expand_dims(safe, axis), axis=axis).squeeze(axis)
        if weight is None:
            w = valid.astype(logp.dtype)
        else:
            w = weight.astype(logp.dtype, copy=False)[safe] * valid
        loss = xp.where(valid, picked, 0) * -w  # where(): an ignored -inf must not give nan
        ctx.axis, ctx.n_classes, ctx.reduction = axis, n_classes, reduction
        if reduction != "mean":
            ctx.save_for_backward(safe, w, None)
            return _reduce(xp, loss, reduction)
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as in PyTorch
            total_weight = w.sum()
            ctx.save_for_backward(safe, w, 1 / total_weight)
            return xp.asarray(loss.sum() / total_weight)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        safe, w, inv_total = ctx.saved_tensors
        coeff = w * (-g if inv_total is None else -g * inv_total)
        # scatter into a (samples..., classes) buffer, then view the class axis back in place
        grad = xp.zeros(safe.shape + (ctx.n_classes,), dtype=w.dtype)
        flat = grad.reshape(-1, ctx.n_classes)
        flat[xp.arange(flat.shape[0]), safe.reshape(-1)] = coeff.reshape(-1)
        return xp.moveaxis(grad, -1, ctx.axis), None, None, None, None


class NllLoss2D(NllLoss):
    """NllLoss for inputs with spatial dims (PyTorch's node is NllLoss2DBackward0)."""


_NllLossView = _torch_named(NllLoss2D, "View")  # PyTorch reshapes 3-D / 5-D+ unreduced losses


class LabelSmoothingLoss(Op):
    """The label-smoothing term of cross_entropy: -sum_c w_c logp_c per sample,
    0 for ignored samples; 'mean' divides by the weight of the counted targets."""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        xp = ctx.xp
        axis = _class_axis(logp)
        valid = target != ignore_index
        w = None if weight is None else _weight_along(weight, logp, axis)
        per_sample = -(logp if w is None else logp * w).sum(axis=axis)
        loss = xp.where(valid, per_sample, 0)
        if weight is None:
            divisor = valid.sum(dtype=logp.dtype)
        else:
            divisor = (weight.astype(logp.dtype, copy=False)[xp.where(valid, target, 0)] * valid).sum()
        ctx.save_for_backward(valid, w, divisor)
        ctx.shape, ctx.axis, ctx.reduction = logp.shape, axis, reduction
        return _reduce(xp, loss, reduction, divisor)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        valid, w, divisor = ctx.saved_tensors
        up = xp.expand_dims(-_upstream(g, ctx.reduction, divisor) * valid, ctx.axis)
        return (xp.broadcast_to(up if w is None else up * w, ctx.shape).copy(),
                None, None, None, None)


class SoftTargetCrossEntropy(Op):
    """Cross-entropy against class probabilities from log-probabilities:
    -sum_c w_c t_c logp_c per sample; 'mean' divides by the number of samples."""

    @staticmethod
    def forward(ctx, logp, target, weight, reduction, smoothing):
        axis = _class_axis(logp)
        n_classes = logp.shape[axis]
        if smoothing:
            target = target * (1 - smoothing) + smoothing / n_classes
        w = None if weight is None else _weight_along(weight, logp, axis)
        tw = target if w is None else target * w
        loss = -(logp * tw).sum(axis=axis)
        ctx.save_for_backward(logp, target, w)
        ctx.axis, ctx.reduction, ctx.smoothing = axis, reduction, smoothing
        ctx.n_samples = logp.size // n_classes if n_classes else 0
        return _reduce(ctx.xp, loss, reduction, ctx.n_samples)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        logp, target, w = ctx.saved_tensors
        up = -_upstream(g, ctx.reduction, ctx.n_samples)
        if ctx.reduction == "none":
            up = xp.expand_dims(up, ctx.axis)
        need_logp, need_target, need_weight = ctx.needs_input_grad[:3]
        grad_logp = (target if w is None else target * w) * up if need_logp else None
        grad_target = None
        if need_target:
            grad_target = logp * up * (1 - ctx.smoothing)
            if w is not None:
                grad_target = grad_target * w
        grad_weight = None
        if need_weight:
            other_axes = tuple(a for a in range(logp.ndim) if a != ctx.axis)
            grad_weight = (logp * target * up).sum(axis=other_axes)
        return grad_logp, grad_target, grad_weight, None, None


_SOFT_CE_BY_REDUCTION = {"mean": _torch_named(SoftTargetCrossEntropy, "Div", "Backward1"),
                         "sum": _torch_named(SoftTargetCrossEntropy, "Neg"),
                         "none": _torch_named(SoftTargetCrossEntropy, "Neg")}


def _check_class_targets(input, target, weight):
    """Shape checks for class-index targets, with PyTorch's messages."""
    shape, target_shape = input._data.shape, target._data.shape
    if len(shape) == 0:
        raise ValueError("Expect: input with a class dimension (1 or more dims), Actual: a 0-dim tensor")
    if len(shape) == 1:
        if target_shape != ():
            raise RuntimeError(f"Expected a 0-dim target (one class index) for an unbatched input of shape "
                               f"{list(shape)}, got target of shape {list(target_shape)}")
    elif target_shape != shape[:1] + shape[2:]:
        if not target_shape or target_shape[0] != shape[0]:
            actual = target_shape[0] if target_shape else "none, 0-dim target"
            raise ValueError(f"Expected input batch_size ({shape[0]}) to match target batch_size ({actual}).")
        raise RuntimeError(f"Expected target size {list(shape[:1] + shape[2:])}, got {list(target_shape)}")
    n_classes = shape[0 if len(shape) == 1 else 1]
    if weight is not None and weight.numel() != n_classes:
        raise RuntimeError(f"weight tensor should be defined either for all {n_classes} classes or no classes "
                           f"but got weight tensor of shape: {list(weight.shape)}")


def _nll(logp, target, weight, ignore_index, reduction):
    if logp.ndim <= 2:
        op = NllLoss
    elif logp.ndim == 4 or reduction != "none":
        op = NllLoss2D
    else:
        op = _NllLossView
    return op.apply(logp, target, weight, int(ignore_index), reduction)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    if target._data.dtype.kind not in "iu":
        raise RuntimeError(f"Expected target of dtype int64 (class indices), got {target.dtype}")
    _check_class_targets(input, target, weight)
    _refuse_grad(weight, "nll_loss_forward", "weight")
    return _nll(input, target, weight, ignore_index, reduction)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """log_softmax over the class dim, then the negative log-likelihood of ``target``:
    class indices (int64) or class probabilities (float, the input's shape)."""
    reduction = _reduction_arg(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    target_dtype = target._data.dtype
    if target_dtype.kind in "iu":
        _check_class_targets(input, target, weight)
        _refuse_grad(weight, "nll_loss_forward", "weight")
        logp = log_softmax(input, _class_axis(input))
        loss = _nll(logp, target, weight, ignore_index, reduction)
        if not label_smoothing:
            return loss
        smooth = LabelSmoothingLoss.apply(logp, target, weight, int(ignore_index), reduction)
        n_classes = input.shape[_class_axis(input)]
        return add(mul(loss, 1 - label_smoothing), mul(smooth, label_smoothing / n_classes))
    if target_dtype in (dtypes.float32.np, dtypes.float64.np):
        if target.shape != input.shape:
            raise RuntimeError(f"Expected a floating-point target (class probabilities) of the input's shape "
                               f"{list(input.shape)}, got {list(target.shape)}; class-index targets must be "
                               "int64")
        if weight is not None and weight.numel() != input.shape[_class_axis(input)]:
            raise RuntimeError(f"Expect: weight of {input.shape[_class_axis(input)]} elements (one per class), "
                               f"Actual: shape {list(weight.shape)}")
        logp = log_softmax(input, _class_axis(input))
        return _SOFT_CE_BY_REDUCTION[reduction].apply(logp, target, weight, reduction, float(label_smoothing))
    raise RuntimeError("Expected target of dtype int64 (class indices) or float (class probabilities), "
                       f"got {target.dtype}")
