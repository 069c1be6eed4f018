"""Training batch norm of float32 NCHW numpy arrays through oneDNN's batch-normalization
primitive: its JIT kernel on the blocked layout ``nChw16c`` (``nChw8c`` where only
AVX2's kernel runs), each call reordering the operands in and the result out, as
``onednn.py``'s convolutions do; the same switches turn both off.

Forward takes a pass for the statistics (two-pass mean and biased variance, as
PyTorch's) and one for the output; backward one for the two channel sums and one for
the input gradient, each split over OpenMP's threads. The numpy form
(``normalization.py``) makes about 6 passes forward and 12 backward, one core each.
Whole training steps, this module on and off in alternate steps of one process,
medians (ms): small ResNet at 2 threads 129.4 -> 122.5 (1 thread 194.6 -> 192.9),
MobileNetV2-style at 2 threads 76.6 -> 70.7, ResNet-18 32x32 63.8 -> 62.1.
"""

import ctypes

import numpy as np

from .. import threads
from . import onednn
from .onednn import _Cache, _DIFF_DST, _DIFF_SRC, _DST, _FORWARD_TRAINING, _Primitives, _SRC, OneDNNError

_BACKWARD = 128  # dnnl_backward: the input gradient and the scale and shift gradients
_USE_SCALE, _USE_SHIFT = 0x2, 0x4  # dnnl_normalization_flags_t
_MEAN, _VARIANCE, _SCALE, _SHIFT, _DIFF_SCALE, _DIFF_SHIFT = 49, 50, 51, 52, 255, 256  # execute arguments
# dnnl_aBcd16b (nChw16c, AVX-512's JIT kernel), dnnl_aBcd8b (nChw8c, AVX2's): dnnl_format_tag_t
_BLOCKED_TAGS = (78, 102)


class _BatchNorm(_Primitives):
    """The forward-training and backward primitives for one (N, C, H, W) shape and eps."""

    def __init__(self, lib, shape, eps):
        super().__init__(lib)
        self.plain = self._md(shape, onednn._plain_tag(4))
        self.per_channel = self._md(shape[1:2], onednn._plain_tag(1))
        self.eps, self.flags = ctypes.c_float(eps), ctypes.c_uint(_USE_SCALE | _USE_SHIFT)
        for tag in _BLOCKED_TAGS:
            self.blocked = self._md(shape, tag)
            try:
                self.forward_pd = self._pd("dnnl_batch_normalization_forward_primitive_desc_create",
                                           ctypes.c_int(_FORWARD_TRAINING), self.blocked, self.blocked, self.eps,
                                           self.flags, lib.attr)
            except OneDNNError:
                continue
            if "jit" in self.implementation():
                return
        raise OneDNNError(f"no JIT batch-norm kernel for {shape}")

    def _make_part(self, kind):
        plain, c = self.plain, self.per_channel
        if kind == "forward":
            return self._made(kind, self.forward_pd, ((_SRC, plain, True), (_DST, plain, False)),
                              [(arg, c) for arg in (_SCALE, _SHIFT, _MEAN, _VARIANCE)])
        pd = self._pd("dnnl_batch_normalization_backward_primitive_desc_create", ctypes.c_int(_BACKWARD),
                      self.blocked, self.blocked, self.blocked, self.eps, self.flags, self.forward_pd,
                      self.lib.attr)
        operands = ((_SRC, plain, True), (_DIFF_DST, plain, True), (_DIFF_SRC, plain, False))
        return self._made(kind, pd, operands,
                          [(arg, c) for arg in (_SCALE, _MEAN, _VARIANCE, _DIFF_SCALE, _DIFF_SHIFT)])


_cache = _Cache()


def _primitives(shape, eps):
    """The cached _BatchNorm, or None where oneDNN is off, absent or has no JIT kernel."""
    from ..backends import mkldnn
    lib = onednn.library()
    if lib is None or not mkldnn.enabled or 0 in shape:
        return None
    lib.stream()  # this thread's OpenMP thread count set before a primitive is made
    key = (shape, float(eps), threads.get_num_threads())
    return _cache.get_or_make(key, lambda: _BatchNorm(lib, shape, eps))


def applies(*arrays):
    """Whether these arrays (input first; None for an absent weight or bias) are the
    float32 numpy NCHW ones this module takes."""
    return arrays[0].ndim == 4 and all(a is None or (type(a) is np.ndarray and a.dtype == np.float32)
                                       for a in arrays)


def _prepared(x, weight, bias, eps):
    """(the cached _BatchNorm, scale, shift, two fresh per-channel arrays), or None where
    oneDNN does not take ``x``; an absent weight scales by 1, an absent bias shifts by 0."""
    bn = _primitives(x.shape, eps)
    if bn is None:
        return None
    c = x.shape[1]
    scale = np.ones(c, np.float32) if weight is None else np.ascontiguousarray(weight)
    shift = np.zeros(c, np.float32) if bias is None else np.ascontiguousarray(bias)
    return bn, scale, shift, np.empty(c, np.float32), np.empty(c, np.float32)


def batch_norm(x, weight, bias, eps):
    """(output, mean, biased variance) of training batch norm, or None where oneDNN
    does not take it."""
    prepared = _prepared(x, weight, bias, eps)
    if prepared is None:
        return None
    bn, scale, shift, mean, var = prepared
    out = np.empty(x.shape, np.float32)
    bn.run("forward", {_SRC: np.ascontiguousarray(x), _DST: out, _SCALE: scale, _SHIFT: shift,
                       _MEAN: mean, _VARIANCE: var})
    return out, mean, var


def batch_norm_backward(x, g, mean, var, weight, eps):
    """(input gradient, sum of g * xhat, sum of g) per channel, given forward's
    ``mean`` and ``var``; or None where oneDNN does not take it."""
    prepared = _prepared(x, weight, None, eps)
    if prepared is None:
        return None
    bn, scale, _, sum_gx, sum_g = prepared
    grad_input = np.empty(x.shape, np.float32)
    bn.run("backward", {_SRC: np.ascontiguousarray(x), _DIFF_DST: np.ascontiguousarray(g), _SCALE: scale,
                        _MEAN: mean, _VARIANCE: var, _DIFF_SRC: grad_input, _DIFF_SCALE: sum_gx,
                        _DIFF_SHIFT: sum_g})
    return grad_input, sum_gx, sum_g
