"""The GPU kernels of fused_cuda, pool_cuda, norm_cuda, rnn_cuda and embedding_cuda on
the GPU: ReLU's gradient, softmax and log-softmax, NLL / cross-entropy, bias gradients,
max pooling (forward, backward, double backward), batch and layer norm, LSTM and GRU
layers, embedding's backward,
against distnn's CPU path, in float32 and float64, with the launches each makes and
the same bits on every run. Skipped without a GPU (the kernels' logic runs on the CPU
in test_cuda_kernels_emulated.py, and NVRTC compiles them in test_cuda_kernels_compile.py)."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from distnn.ops import cuda_source

pytestmark = pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")

# float32 GEMMs (the weight gradients) sum hundreds of products in another order than the CPU's
TOLERANCES = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _both(fn, arrays, dtype, seed=1):
    """fn's output and every input gradient, on the CPU and on the GPU, as NumPy."""
    results = []
    for device in ("cpu", "cuda"):
        leaves = [distnn.from_numpy(a.astype(dtype)).to(device).requires_grad_() for a in arrays]
        y = fn(*leaves)
        gy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
        y.backward(distnn.from_numpy(gy).to(device))
        results.append([y.detach().cpu().numpy()] + [t.grad.cpu().numpy() for t in leaves])
    return results


def _compare(fn, arrays, dtype):
    cpu, gpu = _both(fn, arrays, dtype)
    for want, got in zip(cpu, gpu):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


def _dtype(dtype):
    return distnn.from_numpy(np.zeros(1, dtype)).dtype


def _launches(monkeypatch):
    launched = []
    for name in ("launch", "launch_blocks"):
        original = getattr(cuda_source.Source, name)
        monkeypatch.setattr(cuda_source.Source, name,
                            lambda self, kernel, *args, _o=original: (launched.append(kernel), _o(self, kernel, *args)))
    return launched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 10), (3, 1), (2, 3, 700), (1, 3000)])
def test_softmax_family(dtype, shape):
    x = np.random.default_rng(0).standard_normal(shape) * 4
    for fn in (lambda t: F.log_softmax(t, dim=-1), lambda t: F.softmax(t, dim=-1), lambda t: t.relu()):
        _compare(fn, [x], dtype)


def test_softmax_nan_and_inf_rows():
    x = np.array([[1.0, np.nan, 2.0], [-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0]], np.float32)
    for fn in (F.log_softmax, F.softmax):
        want = fn(distnn.from_numpy(x), dim=1).numpy()
        got = fn(distnn.from_numpy(x).cuda(), dim=1).cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}, {"ignore_index": 2}, {"ignore_index": 1, "reduction": "sum"}])
def test_cross_entropy(dtype, kwargs):
    rng = np.random.default_rng(0)
    logits, target = rng.standard_normal((300, 7)), rng.integers(0, 7, 300)
    results = []
    for device in ("cpu", "cuda"):
        x = distnn.from_numpy(logits.astype(dtype)).to(device).requires_grad_()
        loss = F.cross_entropy(x, distnn.from_numpy(target).to(device), **kwargs)
        (loss * 3).backward()
        results.append((loss.item(), x.grad.cpu().numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], **TOLERANCES[dtype])
    np.testing.assert_allclose(results[1][1], results[0][1], **TOLERANCES[dtype])


def test_cross_entropy_every_target_ignored_is_nan():
    x = distnn.randn(4, 3, device="cuda")
    loss = F.cross_entropy(x, distnn.full((4,), -100, dtype=distnn.int64, device="cuda"))
    assert np.isnan(loss.item())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_gradients(dtype):
    rng = np.random.default_rng(0)
    _compare(lambda x, w, b: F.linear(x, w, b), [rng.standard_normal(s) for s in [(513, 20), (9, 20), (9,)]], dtype)
    _compare(lambda x, w, b: F.conv2d(x, w, b, padding=1),
             [rng.standard_normal(s) for s in [(3, 4, 9, 9), (5, 4, 3, 3), (5,)]], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 2), stride=1, dilation=(1, 2)),
                                    dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_max_pool(dtype, kwargs):
    x = np.random.default_rng(0).integers(-3, 4, (2, 3, 9, 10)).astype(np.float64)  # ties
    x[0, 1, 2, 2] = np.nan
    _compare(lambda t: F.max_pool2d(t, **kwargs), [x], dtype)
    out, idx = F.max_pool2d(distnn.from_numpy(x.astype(dtype)).cuda(), return_indices=True, **kwargs)
    want_out, want_idx = F.max_pool2d(distnn.from_numpy(x.astype(dtype)), return_indices=True, **kwargs)
    np.testing.assert_array_equal(out.cpu().numpy(), want_out.numpy())
    np.testing.assert_array_equal(idx.cpu().numpy(), want_idx.numpy())


def test_max_pool_double_backward():
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 7))
    grads = []
    for device in ("cpu", "cuda"):
        t = distnn.from_numpy(x).to(device).requires_grad_()
        y = F.max_pool2d(t, 3, stride=2, padding=1)
        (g,) = distnn.autograd.grad((y * y).sum(), t, create_graph=True)
        (g * g).sum().backward()
        grads.append(t.grad.cpu().numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)


def test_one_launch_each_and_same_bits(monkeypatch):
    launched = _launches(monkeypatch)
    x = distnn.randn(64, 10, 24, 24, device="cuda").requires_grad_()
    w = distnn.randn(50, 1440, device="cuda").requires_grad_()
    b = distnn.randn(50, device="cuda").requires_grad_()
    target = distnn.randint(0, 50, (64,), device="cuda")
    runs = []
    for _ in range(2):
        x.grad = w.grad = b.grad = None
        del launched[:]
        h = F.max_pool2d(x, 2).relu().reshape(64, -1)
        F.cross_entropy(F.linear(h, w, b), target).backward()
        runs.append([t.grad.cpu().numpy() for t in (x, w, b)])
    assert sorted(launched) == sorted(["distnn_max_pool", "distnn_log_softmax", "distnn_nll", "distnn_nll_backward",
                                       "distnn_log_softmax_backward", "distnn_sum_outer_inner",
                                       "distnn_relu_backward", "distnn_max_pool_backward"])
    assert all(np.array_equal(a, c) for a, c in zip(*runs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("kwargs", [{}, {"batch_first": True, "bidirectional": True}, {"bias": False, "num_layers": 2}])
def test_recurrent_step_kernels(monkeypatch, dtype, mode, kwargs):
    """nn.LSTM's and nn.GRU's array loops with one kernel per step on the GPU against the CPU (float64)."""
    launched = _launches(monkeypatch)
    x_host = np.random.default_rng(0).standard_normal((4, 3, 6))
    results = []
    for device, wanted in (("cpu", np.float64), ("cuda", dtype)):
        distnn.manual_seed(0)
        rnn = getattr(distnn.nn, mode)(6, 5, **kwargs).to(device=device, dtype=_dtype(wanted))
        x = distnn.from_numpy(x_host.astype(wanted)).to(device).requires_grad_()
        out, state = rnn(x)
        h, c = state if mode == "LSTM" else (state, state)
        (out.sum() + (h * h).sum() + (c * 3).sum()).backward()
        results.append([t.detach().cpu().numpy() for t in (out, h, c, x.grad)]
                       + [p.grad.cpu().numpy() for p in rnn.parameters()])
    name = f"distnn_{mode.lower()}_step"
    assert name in launched and name + "_backward" in launched
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [{}, {"bias": False}, {"elementwise_affine": False}])
def test_layer_norm_kernels(monkeypatch, dtype, kwargs):
    launched = _launches(monkeypatch)
    rng = np.random.default_rng(0)
    ln = distnn.nn.LayerNorm((3, 40), **kwargs)
    with distnn.no_grad():
        for p in ln.parameters():
            p.copy_(distnn.from_numpy(rng.standard_normal(p.shape)))
    x = rng.standard_normal((5, 3, 40)) * 3 + 1
    results = []
    for device in ("cpu", "cuda"):
        layer = distnn.nn.LayerNorm((3, 40), **kwargs).to(device=device, dtype=_dtype(dtype))
        layer.load_state_dict({k: v.to(_dtype(dtype)) for k, v in ln.state_dict().items()})
        t = distnn.from_numpy(x.astype(dtype)).to(device).requires_grad_()
        y = layer(t)
        y.backward(distnn.from_numpy(np.cos(x).astype(dtype)).to(device))
        results.append([y.detach().cpu().numpy(), t.grad.cpu().numpy()] + [p.grad.cpu().numpy() for p in layer.parameters()])
    assert launched.count("distnn_layer_norm") == 1 and "distnn_layer_norm_backward" in launched
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("module,shape,kwargs", [("BatchNorm2d", (4, 3, 5, 6), {}),
                                                 ("BatchNorm1d", (7, 5), {"affine": False}),
                                                 ("BatchNorm1d", (2, 4, 9), {"track_running_stats": False})])
def test_batch_norm_kernels(monkeypatch, dtype, module, shape, kwargs):
    """Training batch norm on the GPU in one kernel each way, against the CPU (float64):
    output, gradients and the running statistics after two steps."""
    launched = _launches(monkeypatch)
    x_host = np.random.default_rng(0).standard_normal(shape) * 2 + 0.5
    results = []
    for device, wanted in (("cpu", np.float64), ("cuda", dtype)):
        bn = getattr(distnn.nn, module)(shape[1], **kwargs).to(device=device, dtype=_dtype(wanted))
        x = distnn.from_numpy(x_host.astype(wanted)).to(device).requires_grad_()
        for _ in range(2):
            y = bn(x)
            y.backward(distnn.from_numpy(np.cos(x_host).astype(wanted)).to(device))
        results.append([y.detach().cpu().numpy(), x.grad.cpu().numpy()]
                       + [t.detach().cpu().numpy() for t in list(bn.parameters()) + [p.grad for p in bn.parameters()]]
                       + [b.cpu().numpy() for name, b in bn.named_buffers() if name != "num_batches_tracked"])
    assert launched.count("distnn_batch_norm") == 2 and launched.count("distnn_batch_norm_backward") == 2
    for want, got in zip(*results):
        np.testing.assert_allclose(got, want, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward_is_the_cpus_bits_every_run(dtype):
    """embedding_cuda sums each table row's lookups in lookup order, as numpy's add.at:
    the CPU's bits, where CuPy's add.at (atomics) varied from run to run."""
    rng = np.random.default_rng(4)
    idx = np.minimum(rng.zipf(1.2, (35, 20)) - 1, 999)
    table = rng.standard_normal((1000, 64)).astype(dtype)
    g = (rng.standard_normal((35, 20, 64)) * 10.0 ** rng.integers(-4, 5, (35, 20, 1))).astype(dtype)
    grads = []
    for device in ("cpu", "cuda", "cuda"):
        w = distnn.from_numpy(table).to(device).requires_grad_()
        F.embedding(distnn.from_numpy(idx).to(device), w).backward(distnn.from_numpy(g).to(device))
        grads.append(w.grad.cpu().numpy())
    np.testing.assert_array_equal(grads[1], grads[0])
    np.testing.assert_array_equal(grads[2], grads[0])
