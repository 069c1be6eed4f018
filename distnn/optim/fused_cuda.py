"""SGD's and Adam/AdamW's GPU steps as one CuPy ``ElementwiseKernel`` launch per
parameter (issue #17): as array ops each step is up to a dozen launches, and a
model's many small parameters make the step launch-bound.

Each kernel does, element by element, the operations of the array path in
``sgd.py`` / ``adam.py`` in the same order, in the parameter's dtype ``T``, with
every scalar rounded to ``T`` on the host as numpy rounds a Python float operand.
Scalars are kernel arguments, so one compiled kernel serves every lr and beta;
CuPy compiles a kernel once per dtype and device, at its first launch, and caches it.
"""

import numpy as np

from .. import backend
from ..backend import _import_cupy

_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# NVRTC contracts ``a * b + c`` into one fma by default, which rounds once where
# the array path rounds twice; without it the GPU computes the CPU path's bits.
_OPTIONS = ("--fmad=false",)

# effective_grad (optimizer.py): -grad if maximize, plus weight_decay * param.
# ``param * weight_decay + g`` is the array path's ``param * wd - grad`` when
# maximizing, since a - b is a + (-b) in IEEE arithmetic.
_EFFECTIVE_GRAD = """
T g = maximize ? -grad : grad;
if (coupled_decay) g = param * weight_decay + g;
"""

_SGD = ("T grad, T weight_decay, T neg_lr, int32 maximize, int32 coupled_decay",
        "T param",
        _EFFECTIVE_GRAD + """
param = param + g * neg_lr;
""")

# On the first step the buffer is the effective gradient itself (its old contents
# are never read). ``g * one_minus_dampening`` is exactly ``g`` when dampening is 0.
_SGD_MOMENTUM = ("T grad, T weight_decay, T momentum, T one_minus_dampening, T neg_lr, "
                 "int32 maximize, int32 coupled_decay, int32 nesterov, int32 first",
                 "T param, T momentum_buffer",
                 _EFFECTIVE_GRAD + """
if (first) {
    momentum_buffer = g;
} else {
    momentum_buffer = momentum_buffer * momentum + g * one_minus_dampening;
}
g = nesterov ? g + momentum_buffer * momentum : momentum_buffer;
param = param + g * neg_lr;
""")

# adam_grad and update_moments (optimizer.py), then Adam's denominator and step.
_ADAM_IN = ("T grad, T param_scale, T weight_decay, T one_minus_beta1, T one_minus_beta2, T beta2, "
            "T bias_correction2_sqrt, T eps, T neg_step_size, "
            "int32 maximize, int32 coupled_decay, int32 decoupled_decay")
_ADAM_MOMENTS = """
if (decoupled_decay) param = param * param_scale;
""" + _EFFECTIVE_GRAD + """
exp_avg = exp_avg + (g - exp_avg) * one_minus_beta1;
exp_avg_sq = exp_avg_sq * beta2 + (g * one_minus_beta2) * g;
"""


def _adam_update(second_moment):
    """The rest of Adam's step, from ``second_moment``: ``exp_avg_sq`` or, with amsgrad,
    its running maximum."""
    return f"""
T denom = sqrt({second_moment}) / bias_correction2_sqrt + eps;
param = param + (exp_avg / denom) * neg_step_size;
"""


_ADAM = (_ADAM_IN,
         "T param, T exp_avg, T exp_avg_sq",
         _ADAM_MOMENTS + _adam_update("exp_avg_sq"))

# numpy.maximum: a NaN in either operand wins (CUDA's fmax would drop it).
_ADAM_AMSGRAD = (_ADAM_IN,
                 "T param, T exp_avg, T exp_avg_sq, T max_exp_avg_sq",
                 _ADAM_MOMENTS + """
if (!(max_exp_avg_sq >= exp_avg_sq || max_exp_avg_sq != max_exp_avg_sq)) max_exp_avg_sq = exp_avg_sq;
""" + _adam_update("max_exp_avg_sq"))

_SOURCES = {"sgd": _SGD, "sgd_momentum": _SGD_MOMENTUM, "adam": _ADAM, "adam_amsgrad": _ADAM_AMSGRAD}
_kernels = {}


def get_kernel(name):
    """The ``ElementwiseKernel`` called ``name`` (a key of ``_SOURCES``), built on first use."""
    kernel = _kernels.get(name)
    if kernel is None:
        in_params, out_params, operation = _SOURCES[name]
        kernel = _import_cupy().ElementwiseKernel(in_params, out_params, operation, name=f"distnn_{name}",
                                                  options=_OPTIONS)
        _kernels[name] = kernel
    return kernel


def can_fuse(arrays):
    """True for GPU arrays of one shape and one float32 or float64 dtype, all C-contiguous
    (a strided view could overlap itself, and then the in-place writes would race)."""
    first = arrays[0]
    return first.dtype in _FUSED_DTYPES and all(
        backend.is_gpu_array(a) and a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
        for a in arrays)


def sgd_step(param, grad, momentum_buffer, *, first, lr, momentum, dampening, weight_decay, nesterov,
             maximize):
    """One SGD step, in place on ``param`` and ``momentum_buffer`` (None without momentum);
    ``first``: the buffer is new, and this step fills it with the effective gradient."""
    t = param.dtype.type
    flags = np.int32(bool(maximize)), np.int32(weight_decay != 0)
    if momentum_buffer is None:
        get_kernel("sgd")(grad, t(weight_decay), t(-lr), *flags, param)
        return
    get_kernel("sgd_momentum")(grad, t(weight_decay), t(momentum), t(1 - dampening), t(-lr), *flags,
                               np.int32(bool(nesterov)), np.int32(bool(first)), param, momentum_buffer)


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay,
              decoupled, maximize, bias_correction2_sqrt, step_size):
    """One Adam / AdamW step, in place on ``param`` and its moments (``max_exp_avg_sq``:
    None without amsgrad); the bias corrections are the caller's, from its host-side step."""
    t = param.dtype.type
    decays = weight_decay != 0
    scalars = (t(1 - lr * weight_decay), t(weight_decay), t(1 - beta1), t(1 - beta2), t(beta2),
               t(bias_correction2_sqrt), t(eps), t(-step_size),
               np.int32(bool(maximize)), np.int32(decays and not decoupled), np.int32(decays and decoupled))
    if max_exp_avg_sq is None:
        get_kernel("adam")(grad, *scalars, param, exp_avg, exp_avg_sq)
    else:
        get_kernel("adam_amsgrad")(grad, *scalars, param, exp_avg, exp_avg_sq, max_exp_avg_sq)
