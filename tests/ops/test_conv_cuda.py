"""distnn/ops/conv_cuda.py on the GPU: conv2d, conv1d and their transposed forms,
values and all three gradients against distnn's CPU path (float64) over the
shared convolution cases, in float32 and float64, with 32- and 64-bit kernel
indices; non-contiguous operands; the whole batch in one im2col (or col2im)
launch; the same gradient bits on every run."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional  # noqa: F401  (makes distnn.nn available)
from conv_cases import CONV1D_CASES, CONV2D_CASES, CONV_TRANSPOSE1D_CASES, CONV_TRANSPOSE2D_CASES
from distnn.ops import conv_cuda, cuda_source

pytestmark = [pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")]

CASES = ([("conv2d",) + case for case in CONV2D_CASES]
         + [("conv_transpose2d",) + case for case in CONV_TRANSPOSE2D_CASES]
         + [("conv1d",) + case for case in CONV1D_CASES]
         + [("conv_transpose1d", x, w, True, kwargs) for x, w, kwargs in CONV_TRANSPOSE1D_CASES]
         + [("conv2d", (3, 3, 9, 8), (4, 3, 5, 5), True, {"padding": 2}),  # 5x5, batch 3
            ("conv2d", (3, 2, 7, 9), (4, 2, 3, 3), True, {"stride": 2, "padding": (1, 0)}),
            ("conv2d", (3, 6, 8, 8), (6, 1, 3, 3), False, {"groups": 6, "stride": 2, "padding": 1}),
            ("conv_transpose2d", (3, 4, 4, 5), (4, 2, 3, 3), True,
             {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2})])

# float32 results against the float64 CPU path: errors scale with the largest term
TOLERANCES = {np.float32: (1e-4, 1e-5), np.float64: (1e-10, 1e-12)}


def _bias_size(name, w_shape, kwargs):
    return w_shape[1] * kwargs.get("groups", 1) if "transpose" in name else w_shape[0]


def _arrays(name, x_shape, w_shape, bias, kwargs):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(_bias_size(name, w_shape, kwargs)) if bias else None
    return x, w, b


def _run(fn, arrays, device, dtype, requires_grad, seed=1):
    """fn's output and the gradients of sum(output * a random array) with respect to
    the leaves built from ``arrays`` (None where not asked for), all as NumPy."""
    leaves = [None if a is None else distnn.from_numpy(a.astype(dtype)).to(device).requires_grad_(rg)
              for a, rg in zip(arrays, requires_grad)]
    y = fn(*leaves)
    gy = np.random.default_rng(seed).standard_normal(y.shape)
    y.backward(distnn.from_numpy(gy.astype(dtype)).to(device))
    assert y.device == distnn.device(device) and y.dtype == leaves[0].dtype
    return [y.detach().cpu().numpy()] + [None if t is None or t.grad is None else t.grad.cpu().numpy()
                                         for t in leaves]


def _compare(fn, arrays, dtype, requires_grad):
    expected = _run(fn, arrays, "cpu", np.float64, requires_grad)
    actual = _run(fn, arrays, "cuda", dtype, requires_grad)
    rtol, atol = TOLERANCES[dtype]
    for got, want in zip(actual, expected):
        assert (got is None) == (want is None)
        if want is not None:
            assert got.shape == want.shape and got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, np.abs(want).max()))


def _call(name, kwargs):
    return lambda x, w, b: getattr(distnn.nn.functional, name)(x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,x_shape,w_shape,bias,kwargs", CASES)
def test_matches_the_cpu_path(name, x_shape, w_shape, bias, kwargs, dtype):
    _compare(_call(name, kwargs), _arrays(name, x_shape, w_shape, bias, kwargs), dtype, (True, True, bias))


@pytest.mark.parametrize("requires_grad", [(True, False, False), (False, True, False), (False, False, True)])
@pytest.mark.parametrize("name,x_shape,w_shape,kwargs", [
    ("conv2d", (2, 4, 6, 5), (6, 2, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ("conv_transpose2d", (2, 2, 3, 3), (2, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
])
def test_one_gradient_at_a_time(name, x_shape, w_shape, kwargs, requires_grad):
    _compare(_call(name, kwargs), _arrays(name, x_shape, w_shape, True, kwargs), np.float64, requires_grad)


@pytest.mark.parametrize("name,x_shape,w_shape,kwargs", [
    ("conv2d", (2, 3, 7, 6), (4, 3, 3, 2), {"stride": (2, 1), "padding": 1, "dilation": (1, 2)}),
    ("conv_transpose2d", (2, 3, 4, 5), (3, 2, 3, 3), {"stride": 2, "output_padding": 1}),
])
def test_64_bit_indices(monkeypatch, name, x_shape, w_shape, kwargs):
    """The kernels built with 64-bit indices, which sizes past 2**31 elements take."""
    monkeypatch.setattr(cuda_source, "INT32_LIMIT", 0)
    _compare(_call(name, kwargs), _arrays(name, x_shape, w_shape, True, kwargs), np.float64, (True, True, True))


@pytest.mark.parametrize("name,x_shape,w_shape,kwargs", [
    ("conv2d", (2, 3, 6, 7), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ("conv_transpose2d", (2, 3, 4, 5), (3, 2, 3, 3), {"stride": 2, "output_padding": 1}),
])
def test_non_contiguous_input_and_output_gradient(name, x_shape, w_shape, kwargs):
    def fn(x, w, b):  # x and the gradient reaching the convolution are transposed views
        y = getattr(distnn.nn.functional, name)(x.transpose(2, 3), w, b, **kwargs)
        return y.transpose(2, 3)

    x, w, b = _arrays(name, x_shape, w_shape, True, kwargs)
    _compare(fn, (x.swapaxes(2, 3), w, b), np.float32, (True, True, True))


def test_whole_batch_in_one_launch_per_kernel(monkeypatch):
    """The MNIST ConvNet's second layer at batch 256 (the CPU path's chunks would be ~85)."""
    launched = []
    launch = conv_cuda._launch
    monkeypatch.setattr(conv_cuda, "_launch", lambda name, *args: (launched.append(name), launch(name, *args)))
    x = distnn.randn(256, 32, 26, 26, device="cuda").requires_grad_()
    w = distnn.randn(64, 32, 3, 3, device="cuda").requires_grad_()
    b = distnn.randn(64, device="cuda").requires_grad_()
    y = distnn.nn.functional.conv2d(x, w, b)
    assert launched == ["distnn_im2col", "distnn_swap_leading"]
    del launched[:]
    y.backward(distnn.ones_like(y))
    assert sorted(launched) == ["distnn_col2im", "distnn_im2col", "distnn_swap_leading"]


def test_gradients_are_the_same_bits_every_run():
    """col2im gathers rather than scatters with atomics."""
    x = distnn.randn(4, 6, 11, 10, device="cuda").requires_grad_()
    w = distnn.randn(8, 3, 3, 3, device="cuda").requires_grad_()
    runs = []
    for _ in range(2):
        x.grad = w.grad = None
        distnn.nn.functional.conv2d(x, w, stride=2, padding=1, groups=2).sum().backward()
        runs.append((x.grad.cpu().numpy(), w.grad.cpu().numpy()))
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_empty_batch():
    x = distnn.zeros(0, 2, 5, 5, device="cuda").requires_grad_()
    w = distnn.ones(3, 2, 3, 3, device="cuda").requires_grad_()
    y = distnn.nn.functional.conv2d(x, w, padding=1)
    y.sum().backward()
    assert y.shape == (0, 3, 5, 5) and x.grad.shape == x.shape
    assert np.array_equal(w.grad.cpu().numpy(), np.zeros((3, 2, 3, 3), np.float32))
