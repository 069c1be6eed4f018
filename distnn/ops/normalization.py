"""Normalisation as in ``torch.nn.functional``: batch_norm, layer_norm, group_norm,
instance_norm, rms_norm, normalize (the dropout family is in ``dropout.py``).

The norms are each one fused op with the closed-form backward. Running statistics
are buffers: batch_norm updates them in place, outside autograd, bumping their
version counters.
"""

import math
from functools import partial

import numpy as np  # dtype metadata only (finfo)

from ..autograd.function import Op
from ..autograd.graph_xp import recording
from .._dims import normalize_dim
from ..threads import map_chunks
from .elementwise import div
from . import fused_cuda, layer_norm_rows, norm_cuda, onednn_norm
from .channel_rows import (_by_sample, _channel_affine, _channel_dot, _channel_form, _channel_row,
                           _channel_shape, _channel_sum, _non_channel_axes, _one_pass, _plain)
from .im2col import chunk_sum, scratch_array

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "normalize"]

TENSOR_METHODS = ()


def _standardize(xp, x, axes, eps, channel_first=False):
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased var); also the mean, var and 1/std.
    ``channel_first``: ``axes`` are every dim but 1, whose sums of squares then take one
    pass with no temporary."""
    rows = channel_first and _plain(x)  # per-channel values as _channel_rows
    if rows:
        mean = (_channel_sum(xp, x) / (x.size // x.shape[1])).reshape(_channel_shape(x.ndim))
        xhat = (_by_sample(x) - _channel_row(xp, mean, x)).reshape(x.shape)
    else:
        mean = x.mean(axis=axes, keepdims=True)
        xhat = x - mean
    if channel_first and _one_pass(xhat):
        var = _channel_dot(xp, xhat, xhat).reshape(mean.shape) / (x.size // x.shape[1])
    else:
        var = (xhat * xhat).mean(axis=axes, keepdims=True)
    invstd = 1 / xp.sqrt(var + eps)
    if rows:
        flat = _by_sample(xhat)
        flat *= _channel_row(xp, invstd, x)
    else:
        xhat *= invstd
    return xhat, mean, var, invstd


def _standardize_backward(gxhat, xhat, invstd, axes):
    """The input gradient through ``_standardize``, given the gradient w.r.t. xhat."""
    mean_g = gxhat.mean(axis=axes, keepdims=True)
    mean_gx = (gxhat * xhat).mean(axis=axes, keepdims=True)
    return (gxhat - mean_g - xhat * mean_gx) * invstd


def _affine(xhat, weight, bias, shape=None):
    out = xhat if weight is None else xhat * (weight if shape is None else weight.reshape(shape))
    if bias is not None:
        bias = bias if shape is None else bias.reshape(shape)
        if out is xhat or recording(out):
            out = out + bias
        else:  # a fresh array of the output's shape: no second temporary
            out += bias
    elif out is xhat:
        out = xhat.copy()  # xhat is saved for backward; the output must be its own array
    return out


def _update_running(stat, batch_value, momentum):
    """stat = (1 - momentum) * stat + momentum * batch_value, in place on a buffer.

    Like PyTorch, this does not bump the buffer's version counter: running
    statistics are bookkeeping, not values any graph differentiates through."""
    if stat is not None:
        data = stat._data
        data *= 1 - momentum
        data += momentum * batch_value.reshape(data.shape).astype(data.dtype, copy=False)


# Batch norm over big plain arrays goes a block of samples at a time, each block
# small enough to stay in the shared cache between its passes, and keeps no xhat:
# forward reads the input twice (moments; then x * scale + shift, PyTorch's own
# form) and writes only the output; backward reads the gradient and the input
# twice, recomputing x - mean per block in cache. Past the caches each pass over
# a MobileNet activation (12.6 MB) goes to memory, so passes are what cost.
# Blocks of 2 MB, not 512 KB: as fast at one thread, and at two each numpy call
# runs long enough that the threads seldom wait on each other for the GIL (a wait
# costs a 30-50 us wake-up here): fwd+bwd at 2 threads (32, 96, 32, 32) 8.0 ->
# 6.0 ms, (32, 144, 16, 16) 4.0 -> 1.6, where 512 KB blocks ran no faster than one thread.
_BN_BLOCK_BYTES = 2 << 20
_BN_BLOCKED_MIN_BYTES = 2 << 20


def _sample_blocks(xp, *arrays):
    """Slices of about ``_BN_BLOCK_BYTES`` over the batch of plain C-contiguous numpy
    arrays past ``_BN_BLOCKED_MIN_BYTES``; None where the whole-array forms run."""
    x = arrays[0]
    if (xp.__name__ != "numpy" or not all(_plain(a) for a in arrays)
            or x.ndim < 2 or x.nbytes < _BN_BLOCKED_MIN_BYTES):
        return None
    # two blocks at least, so a 2 MB activation (a small ResNet's (32, 64, 16, 16)) has
    # one for each thread: fwd+bwd 0.88 -> 0.70 ms at 2 threads; the same blocks at any count
    per = max(1, min(_BN_BLOCK_BYTES, -(-x.nbytes // 2)) // max(1, x[0].nbytes))
    return [slice(i, i + per) for i in range(0, x.shape[0], per)]


def _by_channel(a):
    return a.reshape(a.shape[0], a.shape[1], -1)


def _deviations(xp, x, mean):
    """``x - mean`` into this thread's scratch block, shaped as ``x``; ``mean`` per
    channel, (C,), or a ``_channel_row``."""
    xb, mean = (_by_channel(x), mean.reshape(1, -1, 1)) if mean.ndim == 1 else (_by_sample(x), mean)
    return xp.subtract(xb, mean, out=scratch_array(xp, "bn", xb.shape, x.dtype)).reshape(x.shape)


def _blocked_batch_norm(xp, x, weight, bias, eps, blocks):
    """Training batch norm by sample blocks: each block's mean and squared deviations,
    combined in block order as Chan et al.'s parallel variance (stable, and the
    same at any thread count), then the output block by block.
    Returns (output, mean, var, invstd), the statistics shaped (1, C, 1...)."""
    shape = _channel_shape(x.ndim)

    def moments(part):
        xb = _by_channel(x[part])
        count = xb.shape[0] * xb.shape[2]
        mean = _channel_sum(xp, xb) / count
        dev = _deviations(xp, x[part], mean)
        return count, mean, _channel_dot(xp, dev, dev)

    (count, mean, m2), *rest = map_chunks(xp, moments, blocks)
    for count_b, mean_b, m2_b in rest:
        delta, total = mean_b - mean, count + count_b
        mean = mean + delta * (count_b / total)
        m2 = m2 + m2_b + delta * delta * (count * count_b / total)
        count = total
    var = (m2 / count).reshape(shape)
    mean = mean.reshape(shape)
    invstd = 1 / xp.sqrt(var + eps)
    scale = invstd if weight is None else invstd * weight.reshape(shape)
    shift = -mean * scale if bias is None else bias.reshape(shape) - mean * scale
    out = xp.empty_like(x)
    xs, outs = _by_sample(x), _by_sample(out)
    scale, shift = _channel_row(xp, scale, x), _channel_row(xp, shift, x)

    def affine(part):
        xp.multiply(xs[part], scale, out=outs[part])
        outs[part] += shift

    map_chunks(xp, affine, blocks)
    return out, mean, var, invstd


def _blocked_batch_norm_backward(xp, g, x, mean, invstd, scale, need_input, blocks):
    """(grad_input or None, sum of g*xhat, sum of g) per channel, by sample blocks."""
    mean_row = _channel_row(xp, mean, x)

    def sums(part):
        return _channel_sum(xp, g[part]), _channel_dot(xp, g[part], _deviations(xp, x[part], mean_row))

    parts = map_chunks(xp, sums, blocks)
    shape, m = _channel_shape(g.ndim), g.size // g.shape[1]
    sum_g = chunk_sum(p[0] for p in parts).reshape(shape)
    sum_gx = chunk_sum(p[1] for p in parts).reshape(shape) * invstd
    if not need_input:
        return None, sum_gx.reshape(-1), sum_g.reshape(-1)
    scale = scale.reshape(shape)
    k, c = scale * invstd * (sum_gx / m), scale * (sum_g / m)
    scale, k, c = (_channel_row(xp, v, g) for v in (scale, k, c))
    grad_input = xp.empty_like(g)
    gs, gis = _by_sample(g), _by_sample(grad_input)

    def input_grad(part):
        # g*scale - xhat*(scale*mean(g*xhat)) - scale*mean(g), xhat = (x - mean) * invstd
        gi = gis[part]
        xp.multiply(gs[part], scale, out=gi)
        dev = _by_sample(_deviations(xp, x[part], mean_row))
        dev *= k
        gi -= dev
        gi -= c

    map_chunks(xp, input_grad, blocks)
    return grad_input, sum_gx.reshape(-1), sum_g.reshape(-1)


class NativeBatchNorm(Op):
    """Batch norm over every dim but the channel dim 1; batch statistics in training,
    the running ones otherwise."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, weight, bias, *, running_mean, running_var, training, momentum, eps):
        # running stats arrive as Tensors (keyword arguments pass through): buffers, updated in place
        xp = ctx.xp
        axes = _non_channel_axes(input.ndim)
        shape = _channel_shape(input.ndim)
        ctx.axes, ctx.training, ctx.eps = axes, training, eps
        out = None
        running = [None if r is None else r._data for r in (running_mean, running_var)]
        if training and norm_cuda.takes_batch_norm(xp, input, weight, bias, *running):  # one kernel on a GPU
            out, xhat, _, _, invstd = norm_cuda.batch_norm(xp, input, weight, bias, eps, *running, momentum)
            ctx.save_for_backward(xhat, invstd.reshape(shape), weight, input)
            return out
        by_onednn = training and onednn_norm.applies(input, weight, bias) and \
            onednn_norm.batch_norm(input, weight, bias, eps)
        ctx.onednn_stats = by_onednn and by_onednn[1:]  # oneDNN's backward reads its forward's (mean, var)
        if by_onednn:  # no xhat kept, as by blocks
            out, mean, var = by_onednn
            mean, var = mean.reshape(shape), var.reshape(shape)
            invstd = 1 / xp.sqrt(var + eps)
            xhat, ctx.mean = None, mean
        elif training and (blocks := _sample_blocks(xp, input)):  # no xhat kept: backward recomputes x - mean
            out, mean, var, invstd = _blocked_batch_norm(xp, input, weight, bias, eps, blocks)
            xhat, ctx.mean = None, mean
        elif training:
            xhat, mean, var, invstd = _standardize(xp, input, axes, eps, channel_first=True)
        else:  # PyTorch's inference form, x * scale + shift: two passes on channel rows, not four
            invstd = 1 / xp.sqrt(running_var._data.reshape(shape) + eps)
            mean = running_mean._data.reshape(shape).copy()  # the buffer may change before backward
            scale = invstd if weight is None else invstd * weight.reshape(shape)
            shift = -mean * scale if bias is None else bias.reshape(shape) - mean * scale
            out = _channel_affine(xp, input, scale, shift)
            xhat, ctx.mean = None, mean
        if training:
            n = input.size // input.shape[1]
            _update_running(running_mean, mean, momentum)
            _update_running(running_var, var * (n / (n - 1)), momentum)
        ctx.save_for_backward(xhat, invstd, weight, input)
        if out is None and weight is not None:
            out = _channel_affine(xp, xhat, weight, bias)
        return _affine(xhat, weight, bias, shape) if out is None else out

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight, input = ctx.saved_tensors
        xp, shape = ctx.xp, _channel_shape(g.ndim)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.training and recording(input):  # xhat and invstd, saved from forward, must be differentiated too
            xhat, _, _, invstd = _standardize(xp, input, ctx.axes, ctx.eps)
        scale = invstd if weight is None else invstd * weight.reshape(shape)
        if not ctx.training:  # affine in the input (so right too when backward is recorded); xhat only for the weight
            return (_channel_affine(xp, g, scale) if need_x else None,
                    _channel_dot(xp, g, (input - ctx.mean) * invstd) if need_w else None,
                    _channel_sum(xp, g) if need_b else None)
        if xhat is not None and not (recording(g) or recording(xhat)) and fused_cuda.takes(xp, g, xhat, scale):
            grad_input, sum_gx, sum_g = norm_cuda.batch_norm_backward(xp, g, xhat, scale.reshape(-1), need_x)
            return grad_input, sum_gx if need_w else None, sum_g if need_b else None
        by_onednn = ctx.onednn_stats and not (recording(g) or recording(input)) and \
            onednn_norm.batch_norm_backward(input, g, *ctx.onednn_stats, weight, ctx.eps)
        if by_onednn:
            grad_input, sum_gx, sum_g = by_onednn
            return grad_input if need_x else None, sum_gx if need_w else None, sum_g if need_b else None
        if xhat is None:  # forward went by blocks
            blocks = _sample_blocks(xp, g, input)
            if blocks:
                grad_input, sum_gx, sum_g = _blocked_batch_norm_backward(
                    xp, g, input, ctx.mean, invstd, scale, need_x, blocks)
                return grad_input, sum_gx if need_w else None, sum_g if need_b else None
            xhat = (input - ctx.mean) * invstd
        sum_g = _channel_sum(xp, g).reshape(shape)
        sum_gx = _channel_dot(xp, g, xhat).reshape(shape)
        grad_input = None
        if need_x:
            m = g.size // g.shape[1]
            if _one_pass(g) and _one_pass(xhat):
                # g*scale - xhat*(scale*mean(g*xhat)) - scale*mean(g): two temporaries, not five
                view, per_channel = _channel_form(xp, g, xhat)
                grad_input = view(g) * per_channel(scale)
                grad_input -= view(xhat) * per_channel(scale * (sum_gx / m))
                grad_input -= per_channel(scale * (sum_g / m))
                grad_input = grad_input.reshape(g.shape)
            else:
                grad_input = (g - sum_g / m - xhat * (sum_gx / m)) * scale
        return grad_input, sum_gx.reshape(-1) if need_w else None, sum_g.reshape(-1) if need_b else None


class NativeLayerNorm(Op):
    """Normalisation over the trailing ``normalized_ndim`` dims, then an elementwise affine."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, weight, bias, normalized_ndim, eps):
        axes = tuple(range(input.ndim - normalized_ndim, input.ndim))
        ctx.axes, ctx.eps = axes, eps
        gpu = input.size and fused_cuda.takes(ctx.xp, input, *(p for p in (weight, bias) if p is not None))
        if gpu or layer_norm_rows.applies(ctx.xp, input, weight, bias):  # one kernel; numpy: by blocks of rows
            width = math.prod(input.shape[input.ndim - normalized_ndim:])
            forward = partial(norm_cuda.layer_norm, ctx.xp) if gpu else layer_norm_rows.forward
            out, xhat, invstd = forward(input.reshape(-1, width),
                                        *(None if p is None else p.reshape(1, -1) for p in (weight, bias)), eps)
            stats_shape = input.shape[:input.ndim - normalized_ndim] + (1,) * normalized_ndim
            ctx.save_for_backward(xhat.reshape(input.shape), invstd.reshape(stats_shape), weight, input)
            return out.reshape(input.shape)
        xhat, _, _, invstd = _standardize(ctx.xp, input, axes, eps)
        ctx.save_for_backward(xhat, invstd, weight, input)
        return _affine(xhat, weight, bias)

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight, input = ctx.saved_tensors
        if recording(input):  # xhat and invstd, saved from forward, must be differentiated too
            xhat, _, _, invstd = _standardize(ctx.xp, input, ctx.axes, ctx.eps)
        elif fused_cuda.takes(ctx.xp, g, xhat, *(() if weight is None else (weight,))):  # one kernel
            return _layer_norm_rows_backward(ctx, partial(norm_cuda.layer_norm_backward, ctx.xp), g, xhat,
                                             invstd, weight)
        elif layer_norm_rows.applies(ctx.xp, g, xhat, weight):  # by blocks of rows
            return _layer_norm_rows_backward(ctx, layer_norm_rows.backward, g, xhat, invstd, weight)
        leading = tuple(range(g.ndim - len(ctx.axes)))
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            gxhat = g if weight is None else g * weight
            grad_input = _standardize_backward(gxhat, xhat, invstd, ctx.axes)
        if ctx.needs_input_grad[1]:
            grad_weight = (g * xhat).sum(axis=leading)
        if ctx.needs_input_grad[2]:
            grad_bias = g.sum(axis=leading)
        return grad_input, grad_weight, grad_bias, None, None


def _layer_norm_rows_backward(ctx, backward, g, xhat, invstd, weight):
    """Layer norm's gradients by ``backward`` on (rows, width) views of its arrays."""
    width = math.prod(g.shape[g.ndim - len(ctx.axes):])
    gi, gw, gb = backward(g.reshape(-1, width), xhat.reshape(-1, width), invstd.reshape(-1, 1),
                          None if weight is None else weight.reshape(1, -1), *ctx.needs_input_grad[:3])
    return (None if gi is None else gi.reshape(g.shape), None if gw is None else gw.reshape(weight.shape),
            None if gb is None else gb.reshape(g.shape[g.ndim - len(ctx.axes):]), None, None)


def _group_patterns(xp, x, num_groups, *params):
    """Per-channel ``params`` (None or (C,)) spread over one sample of ``x`` (N, C, ...)
    as (groups, C/groups * positions): the affine of a sample's rows in group norm."""
    positions = x.size // (x.shape[0] * x.shape[1]) if x.shape[0] else 1
    return [None if p is None else xp.repeat(p, positions).reshape(num_groups, -1) for p in params]


class NativeGroupNorm(Op):
    """Normalisation over each group of channels (and all spatial dims) per sample,
    then a per-channel affine."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, weight, bias, num_groups, eps):
        xp = ctx.xp
        ctx.num_groups, ctx.eps = num_groups, eps
        grouped = input.reshape(input.shape[0], num_groups, -1)
        if layer_norm_rows.applies(xp, input, weight, bias):  # a row per sample and group, by blocks
            rows = grouped.reshape(-1, grouped.shape[2])
            out, xhat, invstd = layer_norm_rows.forward(rows, *_group_patterns(xp, input, num_groups, weight, bias),
                                                        eps, group=num_groups)
            ctx.save_for_backward(xhat.reshape(input.shape), invstd.reshape(grouped.shape[:2] + (1,)), weight, input)
            return out.reshape(input.shape)
        xhat, _, _, invstd = _standardize(xp, grouped, (2,), eps)
        xhat = xhat.reshape(input.shape)
        ctx.save_for_backward(xhat, invstd, weight, input)
        if weight is None:
            return _affine(xhat, weight, bias, _channel_shape(input.ndim))
        return _channel_affine(xp, xhat, weight, bias)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        xhat, invstd, weight, input = ctx.saved_tensors
        grouped = (g.shape[0], ctx.num_groups, -1)
        if recording(input):  # xhat and invstd, saved from forward, must be differentiated too
            xhat, _, _, invstd = _standardize(xp, input.reshape(grouped), (2,), ctx.eps)
            xhat = xhat.reshape(input.shape)
        elif layer_norm_rows.applies(xp, g, xhat, weight):
            width = g.size // (g.shape[0] * ctx.num_groups)
            gi, gw, gb = layer_norm_rows.backward(
                g.reshape(-1, width), xhat.reshape(-1, width), invstd.reshape(-1, 1),
                _group_patterns(xp, g, ctx.num_groups, weight)[0], *ctx.needs_input_grad[:3], group=ctx.num_groups,
                positions=g.size // (g.shape[0] * g.shape[1]))
            return None if gi is None else gi.reshape(g.shape), gw, gb, None, None
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            gxhat = (g if weight is None else _channel_affine(xp, g, weight)).reshape(grouped)
            grad_input = _standardize_backward(gxhat, xhat.reshape(grouped), invstd, (2,)).reshape(g.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = _channel_dot(xp, g, xhat)
        if ctx.needs_input_grad[2]:
            grad_bias = _channel_sum(xp, g)
        return grad_input, grad_weight, grad_bias, None, None


class RmsNorm(Op):
    """x / sqrt(mean(x^2) + eps) over the trailing dims, times ``weight``."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, weight, normalized_ndim, eps):
        xp = ctx.xp
        axes = tuple(range(input.ndim - normalized_ndim, input.ndim))
        rms_inv = _rms_inv(xp, input, axes, eps)
        ctx.save_for_backward(input, weight, rms_inv)
        ctx.axes, ctx.eps = axes, eps
        out = input * rms_inv
        return out if weight is None else out * weight

    @staticmethod
    def backward(ctx, g):
        input, weight, rms_inv = ctx.saved_tensors
        if recording(input):  # rms_inv, saved from forward, must be differentiated too
            rms_inv = _rms_inv(ctx.xp, input, ctx.axes, ctx.eps)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            gy = g if weight is None else g * weight
            mean_gx = (gy * input).mean(axis=ctx.axes, keepdims=True)
            grad_input = (gy - input * (rms_inv * rms_inv * mean_gx)) * rms_inv
        if ctx.needs_input_grad[1]:
            grad_weight = (g * input * rms_inv).sum(axis=tuple(range(g.ndim - len(ctx.axes))))
        return grad_input, grad_weight, None, None


def _rms_inv(xp, x, axes, eps):
    return 1 / xp.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)


_RmsNormAsMul = type("Mul", (RmsNorm,), {"__doc__": RmsNorm.__doc__})  # PyTorch's grad_fn: MulBackward0


class ClampedNorm(Op):
    """max(||x||_p, eps) along ``dim``, keeping the dim (the divisor of ``normalize``)."""

    double_backward = True

    @staticmethod
    def forward(ctx, input, p, dim, eps):
        xp = ctx.xp
        norm = _p_norm(xp, input, p, dim)
        ctx.save_for_backward(input, norm)
        ctx.p, ctx.dim, ctx.eps = p, dim, eps
        return xp.maximum(norm, eps)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.xp
        input, norm = ctx.saved_tensors
        if recording(input):  # norm, saved from forward, must be differentiated too
            norm = _p_norm(xp, input, ctx.p, ctx.dim)
        g = g * (norm > ctx.eps)  # the clamp passes no gradient
        safe = xp.where(norm == 0, 1, norm)
        if ctx.p == float("inf"):  # shared evenly by the entries that attain the max
            hit = xp.abs(input) == norm
            return xp.sign(input) * hit * (g / hit.sum(axis=ctx.dim, keepdims=True)), None, None, None
        if ctx.p == 2:
            return input * (g / safe), None, None, None
        a = xp.abs(input)
        return xp.sign(input) * a ** (ctx.p - 1) * (g / safe ** (ctx.p - 1)), None, None, None


def _p_norm(xp, x, p, dim):
    if p == float("inf"):
        return xp.abs(x).max(axis=dim, keepdims=True)
    if p == 2:
        return xp.sqrt((x * x).sum(axis=dim, keepdims=True))
    return (xp.abs(x) ** p).sum(axis=dim, keepdims=True) ** (1 / p)


# --- functional forms -------------------------------------------------------------

def _check_vector(name, t, n):
    if t is not None and t.numel() != n:
        raise RuntimeError(f"{name} should contain {n} elements not {t.numel()}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    if input.ndim < 2:
        raise ValueError(f"Expect: input of shape (N, C, ...) with 2 or more dims, Actual: {list(input.shape)}")
    channels = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_vector(name, t, channels)
    if training:
        if input.numel() // channels == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.size()}")
    elif running_mean is None or running_var is None:
        raise RuntimeError(f"{'running_mean' if running_mean is None else 'running_var'} must be defined "
                           "in evaluation mode")
    return NativeBatchNorm.apply(input, weight, bias, running_mean=running_mean, running_var=running_var,
                                 training=bool(training), momentum=float(momentum), eps=float(eps))


def _trailing_shape(input, normalized_shape, name):
    """``normalized_shape`` as a tuple, checked against the input's trailing dims."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) == 0 or len(shape) > input.ndim or tuple(input.shape[input.ndim - len(shape):]) != shape:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    return shape


def _check_affine_shape(t, shape, name):
    if t is not None and tuple(t.shape) != shape:
        raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of shape "
                           f"{list(t.shape)} and normalized_shape = {list(shape)}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    shape = _trailing_shape(input, normalized_shape, "layer_norm")
    _check_affine_shape(weight, shape, "weight")
    _check_affine_shape(bias, shape, "bias")
    return NativeLayerNorm.apply(input, weight, bias, len(shape), float(eps))


def rms_norm(input, normalized_shape, weight=None, eps=None):
    shape = _trailing_shape(input, normalized_shape, "rms_norm")
    _check_affine_shape(weight, shape, "weight")
    if eps is None:  # PyTorch's default: the machine epsilon of the input's dtype
        eps = np.finfo(input._data.dtype).eps
    return _RmsNormAsMul.apply(input, weight, len(shape), float(eps))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    channels = input.shape[1]
    if channels % num_groups:
        raise RuntimeError("Expected number of channels in input to be divisible by num_groups, but got input "
                           f"of shape {list(input.shape)} and num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (t.ndim != 1 or t.numel() != channels):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in "
                               f"input, but got {name} of shape {list(t.shape)} and input of shape "
                               f"{list(input.shape)}")
    return NativeGroupNorm.apply(input, weight, bias, int(num_groups), float(eps))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Each (sample, channel) normalised over its spatial dims; with ``use_input_stats=False``
    the running statistics are used instead, as batch_norm in evaluation mode."""
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    if input.ndim < 3 or input.numel() // (input.shape[0] * input.shape[1]) == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {input.size()}")
    if running_mean is not None or running_var is not None:
        # PyTorch averages each instance's statistics (unbiased variance) over the batch
        data = input._data
        axes = tuple(range(2, input.ndim))
        _update_running(running_mean, data.mean(axis=axes).mean(axis=0), momentum)
        _update_running(running_var, data.var(axis=axes, ddof=1).mean(axis=0), momentum)
    return group_norm(input, input.shape[1], weight, bias, eps)


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p, eps) along ``dim``."""
    if out is not None:
        raise NotImplementedError("normalize(out=...) is not supported; use the returned tensor")
    dim = normalize_dim(dim, input.ndim)
    return div(input, ClampedNorm.apply(input, float(p), dim, float(eps)))
