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
def test_gpu_uniform_draws_and_dropout_masks_are_the_cpus_and_leave_the_same_state():
    """Drawn on the GPU from the host generator's state (ops/random_cuda.py): odd float32
    lengths leave numpy's buffered half for the next draw on either device."""
    results = []
    for device in ("cpu", "cuda"):
        distnn.manual_seed(5)
        x = distnn.ones(3001, device=device)
        draws = [distnn.rand(7, device=device), distnn.rand(4, 5, dtype=distnn.float64, device=device),
                 distnn.nn.functional.dropout(x, 0.3), distnn.empty(1001, device=device).uniform_(-2, 3),
                 distnn.nn.functional.dropout(x.double(), 0.5), distnn.rand(1, device=device)]
        results.append([d.cpu().numpy() for d in draws] + [distnn.get_rng_state()])
    for ours, theirs in zip(*results):
        if isinstance(ours, dict):
            assert ours == theirs
        else:
            np.testing.assert_array_equal(ours, theirs)


@gpu
def test_device_mismatch_is_reported():
    with pytest.raises(RuntimeError, match="same device"):
        distnn.ones(2) + distnn.ones(2, device="cuda")


def test_cuda_controls_without_a_gpu_are_clear_errors():
    if backend.cuda_is_available():
        pytest.skip("a GPU is present")
    for call in (distnn.cuda.synchronize, distnn.cuda.get_device_name, lambda: distnn.cuda.set_device(0)):
        with pytest.raises(RuntimeError, match="CuPy|GPU"):
            call()
    assert distnn.cuda.current_device() == 0


@gpu
def test_cuda_controls_on_gpu():
    count = distnn.cuda.device_count()
    assert count >= 1
    distnn.cuda.set_device(count - 1)
    try:
        assert distnn.zeros(2, device="cuda").device == backend.Device("cuda", count - 1)
        assert distnn.cuda.current_device() == count - 1
    finally:
        distnn.cuda.set_device(0)
    with pytest.raises(RuntimeError, match=f"{count} GPU"):
        distnn.cuda.set_device(count)
    with pytest.raises(ValueError, match="CUDA device"):
        distnn.cuda.synchronize("cpu")
    x = distnn.ones(1000, device="cuda") * 2
    distnn.cuda.synchronize()
    assert float(x.sum().item()) == 2000.0
    assert isinstance(distnn.cuda.get_device_name(), str) and distnn.cuda.get_device_name()


@gpu
def test_numpy_of_a_gpu_tensor_asks_for_cpu_first():
    with pytest.raises((TypeError, RuntimeError), match="cpu"):
        distnn.ones(2, device="cuda").numpy()


def _convnet_steps(device, steps=5):
    """Parameters after ``steps`` SGD-momentum steps of a small ConvNet on ``device``."""
    nn = distnn.nn
    distnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 10), nn.LogSoftmax(dim=1)).to(device)
    opt = distnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = distnn.randn(8, 1, 12, 12), distnn.randint(0, 10, (8,))
    for _ in range(steps):
        opt.zero_grad()
        distnn.nn.functional.nll_loss(model(x.to(device)), y.to(device)).backward()
        opt.step()
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


@gpu
def test_training_steps_on_gpu_match_cpu():
    cpu, gpu_state = _convnet_steps("cpu"), _convnet_steps("cuda")
    assert sorted(cpu) == sorted(gpu_state)
    for name in cpu:
        np.testing.assert_allclose(gpu_state[name], cpu[name], rtol=1e-4, atol=1e-5, err_msg=name)


@gpu
def test_gpu_checkpoint_round_trip(tmp_path):
    model = distnn.nn.Linear(3, 2).cuda()
    distnn.save(model.state_dict(), tmp_path / "m.pt")
    back = distnn.load(tmp_path / "m.pt")
    assert all(v.device.type == "cuda" for v in back.values())
    on_cpu = distnn.load(tmp_path / "m.pt", map_location="cpu")
    for k, v in model.state_dict().items():
        assert on_cpu[k].device.type == "cpu"
        np.testing.assert_array_equal(on_cpu[k].numpy(), v.cpu().numpy())


def test_same_device_check_without_a_gpu(monkeypatch):
    """Op.apply's device check, on stand-in GPU arrays: one device passes, a CPU array
    or another GPU among them is named in the error."""
    from types import SimpleNamespace

    from distnn.autograd.function import _check_same_device

    class StandIn:
        def __init__(self, index):
            self.device = SimpleNamespace(id=index)
    monkeypatch.setattr(backend, "_cupy", SimpleNamespace(ndarray=StandIn))
    _check_same_device([StandIn(0), StandIn(0), 3.0, None, np.float32])
    _check_same_device([np.ones(2), np.ones(3)])
    for arrays, named in [([StandIn(0), np.ones(2)], "cpu and cuda:0"), ([StandIn(1), StandIn(0)], "cuda:0 and cuda:1")]:
        with pytest.raises(RuntimeError, match=f"same device, but found at least two devices, {named}"):
            _check_same_device(arrays)
