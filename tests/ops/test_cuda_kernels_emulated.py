"""The CUDA kernels of pool_cuda, fused_cuda, norm_cuda, rnn_cuda and embedding_cuda run on the CPU (cuda_emulation:
g++, one thread for the whole grid) against pool.py's, softmaxes.py's and the norms' numpy
formulas: max pooling's maxima, picks, backward and its adjoint over strides,
padding, dilation, ties and NaNs; ReLU's gradient; softmax and log-softmax forward
and backward; NLL loss with ignored targets; bias sums; embedding's backward in
numpy's add.at order. On a GPU the same kernels
are checked against the CPU path by test_fused_cuda.py."""

import itertools

import numpy as np
import pytest

from cuda_emulation import HAVE_COMPILER, emulated
from distnn.ops import cuda_source, embedding, fused_cuda, norm_cuda, pool, pool_cuda, softmaxes
from distnn.ops.pool import PoolGeometry
from distnn.ops.selection import masked

pytestmark = pytest.mark.skipif(not HAVE_COMPILER, reason="needs g++ to build the kernels for the CPU")


def _geometry(in_hw, kernel, stride, padding, dilation):
    out_hw = tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                   for i, k, s, p, d in zip(in_hw, kernel, stride, padding, dilation))
    reach = tuple((o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out_hw, kernel, stride, dilation))
    canvas = (None if padding == (0, 0) and all(r <= i for r, i in zip(reach, in_hw))
              else tuple(max(r, i + p) for r, i, p in zip(reach, in_hw, padding)))
    return PoolGeometry(kernel, stride, padding, dilation, out_hw, canvas)


GEOMETRIES = [g for g in itertools.product([(7, 9), (8, 8)], [(2, 2), (3, 3), (1, 3)], [(1, 1), (2, 2), (2, 1)],
                                          [(0, 0), (1, 1), (0, 1)], [(1, 1), (2, 1)])
              if all(p <= k // 2 for p, k in zip(g[3], g[1]))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("wide_indices", [False, True])
def test_max_pool_kernels_match_the_array_path(monkeypatch, dtype, wide_indices):
    xp = emulated(monkeypatch)
    if wide_indices:
        monkeypatch.setattr(cuda_source, "INT32_LIMIT", 0)
    rng = np.random.default_rng(0)
    for in_hw, kernel, stride, padding, dilation in GEOMETRIES:
        geo = _geometry(in_hw, kernel, stride, padding, dilation)
        x = rng.integers(-3, 4, (2, 3) + in_hw).astype(dtype)  # ties
        if dtype != np.int32:
            x[0, 0, 1, 2] = x[1, 2, 0, 0] = x[1, 2, 0, 1] = np.nan
        tiling = pool._is_tiling(geo, in_hw)
        if tiling:
            planes = pool._tile_planes(np, x, kernel, geo.out_hw[1])
            want_y, want_pick = pool._running_max(
                np, (planes[i, j] for i in range(kernel[0]) for j in range(kernel[1])), kernel[0] * kernel[1])
            want_y, want_pick = want_y.reshape((2, 3) + geo.out_hw), want_pick.reshape((2, 3) + geo.out_hw)
        else:
            want_y, want_pick = pool._window_max(np, x, geo)
        y, pick = pool_cuda.max_pool(xp, x, geo, np.dtype(pool._index_dtype(np, kernel[0] * kernel[1])))
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(pick, want_pick)
        if dtype == np.int32:
            continue
        g = rng.standard_normal(y.shape).astype(dtype)
        np.testing.assert_array_equal(pool_cuda.to_maxima(xp, g, pick, geo, x.shape),
                                      pool._to_maxima(np, g, want_pick, geo, x.shape, tiling))
        z = rng.standard_normal(x.shape).astype(dtype)
        np.testing.assert_array_equal(pool_cuda.from_maxima(xp, z, pick, geo),
                                      pool._from_maxima(np, z, want_pick, geo, x.shape, tiling))


TOLERANCES = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}


def _rows_reference(fn, *arrays):
    out = np.empty_like(arrays[0])
    with np.errstate(invalid="ignore"):
        fn(np, out, *arrays, arrays[0].ndim - 1)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 10), (3, 1), (2, 3, 600)])
def test_softmax_family_kernels(monkeypatch, dtype, shape):
    xp = emulated(monkeypatch)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    if shape == (4, 10):
        x[1, 3], x[2, :] = np.nan, -np.inf
    g = rng.standard_normal(shape).astype(dtype)
    for forward, backward, ref_forward, ref_backward in [
            (fused_cuda.log_softmax, fused_cuda.log_softmax_backward, softmaxes._log_softmax_into,
             softmaxes._log_softmax_grad_into),
            (fused_cuda.softmax, fused_cuda.softmax_backward, softmaxes._softmax_into, softmaxes._softmax_grad_into)]:
        y = _rows_reference(ref_forward, x)
        np.testing.assert_allclose(forward(xp, x), y, **TOLERANCES[dtype])
        np.testing.assert_allclose(backward(xp, g, y), _rows_reference(ref_backward, g, y), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_and_bias_sum_kernels(monkeypatch, dtype):
    xp = emulated(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(dtype)
    x[0, 0], x[1, 1] = -0.0, np.nan
    out, g = np.clip(x, 0, np.inf), rng.standard_normal(x.shape).astype(dtype)
    g[2, 2] = np.nan
    np.testing.assert_array_equal(fused_cuda.relu_backward(xp, g, out), masked(g, out != 0))
    for shape in [(5, 3, 7), (64, 50, 1), (1, 4, 1), (0, 3, 2)]:
        a = rng.standard_normal(shape).astype(dtype)
        np.testing.assert_allclose(fused_cuda.sum_outer_inner(xp, a), a.sum(axis=(0, 2)), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target,ignore", [([0, 4, 2, 2, 1, 3], -100), ([0, 4, -100, 2, -100, 3], -100),
                                           ([1, 1, 1, 1, 1, 1], 1)])
@pytest.mark.parametrize("mean", [True, False])
def test_nll_kernels(monkeypatch, dtype, target, ignore, mean):
    """Sums and means over the counted targets; every target ignored is nan, as PyTorch."""
    xp = emulated(monkeypatch)
    logp, target = np.random.default_rng(0).standard_normal((6, 5)).astype(dtype), np.array(target)
    valid = target != ignore
    safe = np.where(valid, target, 0)
    picked = np.where(valid, logp[np.arange(6), safe], 0)
    loss, inv = fused_cuda.nll(xp, logp, target, ignore, mean)
    g = np.array(0.7, dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(loss, -picked.sum() / valid.sum() if mean else -picked.sum(), **TOLERANCES[dtype])
        coeff = valid.astype(dtype) * (-g * inv if mean else -g)
    want = np.zeros((6, 5), dtype)
    want[np.arange(6), safe] = coeff
    np.testing.assert_array_equal(fused_cuda.nll_backward(xp, g, inv, target, 5, ignore, mean), want)


def test_nll_target_out_of_range_is_nan(monkeypatch):
    xp = emulated(monkeypatch)
    loss, _ = fused_cuda.nll(xp, np.zeros((3, 4), np.float32), np.array([0, 7, 1]), -100, True)
    assert np.isnan(loss)


def _recurrent_case(dtype, gates, time_dim, bias, steps=5, batch=3, n=4):
    """(rng, xw, h0, w_hh, b_hh or None, output gradient, h_n's gradient) of a layer
    with ``gates`` gates of ``n`` units, time along ``time_dim``."""
    rng = np.random.default_rng(0)
    shape = (steps, batch, gates * n) if time_dim == 0 else (batch, steps, gates * n)
    xw = rng.standard_normal(shape).astype(dtype)
    h0, g_h = (rng.standard_normal((batch, n)).astype(dtype) for _ in range(2))
    w_hh = rng.standard_normal((gates * n, n)).astype(dtype)
    b_hh = rng.standard_normal(gates * n).astype(dtype) if bias else None
    return rng, xw, h0, w_hh, b_hh, rng.standard_normal(shape[:2] + (n,)).astype(dtype), g_h


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("time_dim,reverse,bias", [(0, False, True), (1, False, True), (0, True, False), (1, True, True)])
def test_lstm_step_kernels(monkeypatch, dtype, time_dim, reverse, bias):
    """recurrent.py's LSTM loop forward and backward with the step kernels, against its
    numpy loop: every stack forward keeps, and the gradients of the gates, h0 and c0."""
    from types import SimpleNamespace
    from distnn.ops import recurrent
    rng, xw, h0, w_hh, b_hh, g_out, g_h = _recurrent_case(dtype, 4, time_dim, bias)
    c0, g_c = (rng.standard_normal(h0.shape).astype(dtype) for _ in range(2))
    results = []
    for xp in (np, emulated(monkeypatch)):
        acts, cells, tanh_cells, outs = recurrent._lstm_sequence(xp, xw, h0, c0, w_hh, b_hh, time_dim, reverse)
        ctx = SimpleNamespace(acts=acts, c_prev=recurrent._previous(np, c0, cells, reverse), tanh_cells=tanh_cells,
                              reverse=reverse, time_dim=time_dim)
        results.append((acts, cells, tanh_cells, outs) + recurrent._lstm_gate_grads(xp, ctx, w_hh, g_out, g_h, g_c))
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("shape", [(6, 10), (1, 300), (0, 4)])
def test_layer_norm_kernels(monkeypatch, dtype, affine, shape):
    """Layer norm over each row, forward and all three gradients, against normalization.py's formulas."""
    from distnn.ops import normalization
    xp = emulated(monkeypatch)
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal(shape).astype(dtype) * 3 + 1 for _ in range(2))
    w = rng.standard_normal(shape[1]).astype(dtype) if affine != "none" else None
    b = rng.standard_normal(shape[1]).astype(dtype) if affine == "both" else None
    y, xhat, invstd = norm_cuda.layer_norm(xp, x, w, b, 1e-5)
    want_xhat, _, _, want_invstd = normalization._standardize(np, x, (1,), 1e-5)
    want_y = want_xhat * (1 if w is None else w) + (0 if b is None else b)
    for got, want in [(y, want_y), (xhat, want_xhat), (invstd, want_invstd)]:
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])
    gi, gw, gb = norm_cuda.layer_norm_backward(xp, g, xhat, invstd, w, True, w is not None, b is not None)
    np.testing.assert_allclose(gi, normalization._standardize_backward(g if w is None else g * w, want_xhat,
                                                                       want_invstd, (1,)), **TOLERANCES[dtype])
    if w is not None:
        np.testing.assert_allclose(gw, (g * want_xhat).sum(0), **TOLERANCES[dtype])
    if b is not None:
        np.testing.assert_allclose(gb, g.sum(0), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("time_dim,reverse,bias", [(0, False, True), (1, False, True), (0, True, False), (1, True, True)])
def test_gru_step_kernels(monkeypatch, dtype, time_dim, reverse, bias):
    """GRULayer forward and backward with the step kernels (its GEMMs by numpy), against its numpy loop."""
    from types import SimpleNamespace
    from distnn import cublas
    from distnn.ops import recurrent
    _, xw, h0, w_hh, b_hh, g_out, g_h = _recurrent_case(dtype, 3, time_dim, bias)
    monkeypatch.setattr(cublas, "matmul", lambda a, b, out, accumulate: np.add(out, a @ b, out=out))
    results = []
    for xp in (np, emulated(monkeypatch)):
        ctx = SimpleNamespace(xp=xp, needs_input_grad=(True,) * 4, saved_tensors=(xw, h0, w_hh, b_hh),
                              save_for_backward=lambda *arrays: None)
        out, h = recurrent.GRULayer.forward(ctx, xw, h0, w_hh, b_hh, time_dim, reverse)
        assert (ctx.gates is None) == (xp is np)
        results.append((out, h) + recurrent.GRULayer.backward(ctx, g_out, g_h))
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5), (2, 4, 9)])
@pytest.mark.parametrize("affine,running", [(True, True), (False, False), (True, False)])
def test_batch_norm_kernels(monkeypatch, dtype, shape, affine, running):
    """Training batch norm over every dim but 1, forward (with the running statistics'
    update) and gradients, against normalization.py's formulas."""
    from distnn.ops import normalization
    xp = emulated(monkeypatch)
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal(shape).astype(dtype) * 2 + 0.5 for _ in range(2))
    c = shape[1]
    w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2)) if affine else (None, None)
    rm, rv = (rng.uniform(0.5, 1.5, c).astype(dtype) for _ in range(2)) if running else (None, None)
    want_rm, want_rv = (None, None) if rm is None else (rm.copy(), rv.copy())
    y, xhat, mean, var, invstd = norm_cuda.batch_norm(xp, x, w, b, 1e-5, rm, rv, 0.1)
    axes = normalization._non_channel_axes(x.ndim)
    want_xhat, want_mean, want_var, want_invstd = normalization._standardize(np, x, axes, 1e-5, channel_first=True)
    shape_c = normalization._channel_shape(x.ndim)
    want_y = want_xhat if w is None else want_xhat * w.reshape(shape_c) + b.reshape(shape_c)
    for got, want in [(y, want_y), (xhat, want_xhat), (mean, want_mean), (var, want_var), (invstd, want_invstd)]:
        np.testing.assert_allclose(got, want.reshape(got.shape), **TOLERANCES[dtype])
    if running:
        n = x.size // c
        for stat, value in ((want_rm, want_mean), (want_rv, want_var * (n / (n - 1)))):
            stat *= 1 - 0.1
            stat += 0.1 * value.reshape(-1)
        np.testing.assert_allclose(rm, want_rm, **TOLERANCES[dtype])
        np.testing.assert_allclose(rv, want_rv, **TOLERANCES[dtype])
    scale = (want_invstd if w is None else want_invstd * w.reshape(shape_c)).astype(dtype)
    gi, gw, gb = norm_cuda.batch_norm_backward(xp, g, want_xhat, scale.reshape(-1), True)
    m = x.size // c
    sum_g, sum_gx = g.sum(axis=axes, keepdims=True), (g * want_xhat).sum(axis=axes, keepdims=True)
    np.testing.assert_allclose(gi, (g - sum_g / m - want_xhat * (sum_gx / m)) * scale, **TOLERANCES[dtype])
    np.testing.assert_allclose(gw, sum_gx.reshape(-1), **TOLERANCES[dtype])
    np.testing.assert_allclose(gb, sum_g.reshape(-1), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("padding_idx,scale", [(None, False), (2, True)])
def test_embedding_backward_kernel_sums_in_lookup_order(monkeypatch, dtype, index_dtype, padding_idx, scale):
    """numpy's add.at order, so the bits of the CPU path: repeated rows (a Zipf-like
    draw) over magnitudes far apart, where another order rounds differently."""
    xp = emulated(monkeypatch)
    rng = np.random.default_rng(3)
    indices = np.minimum(rng.zipf(1.3, (7, 40)) - 1, 49).astype(index_dtype)
    g = (rng.standard_normal((7, 40, 6)) * 10.0 ** rng.integers(-4, 5, (7, 40, 1))).astype(dtype)
    args = (indices, (50, 6), padding_idx, scale)
    got = embedding._rows_to_table(xp, g, *args)
    want = embedding._rows_to_table(np, g, *args)
    assert np.count_nonzero(np.bincount(indices.reshape(-1)) > 5) >= 3  # runs to sum
    np.testing.assert_array_equal(got, want)
