"""The dropout family as in ``torch.nn.functional``: dropout, dropout1d/2d/3d,
alpha_dropout and feature_alpha_dropout (the module is ``dropouts``, since
``ops.dropout`` is the function). Masks come from distnn's seeded generator;
the product with the mask is an ordinary ``mul`` (``mul_`` in place).
"""

import warnings

from .. import backend, random
from ..tensor import _wrap
from .elementwise import add, mul

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"]

TENSOR_METHODS = ()

_SELU_ALPHA = 1.7580993408473766  # -scale * alpha of SELU: where alpha dropout sends dropped units


def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout(input, p, training, inplace, mask_shape, alpha=False):
    """input * noise (+ b for alpha dropout) with a Bernoulli(1 - p) keep-mask of ``mask_shape``,
    drawn from the seeded generator and broadcast over the input."""
    _check_p(p)
    if not training or p == 0 or input.numel() == 0:
        return input
    dtype = input._data.dtype
    shift = None
    if p == 1:  # everything dropped, alpha dropout included (as PyTorch)
        noise = backend.array_module(input._data).zeros((), dtype)
    elif alpha:
        noise = (random.sample("uniform", mask_shape, dtype, input.device) < 1 - p).astype(dtype)
        a = 1.0 / ((_SELU_ALPHA * _SELU_ALPHA * p + 1) * (1 - p)) ** 0.5
        shift = _wrap((noise - 1) * dtype.type(_SELU_ALPHA * a) + dtype.type(_SELU_ALPHA * a * p))
        noise *= dtype.type(a)
    else:
        # PyTorch divides in the input's dtype: the kept scale is float32(1) / float32(1 - p)
        noise = random.scaled_keep_mask(mask_shape, dtype, input.device, 1 - p, dtype.type(1) / dtype.type(1 - p))
    noise = _wrap(noise)
    if inplace:
        input.mul_(noise)
        return input if shift is None else input.add_(shift)
    out = mul(input, noise)
    return out if shift is None else add(out, shift)


def _feature_mask_shape(shape, batched):
    """Keep or drop whole channels: one draw per (sample,) channel."""
    if len(shape) < 2:
        raise RuntimeError(f"Feature dropout requires at least 2 dimensions in the input, got {list(shape)}")
    lead = 2 if batched else 1
    return tuple(shape[:lead]) + (1,) * (len(shape) - lead)


def dropout(input, p=0.5, training=True, inplace=False):
    return _dropout(input, p, training, inplace, input._data.shape)


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _dropout(input, p, training, inplace, input._data.shape, alpha=True)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    return _dropout(input, p, training, inplace, _feature_mask_shape(input.shape, True), alpha=True)


def dropout1d(input, p=0.5, training=True, inplace=False):
    _check_p(p)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input. Note that "
                           "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial dimension, "
                           "a channel dimension, and an optional batch dimension (i.e. 2D or 3D inputs).")
    return _dropout(input, p, training, inplace, _feature_mask_shape(input.shape, input.ndim == 3))


def _warn_feature_dims(name, ndim, spatial):
    if ndim not in (spatial + 1, spatial + 2):
        warnings.warn(f"{name}: Received a {ndim}-D input to {name}, which is deprecated and will result in an "
                      "error in a future release. To retain the behavior and silence this warning, please use "
                      f"dropout instead. Note that {name} exists to provide channel-wise dropout on inputs with "
                      f"{spatial} spatial dimensions, a channel dimension, and an optional batch dimension "
                      f"(i.e. {spatial + 1}D or {spatial + 2}D inputs).", stacklevel=3)


def dropout2d(input, p=0.5, training=True, inplace=False):
    _check_p(p)
    _warn_feature_dims("dropout2d", input.ndim, 2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel "
                      "dim. This behavior will change in a future release to interpret the input as one without "
                      "a batch dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout "
                      "behavior, please switch to using dropout1d instead.", stacklevel=2)
    return _dropout(input, p, training, inplace, _feature_mask_shape(input.shape, True))


def dropout3d(input, p=0.5, training=True, inplace=False):
    _check_p(p)
    _warn_feature_dims("dropout3d", input.ndim, 3)
    return _dropout(input, p, training, inplace, _feature_mask_shape(input.shape, input.ndim == 5))
