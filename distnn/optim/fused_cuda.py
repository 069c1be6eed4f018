"""SGD's and Adam/AdamW's GPU steps as one kernel launch per parameter (issue #17): as
array ops each step is up to a dozen launches, and a model's many small parameters
make the step launch-bound. The kernels are raw CUDA (ops/cuda_source.py): CuPy's
``ElementwiseKernel`` took 33 us of host time a call with these eleven arguments.

Each kernel does, element by element, the operations of the array path in
``sgd.py`` / ``adam.py`` in the same order, in the parameter's dtype ``T``, with
every scalar rounded to ``T`` on the host as numpy rounds a Python float operand.
Scalars are kernel arguments, so one compiled kernel serves every lr and beta.
"""

import numpy as np

from .. import backend
from ..ops.cuda_source import FLOAT_PREAMBLE, Source, index_type

_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# NVRTC contracts ``a * b + c`` into one fma by default, which rounds once where
# the array path rounds twice; without it the GPU computes the CPU path's bits.
_SOURCE = Source(FLOAT_PREAMBLE + r"""
// effective_grad (optimizer.py): -grad if maximize, plus weight_decay * param.
// param * weight_decay + g is the array path's param * wd - grad when maximizing,
// since a - b is a + (-b) in IEEE arithmetic.
__device__ __forceinline__ T effective_grad(T grad, T param, T weight_decay, int maximize, int coupled_decay) {
    T g = maximize ? -grad : grad;
    if (coupled_decay) g = param * weight_decay + g;
    return g;
}

extern "C" __global__ void distnn_sgd(const T* grad, T* param, T weight_decay, T neg_lr, int maximize,
                                      int coupled_decay, I total) {
    GRID_STRIDE_LOOP(i, total) {
        T g = effective_grad(grad[i], param[i], weight_decay, maximize, coupled_decay);
        param[i] = param[i] + g * neg_lr;
    }
}

// On the first step the buffer is the effective gradient itself (its old contents are
// never read). g * one_minus_dampening is exactly g when dampening is 0.
extern "C" __global__ void distnn_sgd_momentum(
        const T* grad, T* param, T* momentum_buffer, T weight_decay, T momentum, T one_minus_dampening,
        T neg_lr, int maximize, int coupled_decay, int nesterov, int first, I total) {
    GRID_STRIDE_LOOP(i, total) {
        T g = effective_grad(grad[i], param[i], weight_decay, maximize, coupled_decay);
        T buf = first ? g : momentum_buffer[i] * momentum + g * one_minus_dampening;
        momentum_buffer[i] = buf;
        g = nesterov ? g + buf * momentum : buf;
        param[i] = param[i] + g * neg_lr;
    }
}

// adam_grad and update_moments (optimizer.py), then Adam's denominator and step; with
// amsgrad the running maximum of exp_avg_sq (numpy.maximum: a NaN in either wins),
// without it max_exp_avg_sq is never read.
extern "C" __global__ void distnn_adam(
        const T* grad, T* param, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, T param_scale, T weight_decay,
        T one_minus_beta1, T one_minus_beta2, T beta2, T bias_correction2_sqrt, T eps, T neg_step_size,
        int maximize, int coupled_decay, int decoupled_decay, int amsgrad, I total) {
    GRID_STRIDE_LOOP(i, total) {
        T p = param[i];
        if (decoupled_decay) p = p * param_scale;
        T g = effective_grad(grad[i], p, weight_decay, maximize, coupled_decay);
        T m = exp_avg[i] + (g - exp_avg[i]) * one_minus_beta1;
        T v = exp_avg_sq[i] * beta2 + (g * one_minus_beta2) * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        if (amsgrad) {
            T top = max_exp_avg_sq[i];
            if (!(top >= v || top != top)) top = v;
            max_exp_avg_sq[i] = top;
            v = top;
        }
        T denom = sqrt_(v) / bias_correction2_sqrt + eps;
        param[i] = p + (m / denom) * neg_step_size;
    }
}
""", options=("--fmad=false",))


def can_fuse(arrays):
    """True for GPU arrays of one shape and one float32 or float64 dtype, all C-contiguous
    (a strided view could overlap itself, and then the in-place writes would race)."""
    first = arrays[0]
    return first.dtype in _FUSED_DTYPES and all(
        backend.is_gpu_array(a) and a.dtype == first.dtype and a.shape == first.shape and a.flags.c_contiguous
        for a in arrays)


def _launch(name, param, args):
    index = index_type(param)
    _SOURCE.launch(name, (("T", param.dtype), ("I", index)), param.size, args + (index(param.size),))


def sgd_step(param, grad, momentum_buffer, *, first, lr, momentum, dampening, weight_decay, nesterov,
             maximize):
    """One SGD step, in place on ``param`` and ``momentum_buffer`` (None without momentum);
    ``first``: the buffer is new, and this step fills it with the effective gradient."""
    t = param.dtype.type
    flags = np.int32(bool(maximize)), np.int32(weight_decay != 0)
    if momentum_buffer is None:
        _launch("distnn_sgd", param, (grad, param, t(weight_decay), t(-lr)) + flags)
        return
    _launch("distnn_sgd_momentum", param, (grad, param, momentum_buffer, t(weight_decay), t(momentum),
                                           t(1 - dampening), t(-lr)) + flags
            + (np.int32(bool(nesterov)), np.int32(bool(first))))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay,
              decoupled, maximize, bias_correction2_sqrt, step_size):
    """One Adam / AdamW step, in place on ``param`` and its moments (``max_exp_avg_sq``:
    None without amsgrad); the bias corrections are the caller's, from its host-side step."""
    t = param.dtype.type
    decays = weight_decay != 0
    amsgrad = max_exp_avg_sq is not None
    _launch("distnn_adam", param, (
        grad, param, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else exp_avg_sq,
        t(1 - lr * weight_decay), t(weight_decay), t(1 - beta1), t(1 - beta2), t(beta2),
        t(bias_correction2_sqrt), t(eps), t(-step_size),
        np.int32(bool(maximize)), np.int32(decays and not decoupled), np.int32(decays and decoupled),
        np.int32(amsgrad)))
