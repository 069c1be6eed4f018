"""LSTM layers through oneDNN's LSTM primitive, as PyTorch's CPU ``nn.LSTM`` runs
(``mkldnn_rnn_layer``): one call per layer and direction does the input projection
of every step as one GEMM, then the recurrent steps with oneDNN's packed GEMMs and
fused gate kernels; backward is one call too. Against the numpy loop of
``recurrent.py`` (a GEMM and about ten numpy calls a step) the 2-layer 200-unit
LSTM of the word-language-model benchmark ran forward+backward 1.2x faster at one
thread and 2x at two (the loop's small per-step calls do not split over threads).

Layouts: the sequence time-major (T, N, I), a batch-first one transposed into it
and its output back (as PyTorch does: its weight gradients sum over steps and
samples in that order); PyTorch's ``weight_ih`` (4H, I) and ``weight_hh`` (4H, H) are
oneDNN's ``ldgoi`` weights (gates i, f, g, o in PyTorch's order), reordered into
the layouts the primitives choose, as PyTorch does. The two biases are summed into
oneDNN's one; its gradient is both biases'. oneDNN adds weight gradients into
its outputs, so those are zeroed before each backward call.
"""

import ctypes

import numpy as np

from .. import threads
from . import onednn
from .onednn import _ANY, _Cache, _Primitives

_FORWARD_INFERENCE, _BACKWARD = 96, 128  # dnnl_prop_kind_t
_LEFT2RIGHT, _RIGHT2LEFT = 1, 2  # dnnl_rnn_direction_t (0 is undef in oneDNN 3)
# execute arguments (dnnl_types.h)
_SRC_LAYER, _SRC_ITER, _SRC_ITER_C = 1, 2, 3
_DST_LAYER, _DST_ITER, _DST_ITER_C = 17, 18, 19
_WEIGHTS_LAYER, _WEIGHTS_ITER, _BIAS, _WORKSPACE = 33, 34, 41, 64
_DIFF = 128  # DNNL_ARG_DIFF_SRC_LAYER = _DIFF + _SRC_LAYER, and so on
_FORWARD_INPUTS = (_SRC_LAYER, _SRC_ITER, _SRC_ITER_C, _WEIGHTS_LAYER, _WEIGHTS_ITER)
_OUTPUTS = (_DST_LAYER, _DST_ITER, _DST_ITER_C)


class _LSTM(_Primitives):
    """The forward-training and backward primitives of one LSTM layer-direction:
    ``steps`` x ``batch`` inputs of ``inputs`` features, ``hidden`` units."""

    def __init__(self, lib, steps, batch, inputs, hidden, reverse):
        super().__init__(lib)
        t, n, i, h = steps, batch, inputs, hidden

        def sequence(width):  # (T, N, width), time-major
            return self._md((t, n, width), onednn._plain_tag(3))

        def gates_by_row(cols):  # PyTorch's (4H, cols) weight as oneDNN's (1, 1, cols, 4, H)
            return self._strided_md((1, 1, cols, 4, h), (4 * h * cols, 4 * h * cols, 1, h * cols, cols))

        state = self._md((1, 1, n, h), onednn._plain_tag(4))
        self.user = {_SRC_LAYER: sequence(i), _SRC_ITER: state, _SRC_ITER_C: state,
                     _WEIGHTS_LAYER: gates_by_row(i), _WEIGHTS_ITER: gates_by_row(h),
                     _BIAS: self._md((1, 1, 4, h), onednn._plain_tag(4)),
                     _DST_LAYER: sequence(h), _DST_ITER: state, _DST_ITER_C: state}
        self.any_weights = (self._md((1, 1, i, 4, h), _ANY), self._md((1, 1, h, 4, h), _ANY))
        self.direction = ctypes.c_int(_RIGHT2LEFT if reverse else _LEFT2RIGHT)
        self.forward_pd = self._forward_pd(onednn._FORWARD_TRAINING)
        self.workspace_md = ctypes.c_void_p(lib.lib.dnnl_primitive_desc_query_md(self.forward_pd,
                                                                                 onednn._Q_WORKSPACE, 0))
        self.workspace_bytes = lib.lib.dnnl_memory_desc_get_size(self.workspace_md)

    def _forward_pd(self, prop_kind):
        u = self.user
        return self._pd("dnnl_lstm_forward_primitive_desc_create", ctypes.c_int(prop_kind), self.direction,
                        u[_SRC_LAYER], u[_SRC_ITER], u[_SRC_ITER_C], *self.any_weights, None, None, u[_BIAS],
                        u[_DST_LAYER], u[_DST_ITER], u[_DST_ITER_C], ctypes.c_uint(0), self.lib.attr)

    def _make_part(self, kind):
        u, workspace = self.user, ((_WORKSPACE, self.workspace_md),)
        operands = [(arg, u[arg], True) for arg in _FORWARD_INPUTS] + [(arg, u[arg], False) for arg in _OUTPUTS]
        if kind == "forward":
            return self._made(kind, self.forward_pd, operands, ((_BIAS, u[_BIAS]),) + workspace)
        if kind == "inference":  # no workspace: nothing to differentiate
            return self._made(kind, self._forward_pd(_FORWARD_INFERENCE), operands, ((_BIAS, u[_BIAS]),))
        diffs = [u[arg] for arg in (_SRC_LAYER, _SRC_ITER, _SRC_ITER_C)] + list(self.any_weights) + [None, None]
        pd = self._pd("dnnl_lstm_backward_primitive_desc_create", ctypes.c_int(_BACKWARD), self.direction,
                      u[_SRC_LAYER], u[_SRC_ITER], u[_SRC_ITER_C], *self.any_weights, None, None, u[_BIAS],
                      u[_DST_LAYER], u[_DST_ITER], u[_DST_ITER_C], *diffs, u[_BIAS],
                      u[_DST_LAYER], u[_DST_ITER], u[_DST_ITER_C], ctypes.c_uint(0), self.forward_pd,
                      self.lib.attr)
        operands = ([(arg, u[arg], True) for arg in _FORWARD_INPUTS + _OUTPUTS]
                    + [(_DIFF + arg, u[arg], True) for arg in _OUTPUTS]
                    + [(_DIFF + arg, u[arg], False) for arg in _FORWARD_INPUTS])
        direct = ((_BIAS, u[_BIAS]), (_DIFF + _BIAS, u[_BIAS])) + workspace
        return self._made(kind, pd, operands, direct)


_cache = _Cache()


def lstm(steps, batch, inputs, hidden, reverse):
    """The cached _LSTM for this geometry, or None where oneDNN is off, absent or
    refuses it."""
    from ..backends import mkldnn
    lib = onednn.library()
    if lib is None or not mkldnn.enabled or 0 in (steps, batch, inputs, hidden):
        return None
    lib.stream()  # this thread's OpenMP thread count set before a primitive is made
    key = (steps, batch, inputs, hidden, reverse, threads.get_num_threads())
    return _cache.get_or_make(key, lambda: _LSTM(lib, steps, batch, inputs, hidden, reverse))


def applies(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """Whether oneDNN's LSTM takes these arrays: float32 numpy ones, biases optional."""
    return all(type(a) is np.ndarray and a.dtype == np.float32 for a in (x, h0, c0, w_ih, w_hh)) and \
        all(b is None or (type(b) is np.ndarray and b.dtype == np.float32) for b in (b_ih, b_hh))


def fused_bias(w_ih, b_ih, b_hh):
    """oneDNN's one bias: PyTorch's two summed (zeros without either)."""
    if b_ih is None and b_hh is None:
        return np.zeros(w_ih.shape[0], np.float32)
    if b_ih is None or b_hh is None:
        return np.ascontiguousarray(b_ih if b_hh is None else b_hh)
    return b_ih + b_hh


def forward(layer, x, h0, c0, w_ih, w_hh, bias, training=True):
    """(outputs, h_n, c_n, workspace) of ``layer`` (an _LSTM) on C-contiguous arrays,
    the sequence time-major, ``bias`` from ``fused_bias``; no workspace (None) when
    not ``training``."""
    n, h = h0.shape
    out = np.empty(x.shape[:2] + (h,), np.float32)
    h_n, c_n = np.empty((n, h), np.float32), np.empty((n, h), np.float32)
    arrays = {_SRC_LAYER: x, _SRC_ITER: h0, _SRC_ITER_C: c0, _WEIGHTS_LAYER: w_ih, _WEIGHTS_ITER: w_hh,
              _BIAS: bias, _DST_LAYER: out, _DST_ITER: h_n, _DST_ITER_C: c_n}
    workspace = None
    if training:
        workspace = arrays[_WORKSPACE] = np.empty(layer.workspace_bytes, np.uint8)
    layer.run("forward" if training else "inference", arrays)
    return out, h_n, c_n, workspace


def backward(layer, x, h0, c0, w_ih, w_hh, bias, outputs, workspace, grads):
    """(d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_bias) given ``outputs`` (out, h_n, c_n) and
    their gradients ``grads`` (the engine gives zeros for an output no gradient
    reached); the bias gradient is both biases'."""
    arrays = {_SRC_LAYER: x, _SRC_ITER: h0, _SRC_ITER_C: c0, _WEIGHTS_LAYER: w_ih, _WEIGHTS_ITER: w_hh,
              _BIAS: bias, _WORKSPACE: workspace}
    for arg, value, grad in zip(_OUTPUTS, outputs, grads):
        arrays[arg] = value
        arrays[_DIFF + arg] = np.ascontiguousarray(grad, np.float32)
    results = [np.empty_like(arrays[arg]) for arg in _FORWARD_INPUTS] + [np.zeros(w_ih.shape[0], np.float32)]
    for arg, result in zip(_FORWARD_INPUTS + (_BIAS,), results):
        arrays[_DIFF + arg] = result
    layer.run("backward", arrays, zeroed=(_DIFF + _WEIGHTS_LAYER, _DIFF + _WEIGHTS_ITER))
    return tuple(results)
