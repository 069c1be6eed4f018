"""``distnn.accelerator``: next to torch 2.13's ``torch.accelerator`` on this machine
(a CPU-only torch: no accelerator), and, with the backend's GPU queries stubbed, the
calls a GPU run makes, routed to ``distnn.cuda``'s controls."""

import warnings

import pytest

import distnn
from distnn import accelerator, backend
from op_check import requires_torch, torch

NO_GPU = pytest.mark.skipif(distnn.cuda.is_available(), reason="checks the no-GPU answers")


@requires_torch
@NO_GPU
def test_no_accelerator_answers_as_cpu_only_torch():
    for check_available in (False, True):
        assert accelerator.current_accelerator(check_available) is None
        assert torch.accelerator.current_accelerator(check_available) is None
    assert accelerator.is_available() is torch.accelerator.is_available() is False
    assert accelerator.device_count() == torch.accelerator.device_count() == 0


@requires_torch
@NO_GPU
@pytest.mark.parametrize("call", [
    lambda lib: lib.accelerator.current_device_index(),
    lambda lib: lib.accelerator.set_device_index(0),
    lambda lib: lib.accelerator.set_device_index("cuda:0"),
    lambda lib: lib.accelerator.synchronize(),
    lambda lib: lib.accelerator.synchronize(0),
    lambda lib: lib.accelerator.synchronize("cuda"),
    lambda lib: lib.accelerator.device_index(0).__enter__(),
])
def test_no_accelerator_device_calls_raise_as_torch(call):
    with pytest.raises(RuntimeError) as theirs:
        call(torch)
    with pytest.raises(RuntimeError) as ours:
        call(distnn)
    assert str(ours.value) == str(theirs.value)


@NO_GPU
def test_negative_index_and_none_change_nothing():
    accelerator.set_device_index(-1)  # a no-op in PyTorch, accelerator or not
    with accelerator.device_index(None):
        pass


@NO_GPU
def test_example_program_device_choice():
    use_accel = accelerator.is_available()
    device = distnn.accelerator.current_accelerator() if use_accel else distnn.device("cpu")
    assert distnn.device(device) == device == "cpu"
    assert distnn.ones(2, device=device).device.type == "cpu"


@pytest.fixture
def two_gpus(monkeypatch):
    """The backend's GPU queries and controls stubbed: two GPUs, current 0; records calls."""
    state = {"current": 0, "synced": []}
    monkeypatch.setattr(backend, "cuda_is_available", lambda: True)
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(backend, "cuda_current_device", lambda: state["current"])
    monkeypatch.setattr(backend, "cuda_set_device", lambda i: state.__setitem__("current", i))
    monkeypatch.setattr(backend, "cuda_synchronize", lambda i=None: state["synced"].append(i))
    return state


def test_gpu_queries(two_gpus):
    acc = accelerator.current_accelerator()
    assert acc.type == "cuda" and acc == distnn.device("cuda") and distnn.device(acc) == acc
    assert accelerator.current_accelerator(check_available=True) == acc
    assert accelerator.is_available() and accelerator.device_count() == 2
    assert accelerator.current_device_index() == 0


@pytest.mark.parametrize("device", [1, "cuda:1", distnn.device("cuda", 1)])
def test_set_device_index_and_synchronize(two_gpus, device):
    accelerator.set_device_index(device)
    assert accelerator.current_device_index() == 1
    accelerator.synchronize()
    accelerator.synchronize(device)
    assert two_gpus["synced"] == [1, 1]


def test_set_device_index_refusals(two_gpus):
    accelerator.set_device_index(-1)
    assert two_gpus["current"] == 0
    with pytest.raises(ValueError, match="cpu doesn't match the current accelerator"):
        accelerator.set_device_index("cpu")


def test_device_index_context_restores(two_gpus):
    with accelerator.device_index(1):
        assert accelerator.current_device_index() == 1
    assert accelerator.current_device_index() == 0


def test_deprecated_aliases_warn(two_gpus):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accelerator.set_device_idx(1)
        assert accelerator.current_device_idx() == 1
    assert [w.category for w in caught] == [FutureWarning, FutureWarning]
