"""Class-target losses as in ``torch.nn.functional``: nll_loss and cross_entropy, with
class-index targets (weights, ignore_index, label smoothing) or class-probability targets."""

import numpy as np

from .. import dtypes
from ..autograd.function import Op
from ..autograd.graph_xp import recording
from ..debug import checks_values
from . import fused_cuda
from .softmaxes import log_softmax
from .common import as_array, renamed_op
from .elementwise import add, mul
from .index_put import put_into_zeros
from .loss_reduction import _reduce, _reduction_arg, _refuse_grad, _upstream

__all__ = ["nll_loss", "cross_entropy"]

TENSOR_METHODS = ()


def _class_axis(x):
    return 0 if x.ndim == 1 else 1


def _weight_along(weight, x, axis):
    """A per-class weight vector shaped to broadcast along ``x``'s class axis."""
    return weight.astype(x.dtype, copy=False).reshape((-1,) + (1,) * (x.ndim - axis - 1))


class NllLoss(Op):
    """-w[t] * input[t] for each sample; 'mean' divides by the summed weight of the
    targets that are not ``ignore_index``, as PyTorch does."""

    double_backward = True

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        xp = ctx.xp
        axis = _class_axis(logp)
        n_classes = logp.shape[axis]
        if checks_values(target):  # on a GPU, as PyTorch's device-side assert: only in debug mode
            bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
            if bool(bad.any()):
                raise IndexError(f"Target {int(target[bad].reshape(-1)[0])} is out of bounds.")
        ctx.axis, ctx.n_classes, ctx.reduction, ctx.ignore_index = axis, n_classes, reduction, ignore_index
        ctx.fused = fused_cuda.takes_nll(xp, logp, target, weight, reduction)
        if ctx.fused:  # one kernel on a GPU
            loss, inv_total = fused_cuda.nll(xp, logp, target, ignore_index, reduction == "mean")
            ctx.save_for_backward(target, inv_total)
            return loss
        valid = target != ignore_index
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
        if reduction != "mean":
            ctx.save_for_backward(safe, w, None)
            return _reduce(loss, reduction)
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as in PyTorch
            total_weight = w.sum()
            ctx.save_for_backward(safe, w, 1 / total_weight)
            return as_array(loss.sum() / total_weight)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        if ctx.fused:
            target, inv_total = ctx.saved_tensors
            mean = ctx.reduction == "mean"
            if not recording(g):
                return (fused_cuda.nll_backward(xp, g, inv_total, target, ctx.n_classes, ctx.ignore_index, mean),
                        None, None, None, None)
            valid = target != ctx.ignore_index
            safe, w, inv_total = xp.where(valid, target, 0), valid.astype(inv_total.dtype), inv_total if mean else None
        else:
            safe, w, inv_total = ctx.saved_tensors
        coeff = w * (-g if inv_total is None else -g * inv_total)
        # scatter into a (samples, classes) buffer, then put the class axis back in place
        flat = put_into_zeros(xp, (safe.size, ctx.n_classes), (xp.arange(safe.size), safe.reshape(-1)),
                              coeff.reshape(-1))
        return xp.moveaxis(flat.reshape(safe.shape + (ctx.n_classes,)), -1, ctx.axis), None, None, None, None


class NllLoss2D(NllLoss):
    """NllLoss for inputs with spatial dims (PyTorch's node is NllLoss2DBackward0)."""


_NllLossView = renamed_op(NllLoss2D, "View")  # PyTorch reshapes 3-D / 5-D+ unreduced losses


class LabelSmoothingLoss(Op):
    """The label-smoothing term of cross_entropy: -sum_c w_c logp_c per sample,
    0 for ignored samples; 'mean' divides by the weight of the counted targets."""

    double_backward = True

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
        return _reduce(loss, reduction, divisor)

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

    double_backward = True

    @staticmethod
    def forward(ctx, logp, target, weight, reduction, smoothing):
        axis = _class_axis(logp)
        n_classes = logp.shape[axis]
        raw_target = target
        if smoothing:
            target = _smoothed(target, smoothing, n_classes)
        w = None if weight is None else _weight_along(weight, logp, axis)
        tw = target if w is None else target * w
        loss = -(logp * tw).sum(axis=axis)
        ctx.save_for_backward(logp, target, w, raw_target, weight)
        ctx.axis, ctx.reduction, ctx.smoothing = axis, reduction, smoothing
        ctx.n_samples = logp.size // n_classes if n_classes else 0
        return _reduce(loss, reduction, ctx.n_samples)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        logp, target, w, raw_target, weight = ctx.saved_tensors
        if recording(logp):  # what forward derived from the inputs must be differentiated too
            if ctx.smoothing:
                target = _smoothed(raw_target, ctx.smoothing, logp.shape[ctx.axis])
            if weight is not None:
                w = _weight_along(weight, logp, ctx.axis)
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


def _smoothed(target, smoothing, n_classes):
    return target * (1 - smoothing) + smoothing / n_classes


_SOFT_CE_BY_REDUCTION = {"mean": renamed_op(SoftTargetCrossEntropy, "Div", 1),
                         "sum": renamed_op(SoftTargetCrossEntropy, "Neg"),
                         "none": renamed_op(SoftTargetCrossEntropy, "Neg")}


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
