"""``distnn.nn.utils``: gradient clipping by total norm and by value, and the
parameter <-> vector conversions, compared with PyTorch."""

import math

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from distnn.nn import Parameter
from distnn.nn.utils import (clip_grad_norm_, clip_grad_value_, get_total_norm, parameters_to_vector,
                             vector_to_parameters)
from op_check import requires_torch, torch

SHAPES = [(3, 4), (5,), (2, 1, 3), ()]


def _params(lib, with_grads=True, skip=(), scale=1.0, seed=0):
    """Parameters of SHAPES from ``lib`` with seeded gradients; indices in ``skip`` get no grad."""
    rng = np.random.default_rng(seed)
    params = []
    for i, shape in enumerate(SHAPES):
        p = lib.nn.Parameter(lib.from_numpy(np.asarray(rng.standard_normal(shape), np.float32)))
        g = np.asarray(rng.standard_normal(shape) * scale, np.float32)
        if with_grads and i not in skip:
            p.grad = lib.from_numpy(g)
        params.append(p)
    return params


def _grads(params):
    return [None if p.grad is None else np.array(p.grad.tolist(), dtype=np.float32) for p in params]


@requires_torch
@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, 3.0, 0.5, "inf"])
@pytest.mark.parametrize("max_norm", [0.1, 1e3])
@pytest.mark.parametrize("skip", [(), (1,)])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, skip):
    ours, theirs = _params(distnn, skip=skip), _params(torch, skip=skip)
    total_o = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total_o, distnn.Tensor) and total_o.shape == () and total_o.dtype == distnn.float32
    np.testing.assert_allclose(total_o.item(), total_t.item(), rtol=1e-5)
    for go, gt in zip(_grads(ours), _grads(theirs)):
        if gt is None:
            assert go is None
        else:
            np.testing.assert_allclose(go, gt, rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_clips_to_max_norm_and_leaves_small_grads():
    params = _params(distnn, scale=10.0)
    before = get_total_norm([p.grad for p in params]).item()
    total = clip_grad_norm_(params, 1.0)
    assert total.item() == pytest.approx(before)
    assert get_total_norm([p.grad for p in params]).item() == pytest.approx(1.0, rel=1e-5)
    snapshot = _grads(params)
    clip_grad_norm_(params, 10.0)  # already below: unchanged
    for a, b in zip(_grads(params), snapshot):
        np.testing.assert_array_equal(a, b)


def test_clip_grad_norm_keeps_grad_objects_and_accepts_a_single_tensor():
    p = Parameter(distnn.ones(4))
    p.grad = distnn.full((4,), 2.0)
    grad = p.grad
    total = clip_grad_norm_(p, 1.0)
    assert p.grad is grad and total.item() == pytest.approx(4.0)
    np.testing.assert_allclose(p.grad.numpy(), np.full(4, 0.5), rtol=1e-5)  # 2 * 1/4


def test_clip_grad_norm_works_from_a_module_generator():
    net = nn.Sequential(nn.Module())
    net.w = Parameter(distnn.ones(3))
    (net.w * 3).sum().backward()
    total = clip_grad_norm_(net.parameters(), max_norm=1.0)
    assert total.item() == pytest.approx(math.sqrt(27))


def test_clip_grad_norm_without_grads_returns_zero():
    assert clip_grad_norm_(_params(distnn, with_grads=False), 1.0).item() == 0.0
    with pytest.warns(UserWarning, match="empty generator"):
        assert clip_grad_norm_((p for p in []), 1.0).item() == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_error_if_nonfinite(bad):
    params = _params(distnn)
    params[0].grad[0, 0] = bad
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(params, 1.0)  # allowed: scales by the non-finite norm, as torch does
    assert not math.isfinite(total.item())


def test_clip_grad_norm_float64_grads_stay_float64():
    p = Parameter(distnn.ones(3, dtype=distnn.float64))
    p.grad = distnn.full((3,), 4.0, dtype=distnn.float64)
    total = clip_grad_norm_([p], 1.0)
    assert total.dtype == distnn.float64 and p.grad.dtype == distnn.float64


@requires_torch
@pytest.mark.parametrize("clip_value", [0.1, 0.5, 5.0])
def test_clip_grad_value_matches_torch(clip_value):
    ours, theirs = _params(distnn, skip=(2,)), _params(torch, skip=(2,))
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for go, gt in zip(_grads(ours), _grads(theirs)):
        if gt is None:
            assert go is None
        else:
            np.testing.assert_array_equal(go, gt)
            assert np.abs(go).max() <= clip_value


# --- parameters <-> vector -------------------------------------------------------------------
@requires_torch
def test_parameters_to_vector_matches_torch_and_is_differentiable():
    ours, theirs = _params(distnn, with_grads=False), _params(torch, with_grads=False)
    vec = parameters_to_vector(ours)
    np.testing.assert_array_equal(np.array(vec.tolist(), np.float32),
                                  torch.nn.utils.parameters_to_vector(theirs).detach().numpy())
    weights = distnn.arange(vec.numel(), dtype=distnn.float32)
    (vec * weights).sum().backward()
    offset = 0
    for p in ours:
        n = p.numel()
        np.testing.assert_array_equal(p.grad.numpy().ravel(), np.arange(offset, offset + n, dtype=np.float32))
        offset += n


def test_vector_to_parameters_round_trip_shares_the_vector():
    params = _params(distnn, with_grads=False)
    vec = distnn.arange(sum(p.numel() for p in params), dtype=distnn.float32)
    vector_to_parameters(vec, params)
    assert [tuple(p.shape) for p in params] == [tuple(s) for s in SHAPES]
    assert all(type(p) is Parameter for p in params)
    np.testing.assert_array_equal(parameters_to_vector(params).detach().numpy(), vec.numpy())
    vec[0] = 100.0  # the parameters are views into the vector, as in torch
    assert params[0][0, 0].item() == 100.0


def test_vector_to_parameters_errors():
    params = _params(distnn, with_grads=False)
    with pytest.raises(TypeError, match="expected torch.Tensor, but got: list"):
        vector_to_parameters([1.0, 2.0], params)
    with pytest.raises(RuntimeError, match="too short"):
        vector_to_parameters(distnn.zeros(3), params)
