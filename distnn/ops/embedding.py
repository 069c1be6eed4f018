"""Integer-index encodings whose public home is nn.functional: embedding (rows of a
weight table, the ``padding_idx`` row getting no gradient) and one_hot.
"""

import numpy as np

from ..autograd.function import Op
from ..backend import array_module
from ..debug import checks_values
from . import cuda_source, embedding_cuda
from .common import no_grad_result
from .gather_scatter import _check_range
from .linear_map import linear_map

# embedding and one_hot live in nn.functional only: torch.embedding takes (weight, input).
__all__ = []

TENSOR_METHODS = ()

_INT64 = np.dtype(np.int64)


class Embedding(Op):
    double_backward = True

    @staticmethod
    def forward(ctx, indices, weight, padding_idx, scale_grad_by_freq):
        ctx.weight_shape, ctx.padding_idx, ctx.scale = weight.shape, padding_idx, scale_grad_by_freq
        ctx.save_for_backward(indices)
        return ctx.xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        args = (indices, ctx.weight_shape, ctx.padding_idx, ctx.scale)
        return None, linear_map(ctx.xp, g, _rows_to_table, _table_to_rows, args), None, None


def _row_scale(xp, flat, weight_shape, padding_idx, scale, dtype):
    """What each table row's summed gradient is multiplied by (None: 1 everywhere)."""
    if not scale and padding_idx is None:
        return None
    factor = xp.ones(weight_shape[0], dtype)
    if scale:
        factor /= xp.maximum(xp.bincount(flat, minlength=weight_shape[0]), 1).astype(dtype)
    if padding_idx is not None:
        factor[padding_idx] = 0
    return factor[:, None]


def _rows_to_table(xp, g, indices, weight_shape, padding_idx, scale):
    """Embedding's backward: each looked-up row's gradient summed into its table row."""
    flat = indices.reshape(-1)
    if cuda_source.takes(xp, g):  # no atomics: the CPU's bits
        grad = embedding_cuda.rows_to_table(xp, g, flat, weight_shape)
    else:
        grad = xp.zeros(weight_shape, g.dtype)
        xp.add.at(grad, flat, g.reshape(flat.size, -1))
    factor = _row_scale(xp, flat, weight_shape, padding_idx, scale, g.dtype)
    return grad if factor is None else grad * factor


def _table_to_rows(xp, u, indices, weight_shape, padding_idx, scale):
    """The backward of ``_rows_to_table``: table rows looked up again, the padding row as
    zeros. Not scaled by frequency: as in PyTorch, the first backward alone does that
    (so with ``scale_grad_by_freq`` this is not the exact adjoint, and matches PyTorch)."""
    factor = _row_scale(xp, indices.reshape(-1), weight_shape, padding_idx, False, u.dtype)
    return xp.take(u if factor is None else u * factor, indices, axis=0)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` at the integer ``input``; the ``padding_idx`` row gets no gradient."""
    idx = input._data
    if idx.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {input.type()} instead")
    if weight.ndim != 2:
        raise RuntimeError(f"'weight' must be 2-D, Expect: weight.ndim == 2, Actual: {weight.ndim}")
    if sparse:
        raise NotImplementedError("sparse embedding gradients are not supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"Padding_idx must be within num_embeddings, Expect: [{-num}, {num}), "
                             f"Actual: {padding_idx}")
        padding_idx %= num
    _check_range(idx, num, 0, IndexError, "index out of range in self")
    if max_norm is not None:
        _renorm_rows(weight, idx, max_norm, norm_type)
    return Embedding.apply(input, weight, padding_idx, bool(scale_grad_by_freq))


def _renorm_rows(weight, idx, max_norm, norm_type):
    """Scale the looked-up rows of ``weight`` in place to norm <= max_norm (as PyTorch does)."""
    xp = array_module(weight._data)
    rows = xp.unique(idx.reshape(-1))
    w = weight._data[rows]
    norms = (xp.abs(w) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    weight._data[rows] = w * scale[:, None]
    weight._vc[0] += 1


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding along a new last dim of size ``num_classes`` (-1: max + 1)."""
    a = tensor._data
    if a.dtype != _INT64:
        raise RuntimeError(f"one_hot is only applicable to index tensor of type LongTensor, Actual: {a.dtype}")
    xp = array_module(a)
    if num_classes == -1:
        if a.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(a.max()) + 1
    # PyTorch leaves these to device-side asserts on a GPU rather than wait for it; so do we, outside debug mode
    if a.size and checks_values(a):
        if int(a.min()) < 0:
            raise RuntimeError("Class values must be non-negative.")
        if int(a.max()) >= num_classes:
            raise RuntimeError(f"Class values must be smaller than num_classes, Expect: < {num_classes}, "
                               f"Actual: {int(a.max())}")
    return no_grad_result((a[..., None] == xp.arange(num_classes)).astype(_INT64))
