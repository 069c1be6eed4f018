"""backend.py: devices, array modules, and the CuPy path (skipped without a GPU)."""

import numpy as np
import pytest

import distnn
from distnn import backend

gpu = pytest.mark.skipif(not backend.cuda_is_available(), reason="needs CuPy and a CUDA GPU")


@pytest.mark.parametrize("spec, text, index", [("cpu", "cpu", None), ("cuda", "cuda:0", 0), ("cuda:1", "cuda:1", 1)])
def test_device_parsing(spec, text, index):
    d = backend.Device(spec)
    assert str(d) == text and d.index == index and d == text


def test_bad_device_names_the_value():
    with pytest.raises(RuntimeError, match="tpu"):
        backend.Device("tpu")


def test_cpu_arrays_use_numpy():
    assert backend.xp_for("cpu") is np and backend.array_module(np.zeros(1)) is np
    assert distnn.zeros(2).device == backend.Device("cpu")


def test_cuda_without_cupy_or_gpu_is_a_clear_error():
    if backend.cuda_is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy|cuda|CUDA"):
        distnn.zeros(2, device="cuda")


@gpu
def test_tensor_round_trip_and_autograd_on_gpu():
    x = distnn.randn(4, 3, device="cuda", requires_grad=True)
    w = distnn.randn(3, 2).cuda().requires_grad_()
    (x @ w).relu().sum().backward()
    expected_x = (np.asarray(((x.detach().cpu().numpy() @ w.detach().cpu().numpy()) > 0), np.float32)
                  @ w.detach().cpu().numpy().T)
    np.testing.assert_allclose(x.grad.cpu().numpy(), expected_x, rtol=1e-5)
    assert x.grad.device.type == "cuda"


@gpu
def test_same_seed_same_numbers_on_cpu_and_gpu():
    distnn.manual_seed(3)
    a = distnn.randn(5)
    distnn.manual_seed(3)
    b = distnn.randn(5, device="cuda")
    np.testing.assert_array_equal(a.numpy(), b.cpu().numpy())


@gpu
def test_device_mismatch_is_reported():
    with pytest.raises(RuntimeError, match="same device"):
        distnn.ones(2) + distnn.ones(2, device="cuda")
