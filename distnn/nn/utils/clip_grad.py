"""Gradient clipping: ``clip_grad_norm_`` (one total norm over all gradients,
then every gradient scaled by the same factor) and ``clip_grad_value_``.

The work is a few vectorised array calls per gradient, done in place on
``p.grad``; ``foreach`` is accepted for PyTorch compatibility and ignored.
"""

import math
import types
import warnings

import numpy as np

from ... import backend
from ...autograd import grad_mode
from ...tensor import Tensor, _wrap

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_list(tensors):
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _vector_norm(a, p):
    """The ``p``-norm of all elements of array ``a`` as a 0-d array of ``a``'s dtype."""
    # numpy's ufuncs return a 0-d array's result as a scalar (np.float32): made an
    # array again here, since a Tensor must hold an ndarray (numpy(), the device).
    return backend.as_array(_norm(a, p))


def _norm(a, p):
    xp = backend.array_module(a)
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    if p == 2.0:
        flat = a.ravel()
        return xp.sqrt(xp.asarray(xp.vdot(flat, flat)))
    if p == 1.0:
        return xp.asarray(xp.abs(a).sum())
    if p == math.inf:
        return xp.asarray(xp.abs(a).max())
    if p == -math.inf:
        return xp.asarray(xp.abs(a).min())
    if p == 0.0:
        return xp.asarray(xp.count_nonzero(a), dtype=a.dtype)
    return xp.asarray((xp.abs(a) ** p).sum() ** (1.0 / p))


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the norms of ``tensors``: as if they were concatenated into one vector."""
    tensors = _as_list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return _wrap(backend.xp_for(None).zeros((), dtype="float32"))
    device = tensors[0].device
    xp = backend.array_module(tensors[0]._data)
    norms = [backend.move_to(_vector_norm(t._data, norm_type), device) for t in tensors]
    total = _vector_norm(xp.stack(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and scale the "
                           "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    return _wrap(total)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale every ``p.grad`` by ``min(1, max_norm / (total_norm + 1e-6))``."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    xp = backend.array_module(total_norm._data)
    coef = xp.minimum(float(max_norm) / (total_norm._data + 1e-6), 1.0)
    with grad_mode.no_grad():
        for g in grads:
            g.mul_(_wrap(backend.move_to(coef, g.device)))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Clip the gradients of ``parameters`` in place so their total ``norm_type``-norm is at most
    ``max_norm``; returns the total norm from before clipping (a 0-dim Tensor)."""
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = _as_list(parameters)
    if is_generator and not parameters:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    grads = [p.grad for p in parameters if p.grad is not None]
    # A non-finite norm scales the gradients to nan/inf silently, as in PyTorch (numpy would warn).
    with np.errstate(over="ignore", invalid="ignore"):
        total_norm = get_total_norm(grads, norm_type, error_if_nonfinite)
        clip_grads_with_norm_(parameters, max_norm, total_norm)
    return total_norm


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Deprecated alias of ``clip_grad_norm_``."""
    warnings.warn("`torch.nn.utils.clip_grad_norm` is now deprecated in favor of "
                  "`torch.nn.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every ``p.grad`` in place to ``[-clip_value, clip_value]``."""
    clip_value = float(clip_value)
    with grad_mode.no_grad():
        for p in _as_list(parameters):
            if p.grad is not None:
                p.grad.clamp_(min=-clip_value, max=clip_value)
