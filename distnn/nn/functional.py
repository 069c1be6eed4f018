"""``torch.nn.functional`` for distnn: the ops of ``distnn.ops`` under PyTorch's F
names, plus what only nn needs: ``bilinear``, the in-place aliases (``relu_``...),
distance functions and the less common losses, all composed from existing ops.
"""

import math

import numpy as np

from .. import creation
from ..debug import checks_values
from ..ops import elementwise as _ew
from ..ops import reduce as _red
from ..ops.activation import (celu, elu, gelu, glu, hardshrink, hardsigmoid, hardswish, hardtanh, leaky_relu,
                              logsigmoid, mish, prelu, relu, relu6, selu, sigmoid, silu, softplus, softshrink,
                              softsign, tanh, tanhshrink, threshold)
from ..ops.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from ..ops.index import embedding, index_select, one_hot
from ..ops.linalg import linear, matmul
from ..ops.loss import (_reduction_arg, binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                        huber_loss, kl_div, l1_loss, mse_loss, nll_loss, smooth_l1_loss)
from ..ops.dropouts import alpha_dropout, dropout, dropout1d, dropout2d, dropout3d, feature_alpha_dropout
from ..ops.normalization import batch_norm, group_norm, instance_norm, layer_norm, normalize, rms_norm
from ..ops.padding import pad
from ..ops.pool import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d,
                        avg_pool1d, avg_pool2d, max_pool1d, max_pool2d)
from ..ops.softmaxes import log_softmax, softmax, softmin
from .functional_attention import (_canonical_mask, _none_or_dtype,  # noqa: F401  (as torch's F)
                                   multi_head_attention_forward, scaled_dot_product_attention)
from .functional_pixel_shuffle import pixel_shuffle, pixel_unshuffle

__all__ = [
    # activations
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "threshold", "threshold_", "leaky_relu", "leaky_relu_",
    "prelu", "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "sigmoid", "tanh", "hardsigmoid",
    "hardswish", "softplus", "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink", "glu",
    "softmax", "log_softmax", "softmin",
    # layers
    "linear", "bilinear", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "max_pool1d",
    "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "embedding", "one_hot", "pad", "interpolate",
    "pixel_shuffle", "pixel_unshuffle",
    "scaled_dot_product_attention", "multi_head_attention_forward",
    # normalisation and dropout
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "normalize", "dropout",
    "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    # distances
    "cosine_similarity", "pairwise_distance",
    # losses
    "nll_loss", "cross_entropy", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss",
    "gaussian_nll_loss", "soft_margin_loss", "margin_ranking_loss", "hinge_embedding_loss",
    "cosine_embedding_loss", "multilabel_soft_margin_loss", "triplet_margin_loss",
]


# --- in-place aliases ------------------------------------------------------------------

def relu_(input):
    return relu(input, inplace=True)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, inplace=True)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def threshold_(input, threshold_value, value):
    return threshold(input, threshold_value, value, inplace=True)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


def selu_(input):
    return selu(input, inplace=True)


# --- interpolate ------------------------------------------------------------------------

_LINEAR_MODES = {"linear": 1, "bilinear": 2}


def _output_sizes(input, size, scale_factor, spatial):
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined" if size is not None
                         else "either size or scale_factor should be defined")
    if size is not None:
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * spatial
        scales = (None,) * spatial
    else:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * spatial
        sizes = tuple(math.floor(float(input.shape[2 + i]) * scales[i]) for i in range(spatial))
    if len(sizes) != spatial or len(scales) != spatial:
        raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                         f"spatial dimensions of {list(input.shape[2:])} and output size of {list(sizes)}.")
    return sizes, scales


def _nearest_index(in_size, out_size, scale):
    """ATen's nearest source index: floor(dst * scale) in float32, clipped to the input."""
    ratio = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    return np.minimum(np.floor(dst * ratio).astype(np.int64), in_size - 1)


def _linear_weights(in_size, out_size, scale, align_corners):
    """ATen's (index0, index1, lambda0, lambda1) for linear interpolation along one axis."""
    dst = np.arange(out_size, dtype=np.float32)
    if in_size == out_size:
        idx = dst.astype(np.int64)
        return idx, idx, np.ones(out_size, np.float32), np.zeros(out_size, np.float32)
    if align_corners:
        ratio = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
        src = ratio * dst
    else:
        ratio = np.float32(1.0 / scale) if scale else np.float32(in_size) / np.float32(out_size)
        src = np.maximum(ratio * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - i0, 0, 1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (1 - lam1).astype(np.float32), lam1


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of (N, C, ...) input: modes 'nearest', 'linear', 'bilinear'."""
    spatial = input.ndim - 2
    if mode == "nearest":
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    elif _LINEAR_MODES.get(mode) != spatial:
        raise NotImplementedError(f"Expect: mode 'nearest' (any dims), 'linear' (3-D input) or 'bilinear' "
                                  f"(4-D input), Actual: mode {mode!r} with {input.ndim}-D input")
    if antialias:
        raise NotImplementedError("antialias=True is not supported")
    sizes, scales = _output_sizes(input, size, scale_factor, spatial)
    if recompute_scale_factor:
        scales = (None,) * spatial
    out = input
    for axis, (out_size, scale) in enumerate(zip(sizes, scales), start=2):
        in_size = input.shape[axis]
        if mode == "nearest":
            index = creation.as_tensor(_nearest_index(in_size, out_size, scale), device=input.device)
            out = index_select(out, axis, index)
            continue
        i0, i1, lam0, lam1 = _linear_weights(in_size, out_size, scale, bool(align_corners))
        shape = (out_size,) + (1,) * (input.ndim - 1 - axis)
        w0 = creation.as_tensor(lam0.reshape(shape), device=input.device).to(input.dtype)
        w1 = creation.as_tensor(lam1.reshape(shape), device=input.device).to(input.dtype)
        out = (index_select(out, axis, creation.as_tensor(i0, device=input.device)) * w0
               + index_select(out, axis, creation.as_tensor(i1, device=input.device)) * w1)
    return out


# --- bilinear and distances -----------------------------------------------------------

def bilinear(input1, input2, weight, bias=None):
    """``y_k = x1^T W_k x2 + b_k`` over any leading dims, as one GEMM and a reduction."""
    out_features, in1, in2 = tuple(weight.shape)
    if input1.shape[-1] != in1 or input2.shape[-1] != in2 or input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(f"Expect: input1 (*, {in1}) and input2 (*, {in2}) with equal leading dims, "
                           f"Actual: {list(input1.shape)} and {list(input2.shape)}")
    # x1 @ W viewed as (in1, out * in2), then contract in2 against x2.
    mixed = matmul(input1, weight.permute(1, 0, 2).reshape(in1, out_features * in2))
    mixed = mixed.reshape(*input1.shape[:-1], out_features, in2)
    out = _red.sum(mixed * input2.unsqueeze(-2), -1)
    return out if bias is None else out + bias


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between ``x1`` and ``x2`` along ``dim`` (norms clamped at ``eps``)."""
    n1 = _ew.clamp(_red.norm(x1, 2, dim, keepdim=True), min=eps)
    n2 = _ew.clamp(_red.norm(x2, 2, dim, keepdim=True), min=eps)
    return _red.sum((x1 / n1) * (x2 / n2), dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """p-norm of ``x1 - x2 + eps`` over the last dim."""
    return _red.norm(x1 - x2 + eps, p, -1, keepdim=keepdim)


# --- losses composed from ops ---------------------------------------------------------

def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = _ew.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _apply_reduction(_ew.clamp(margin + d_pos - d_neg, min=0), reduction)


def _apply_reduction(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    return _apply_reduction(_ew.log1p(_ew.exp(-target * input)), reduction)


def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    return _apply_reduction(_ew.clamp(-target * (input1 - input2) + margin, min=0), reduction)


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    zeros = creation.zeros_like(input)
    margin_part = _ew.where(target != 1, _ew.clamp(margin - input, min=0), zeros)
    self_part = _ew.where(target != -1, input, zeros)
    return _apply_reduction(margin_part + self_part, reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                          reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    dim = input1.ndim - 1
    mag1 = _red.sum(input1 * input1, dim) + 1e-12
    mag2 = _red.sum(input2 * input2, dim) + 1e-12
    cos = _red.sum(input1 * input2, dim) / _ew.sqrt(mag1 * mag2)
    zeros = creation.zeros_like(cos)
    loss = _ew.where(target == 1, 1 - cos, zeros) + _ew.where(target == -1, _ew.clamp(cos - margin, min=0), zeros)
    return _apply_reduction(loss, reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    loss = _red.sum(loss, input.ndim - 1) / input.shape[-1]
    return _apply_reduction(loss, reduction)


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    reduction = _reduction_arg(size_average, reduce, reduction)
    if log_input:
        loss = _ew.exp(input) - target * input
    else:
        loss = input - target * _ew.log(input + eps)
    if full:
        # Stirling's approximation of log(target!), only where target > 1.
        stirling = target * _ew.log(target) - target + 0.5 * _ew.log(2 * math.pi * target)
        loss = loss + stirling.masked_fill(target <= 1, 0)
    return _apply_reduction(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    if not hasattr(var, "shape"):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = creation.full_like(input, var)
    if var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = var.unsqueeze(-1)
        elif not (input.shape[:-1] == var.shape[:-1] and var.shape[-1] == 1):
            raise ValueError(f"var is of incorrect size, Expect: {list(input.shape)} or broadcastable to it, "
                             f"Actual: {list(var.shape)}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    if checks_values(var._data) and bool((var < 0).any()):  # on a GPU only in debug mode: it would wait
        raise ValueError("var has negative entry/entries")
    # PyTorch clamps var outside autograd, so the clamp passes gradients straight through.
    detached = var.detach()
    var = var + (_ew.clamp(detached, min=eps) - detached)
    loss = 0.5 * (_ew.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _apply_reduction(loss, reduction)
