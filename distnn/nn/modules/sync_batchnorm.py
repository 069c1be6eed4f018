"""``SyncBatchNorm``: batch norm whose training statistics span every rank of a process
group, so N ranks on B/N samples each normalise (forward and backward) as one process on
all B; and ``convert_sync_batchnorm``, which swaps it in for a model's BatchNorm layers.

The collectives live a layer above ``nn`` (``distnn.distributed``), which ``nn`` never
imports: ``distnn.distributed`` hands itself over (``register_collectives``) when it is
imported. Until then no process group can exist, and the layer is plain BatchNorm.
"""

import numpy as np  # dtype metadata only

from ...autograd.function import Op
from ...ops.channel_rows import _channel_dot, _channel_shape, _one_pass
from ...ops.normalization import _affine, _update_running
from .normalization import _BatchNorm

_collectives = None  # distnn.distributed, once it has registered itself


def register_collectives(distributed):
    """Called by ``distnn.distributed`` as it is imported: the collectives a synchronised
    forward and backward use."""
    global _collectives
    _collectives = distributed

__all__ = ["SyncBatchNorm"]


class _SyncBatchNormFunction(Op):
    """Training-mode batch norm over the union of every rank's batch. Forward all-gathers
    each rank's (mean, M2, count) per channel and combines them in rank order (Chan et
    al.'s pairwise update, as accurate as one pass over all the data); backward
    all-reduces ``sum_dy`` and ``sum_dy_xmu``, as PyTorch's SyncBatchNorm does. The weight
    and bias gradients stay per rank: DistributedDataParallel reduces those."""

    @staticmethod
    def forward(ctx, input, weight, bias, *, running_mean, running_var, eps, momentum, group):
        dist = _collectives
        xp = ctx.xp
        channels = input.shape[1]
        stat_dtype = input.dtype if input.dtype.itemsize >= 4 else np.dtype(np.float32)
        local = _local_moments(xp, input, stat_dtype)  # [mean (C), M2 (C), count]
        world = dist.get_world_size(group)
        gathered = xp.empty(world * local.size, stat_dtype)
        dist.all_gather_into_tensor(gathered, local, group)
        mean, m2, count = _combine_moments(gathered.reshape(world, -1), channels)
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count} over the "
                             f"{world} ranks of the group (input size {list(input.shape)} on rank "
                             f"{dist.get_rank(group)})")
        var = m2 / count
        invstd = 1 / xp.sqrt(var + eps)
        _update_running(running_mean, mean, momentum)
        _update_running(running_var, var * (count / (count - 1)), momentum)
        shape = _channel_shape(input.ndim)
        xhat = (input - mean.reshape(shape).astype(input.dtype, copy=False)) * \
            invstd.reshape(shape).astype(input.dtype, copy=False)
        ctx.save_for_backward(xhat, weight)
        ctx.invstd, ctx.count, ctx.group = invstd, count, group
        return _affine(xhat, weight, bias, shape)

    @staticmethod
    def backward(ctx, g):
        dist = _collectives
        xp = ctx.xp
        xhat, weight = ctx.saved_tensors
        invstd, count = ctx.invstd, ctx.count
        channels = g.shape[1]
        shape = _channel_shape(g.ndim)
        axes = (0,) + tuple(range(2, g.ndim))
        # per channel: sum(g) and sum(g * xhat) on this rank (the weight's and bias's gradients)
        sum_dy = g.sum(axis=axes).astype(invstd.dtype, copy=False)
        if g.size and _one_pass(g) and _one_pass(xhat):  # (an empty batch has no (N, C, -1) shape)
            sum_dy_xhat = _channel_dot(xp, g, xhat).astype(invstd.dtype, copy=False)
        else:
            sum_dy_xhat = (g * xhat).sum(axis=axes).astype(invstd.dtype, copy=False)
        grad_input = None
        if ctx.needs_input_grad[0]:
            # PyTorch's all-reduced pair: sum(dy) and sum(dy * (x - mean)) = sum(dy * xhat) / invstd
            combined = xp.concatenate([sum_dy, sum_dy_xhat / invstd])
            dist.all_reduce(combined, group=ctx.group)
            mean_dy = combined[:channels] / count
            mean_dy_xhat = combined[channels:] * invstd / count
            scale = invstd if weight is None else invstd * weight
            dtype = g.dtype
            grad_input = g * scale.reshape(shape).astype(dtype, copy=False)
            grad_input -= xhat * (scale * mean_dy_xhat).reshape(shape).astype(dtype, copy=False)
            grad_input -= (scale * mean_dy).reshape(shape).astype(dtype, copy=False)
        grad_weight = sum_dy_xhat.astype(g.dtype, copy=False) if ctx.needs_input_grad[1] else None
        grad_bias = sum_dy.astype(g.dtype, copy=False) if ctx.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias


# PyTorch's grad_fn name: SyncBatchNormBackward
sync_batch_norm = type("SyncBatchNorm", (_SyncBatchNormFunction,),
                       {"__doc__": _SyncBatchNormFunction.__doc__, "_node_suffix": "Backward"})


def _local_moments(xp, input, dtype):
    """This rank's [mean (C), M2 (C), count] per channel, M2 the sum of squared deviations
    from the rank's own mean; zeros for an empty batch (its count 0 drops it from the
    combination, but the rank still takes part in the collective)."""
    channels = input.shape[1]
    count = input.size // channels if channels else 0
    out = xp.zeros(2 * channels + 1, dtype)
    if count:
        axes = (0,) + tuple(range(2, input.ndim))
        x = input.astype(dtype, copy=False)
        mean = x.mean(axis=axes, keepdims=True)
        xmu = x - mean
        m2 = _channel_dot(xp, xmu, xmu) if _one_pass(xmu) else (xmu * xmu).sum(axis=axes)
        out[:channels] = mean.reshape(-1)
        out[channels:2 * channels] = m2.reshape(-1)
        out[-1] = count
    return out


def _combine_moments(rows, channels):
    """Every rank's (mean, M2, count) rows combined in rank order: the group's mean, M2
    and count (a Python int). The same fixed order on every rank gives every rank the
    same bits."""
    mean = m2 = None
    total = 0
    for row in rows:
        n = int(row[-1])
        if n == 0:
            continue
        mean_r, m2_r = row[:channels], row[channels:2 * channels]
        if mean is None:
            mean, m2 = mean_r.copy(), m2_r.copy()
        else:
            delta = mean_r - mean
            both = total + n
            mean = mean + delta * (n / both)
            m2 = m2 + m2_r + delta * delta * (total * n / both)
        total += n
    if mean is None:  # every rank's batch was empty
        mean = m2 = rows[0, :channels] * 0
    return mean, m2, total


class SyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm``: batch norm over (N, C, +) input whose training
    statistics are those of the whole ``process_group`` (default: the world). In eval
    mode, in a group of one rank, or with no process group initialised it is plain
    BatchNorm. Works on CPU and GPU arrays alike (PyTorch's needs a GPU)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _check_non_zero_input_channels(self, input):
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")

    def forward(self, input):
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        if not self._needs_sync():
            return super().forward(input)
        factor = self._exponential_average_factor()
        tracked = self.track_running_stats
        return sync_batch_norm.apply(input, self.weight, self.bias,
                                     running_mean=self.running_mean if tracked else None,
                                     running_var=self.running_var if tracked else None,
                                     eps=float(self.eps), momentum=float(factor), group=self.process_group)

    def _needs_sync(self):
        """In training, with a process group of more than one rank (as PyTorch decides)."""
        if not self.training:
            return False
        dist = _collectives
        return dist is not None and dist.is_initialized() and dist.get_world_size(self.process_group) > 1

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Every ``BatchNorm*d`` in ``module`` replaced by a SyncBatchNorm holding the same
        parameters and buffers (the very tensors, so ``requires_grad`` and the optimizer's
        references carry over) and the same training flag; a BatchNorm given directly
        comes back as a new SyncBatchNorm, anything else as itself."""
        converted = module
        if isinstance(module, _BatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group, bias=module.bias is not None)
            if module.affine:
                converted.weight = module.weight
                converted.bias = module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.training = module.training
            if hasattr(module, "qconfig"):
                converted.qconfig = module.qconfig
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted
