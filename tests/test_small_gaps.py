"""Small PyTorch names real programs use, each next to torch 2.13's behaviour:
``dist.reduce_op`` and ``dist.get_default_backend_for_device`` (whose answer
``init_process_group`` accepts), ``torch.serialization``'s safe-globals API,
``torch.onnx``, saving a whole Module, and the norm ``clip_grad_norm_`` returns."""

import subprocess
import sys
import warnings
from datetime import timedelta

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
import distnn.onnx
import distnn.serialization as serialization
from multiproc import REPO, free_port
from op_check import requires_torch, torch


# --- distributed ---------------------------------------------------------------------

@requires_torch
def test_reduce_op_is_deprecated_alias_of_reduce_op():
    import torch.distributed as tdist
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dist.reduce_op.SUM is dist.ReduceOp.SUM and dist.reduce_op.MAX is dist.ReduceOp.MAX
        ours = list(dist.reduce_op.__members__)
        theirs = list(tdist.reduce_op.__members__)
    assert [w.category for w in caught] == [FutureWarning] * 4
    assert "please use `torch.distributed.ReduceOp` instead" in str(caught[0].message)
    assert ours == [m for m in theirs if m != "PREMUL_SUM"]  # distnn has no PREMUL_SUM


@requires_torch
@pytest.mark.parametrize("device", ["cpu", "cpu:0"])
def test_default_backend_for_cpu_is_torchs(device):
    import torch.distributed as tdist
    assert dist.get_default_backend_for_device(device) == tdist.get_default_backend_for_device(device) == "gloo"
    assert dist.get_default_backend_for_device(distnn.device(device)) == "gloo"


def test_default_backend_for_cuda_and_unknown_devices():
    assert dist.get_default_backend_for_device("cuda") == dist.get_default_backend_for_device("cuda:1") == "gloo"
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda device type"):
        dist.get_default_backend_for_device("mps")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_init_process_group_accepts_the_default_backend(device):
    backend = dist.get_default_backend_for_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                            timeout=timedelta(seconds=10))
    try:
        t = distnn.tensor([1.0, 2.0])
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        assert t.tolist() == [1.0, 2.0]
    finally:
        dist.destroy_process_group()


def test_distributed_and_ddp_are_attributes_after_a_bare_import():
    """``import torch`` then ``torch.distributed.init_process_group`` and
    ``torch.nn.parallel.DistributedDataParallel``, as programs write them; distnn loads
    its distributed layer (ZeroMQ) only when first used."""
    code = ("import sys, distnn\n"
            "assert 'distnn.distributed' not in sys.modules\n"
            "assert distnn.nn.parallel.DistributedDataParallel is distnn.distributed.DistributedDataParallel\n"
            "assert callable(distnn.distributed.init_process_group)\n"
            "assert not hasattr(distnn, 'no_such_name')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


# --- serialization -------------------------------------------------------------------

@pytest.fixture
def no_safe_globals():
    serialization.clear_safe_globals()
    yield
    serialization.clear_safe_globals()


class Point:
    pass


def test_safe_globals_recorded_like_torchs(no_safe_globals):
    serialization.add_safe_globals([Point, Point, (len, "builtins.len")])
    assert serialization.get_safe_globals() == [Point, (len, "builtins.len")]
    with distnn.serialization.safe_globals([dict, Point]):
        assert serialization.get_safe_globals() == [Point, (len, "builtins.len"), dict]
    assert serialization.get_safe_globals() == [(len, "builtins.len")]  # torch removes them all too
    with pytest.raises(TypeError, match="not iterable"):
        serialization.add_safe_globals(len)


def test_safe_globals_do_not_change_loading(tmp_path, no_safe_globals):
    path = tmp_path / "w.pt"
    state = {"w": distnn.arange(3.0)}
    distnn.save(state, path)
    with serialization.safe_globals([Point]):
        loaded = distnn.load(path, weights_only=True)
    assert loaded["w"].tolist() == [0.0, 1.0, 2.0]


def test_saving_a_module_says_how_to_save_and_load(tmp_path):
    model = distnn.nn.Linear(2, 3)
    path = tmp_path / "model.pt"
    with pytest.raises(TypeError, match=r"cannot save object of type Linear \(save its state_dict\(\) instead") \
            as info:
        distnn.save(model, path)
    assert "torch.save(model.state_dict(), path)" in str(info.value)
    assert "model.load_state_dict(torch.load(path))" in str(info.value)
    assert not path.exists()
    distnn.save(model.state_dict(), path)  # ... and what it says works
    fresh = distnn.nn.Linear(2, 3)
    fresh.load_state_dict(distnn.load(path))
    assert fresh.weight.tolist() == model.weight.tolist()


# --- onnx ----------------------------------------------------------------------------

def test_onnx_export_refused_clearly(tmp_path):
    model = distnn.nn.Linear(2, 2)
    for caught in (NotImplementedError, distnn.onnx.OnnxExporterError):
        with pytest.raises(caught, match="ONNX export is not supported by distnn"):
            distnn.onnx.export(model, (distnn.zeros(1, 2),), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
    assert distnn.onnx.is_in_onnx_export() is False


# --- clip_grad_norm_ -----------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 0.0, 3.0])
def test_clip_grad_norm_result_converts_as_torchs(norm_type):
    def run(lib):
        lib.manual_seed(0)
        model = lib.nn.Linear(3, 2)
        model.weight.grad = lib.tensor([[3.0, -4.0, 0.0], [1.0, 2.0, -2.0]])
        model.bias.grad = lib.tensor([0.5, -1.5])
        return lib.nn.utils.clip_grad_norm_(model.parameters(), 1.0, norm_type=norm_type)

    ours, theirs = run(distnn), run(torch)
    assert type(ours.numpy()) is np.ndarray and ours.numpy().shape == () and ours.numpy().dtype == np.float32
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)
    assert ours.shape == distnn.Size([]) and ours.dtype == distnn.float32


# --- randint's call forms ------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("args, kwargs", [
    ((10, (2, 3)), {}),                    # randint(high, size): word_language_model/generate.py
    ((10, [4]), {"dtype": "long"}),
    ((5,), {"size": (3,)}),                # mnist_forward_forward
    ((2, 10, (2, 2)), {}),
    ((), {"low": 2, "high": 10, "size": (3,)}),
], ids=["high-size", "high-list-dtype", "size-keyword", "low-high-size", "all-keywords"])
def test_randint_call_forms_as_torchs(args, kwargs):
    def run(lib):
        kw = {k: getattr(lib, v) if k == "dtype" else v for k, v in kwargs.items()}
        return lib.randint(*args, **kw)

    ours, theirs = run(distnn), run(torch)
    assert tuple(ours.shape) == tuple(theirs.shape) and str(ours.dtype) == str(theirs.dtype)
    low = kwargs.get("low", args[0] if len(args) == 3 else 0)
    high = kwargs.get("high", args[1] if len(args) == 3 else (args[0] if args else None))
    assert ((ours >= low) & (ours < high)).all()
