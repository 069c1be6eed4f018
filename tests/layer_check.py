"""One helper the layer tests share: build a distnn layer and its PyTorch twin, copy
PyTorch's parameters and buffers into ours, then require the same repr, outputs,
input gradients, parameter gradients and buffers (float32). ``DISTNN_TEST_DEVICE=cuda`` runs our layer on the GPU, as op_check does."""

import numpy as np
import pytest

import distnn
from op_check import DEVICE, host

try:
    import torch
except ImportError:  # the oracle is optional
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch (test oracle) not installed")


def load_torch_state(ours, theirs):
    """Copy every parameter and buffer of torch module ``theirs`` into ``ours``."""
    state = {k: distnn.from_numpy(v.detach().numpy().copy()) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    ours.to(DEVICE)


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _flat(item)]
    return [out]


def compare_module(ours, theirs, arrays, rtol=1e-5, atol=1e-6, backward=True, copy_state=True):
    """Run both modules on ``arrays`` (numpy; float arrays get gradients) and compare.

    Returns (our outputs, torch outputs) as flat lists, for extra checks.
    """
    if copy_state:
        load_torch_state(ours, theirs)
    ours.to(DEVICE)
    ins_o = [distnn.from_numpy(a.copy()).to(DEVICE) for a in arrays]
    ins_t = [torch.from_numpy(a.copy()) for a in arrays]
    for o, t in zip(ins_o, ins_t):
        if o.is_floating_point() and backward:
            o.requires_grad_(True)
            t.requires_grad_(True)
    outs_o, outs_t = _flat(ours(*ins_o)), _flat(theirs(*ins_t))
    assert len(outs_o) == len(outs_t)
    for o, t in zip(outs_o, outs_t):
        assert tuple(o.shape) == tuple(t.shape), f"output shape {tuple(o.shape)} != torch {tuple(t.shape)}"
        assert str(o.dtype) == str(t.dtype)
        np.testing.assert_allclose(host(o), t.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg="forward differs from torch")
    for name, buf in theirs.named_buffers():
        np.testing.assert_allclose(host(ours.get_buffer(name)), buf.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"buffer {name} differs from torch")
    if not backward:
        return outs_o, outs_t
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.5, 1.5, size=tuple(t.shape)).astype(np.float32) for t in outs_t]
    pairs = [(o, t, w) for o, t, w in zip(outs_o, outs_t, weights) if t.requires_grad]
    sum((o * distnn.from_numpy(w).to(DEVICE)).sum() for o, _, w in pairs).backward()
    sum((t * torch.from_numpy(w)).sum() for _, t, w in pairs).backward()
    for i, (o, t) in enumerate(zip(ins_o, ins_t)):
        if t.grad is not None:
            np.testing.assert_allclose(host(o.grad), t.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of input {i} differs from torch")
    torch_params = dict(theirs.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert sorted(ours_params) == sorted(torch_params)
    for name, p in ours_params.items():
        tp = torch_params[name]
        assert (p.grad is None) == (tp.grad is None), f"gradient presence of {name} differs"
        if tp.grad is not None:
            np.testing.assert_allclose(host(p.grad), tp.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"gradient of parameter {name} differs from torch")
    return outs_o, outs_t


def make_pair(name, *args, **kwargs):
    """``(distnn.nn.<name>(...), torch.nn.<name>(...))`` built with the same arguments."""
    return getattr(distnn.nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


def assert_uniform(t, bound):
    """Values of ``t`` look like U(-bound, bound): in range, mean ~ 0, std ~ bound / sqrt(3)."""
    a = t.detach().cpu().numpy().astype(np.float64).ravel()
    assert t.dtype == distnn.float32
    edge = float(np.float32(bound)) * (1 + 1e-6)  # the bound itself, rounded to float32
    assert a.min() >= -edge and a.max() <= edge
    std = bound / np.sqrt(3)
    assert abs(a.mean()) < 5 * std / np.sqrt(a.size)
    assert abs(a.std() / std - 1) < 0.05
    # the extremes get close to the bound: the bound is tight, not a loose envelope
    assert a.max() > 0.95 * bound and a.min() < -0.95 * bound


def assert_normal(t, mean, std):
    a = t.detach().cpu().numpy().astype(np.float64).ravel()
    assert t.dtype == distnn.float32
    assert abs(a.mean() - mean) < 5 * std / np.sqrt(a.size)
    assert abs(a.std() / std - 1) < 0.05
