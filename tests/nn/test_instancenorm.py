"""InstanceNorm1d/2d/3d against PyTorch: outputs, input and parameter gradients,
running statistics (momentum None included), eval mode, unbatched input, reprs,
state_dict keys, old checkpoints, errors and the num_features warning."""

import warnings

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import compare_module, make_pair, requires_torch, torch
from op_check import make_input

CASES = [
    ("InstanceNorm1d", (4,), {}, (3, 4, 5)),
    ("InstanceNorm1d", (4,), {"affine": True}, (4, 6)),  # unbatched
    ("InstanceNorm1d", (4,), {"track_running_stats": True, "momentum": None}, (3, 4, 5)),
    ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 4, 5)),
    ("InstanceNorm2d", (3,), {"eps": 1e-3, "momentum": 0.3, "track_running_stats": True}, (3, 4, 4)),
    ("InstanceNorm2d", (3,), {"affine": True, "bias": False}, (2, 3, 3, 2)),
    ("InstanceNorm3d", (2,), {"affine": True}, (2, 2, 3, 2, 2)),
    ("InstanceNorm3d", (2,), {"track_running_stats": True}, (2, 3, 2, 2)),
]


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[2] or ''}{list(c[3])}".replace(" ", ""))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_torch(case, mode):
    name, args, kwargs, shape = case
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        for buf in theirs.buffers():
            if buf.dtype == torch.float32:
                buf.copy_(torch.rand(buf.shape) + 0.5)
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape))
    if mode == "eval":
        ours.eval()
        theirs.eval()
    # compare_module also requires equal buffers after the step: the running statistics
    compare_module(ours, theirs, [make_input(shape, seed=2, low=-2, high=3).astype(np.float32)],
                   rtol=1e-5, atol=1e-5)


@requires_torch
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_over_steps(momentum):
    ours, theirs = make_pair("InstanceNorm1d", 3, momentum=momentum, track_running_stats=True)
    for step in range(3):
        x = make_input((4, 3, 5), seed=step, low=-2, high=3).astype(np.float32)
        ours(distnn.from_numpy(x))
        theirs(torch.from_numpy(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    assert ours.num_batches_tracked.item() == 0  # instance norm never counts, as PyTorch
    ours.eval()
    theirs.eval()
    x = make_input((2, 3, 5), seed=9).astype(np.float32)
    np.testing.assert_allclose(ours(distnn.from_numpy(x)).numpy(), theirs(torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_defaults_have_no_parameters_or_buffers():
    norm = nn.InstanceNorm2d(3)
    assert norm.weight is None and norm.bias is None and norm.running_mean is None
    assert list(norm.parameters()) == [] and list(norm.state_dict()) == []
    assert not norm.affine and not norm.track_running_stats


@requires_torch
@pytest.mark.parametrize("name,shape,kwargs", [
    ("InstanceNorm1d", (3,), {}),
    ("InstanceNorm1d", (2, 3, 4, 5), {}),
    ("InstanceNorm2d", (2, 3), {}),
    ("InstanceNorm3d", (2, 3, 4, 5, 6, 7), {}),
    ("InstanceNorm2d", (2, 3, 1, 1), {}),  # one spatial element
    ("InstanceNorm2d", (2, 4, 3, 3), {"affine": True}),  # channels != num_features
])
def test_errors_match_torch(name, shape, kwargs):
    ours, theirs = make_pair(name, 3, **kwargs)
    x = make_input(shape).astype(np.float32)
    with pytest.raises(Exception) as expected:
        theirs(torch.from_numpy(x))
    with pytest.raises(type(expected.value)) as got:
        ours(distnn.from_numpy(x))
    assert str(got.value).replace("distnn.Size", "torch.Size") == str(expected.value)


@requires_torch
def test_channel_mismatch_without_affine_warns_as_torch():
    ours, theirs = make_pair("InstanceNorm2d", 3)
    x = make_input((2, 4, 3, 3)).astype(np.float32)
    caught = []
    for module, tensor in ((theirs, torch.from_numpy(x)), (ours, distnn.from_numpy(x))):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            out = module(tensor)
        caught.append([(w.category, str(w.message)) for w in record])
        assert tuple(out.shape) == x.shape
    assert caught[0] == caught[1] and len(caught[0]) == 1


@requires_torch
def test_old_checkpoint_running_stats_rejected_as_torch():
    # A checkpoint without version metadata (before PyTorch 0.4) with running statistics
    # that an untracked instance norm has no buffers for.
    state = {"running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}
    ours, theirs = make_pair("InstanceNorm2d", 3)
    for strict in (True, False):  # an error either way, as PyTorch
        with pytest.raises(RuntimeError) as expected:
            theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=strict)
        with pytest.raises(RuntimeError) as got:
            ours.load_state_dict({k: distnn.from_numpy(v) for k, v in state.items()}, strict=strict)
        assert str(got.value) == str(expected.value)
        assert "Unexpected running stats buffer(s)" in str(got.value)


@requires_torch
def test_state_dict_round_trip_with_torch():
    ours, theirs = make_pair("InstanceNorm3d", 2, affine=True, track_running_stats=True)
    theirs(torch.randn(2, 2, 3, 3, 3))
    ours.load_state_dict({k: distnn.from_numpy(v.numpy().copy()) for k, v in theirs.state_dict().items()})
    for (k, ov), (tk, tv) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == tk and str(ov.dtype) == str(tv.dtype)
        np.testing.assert_array_equal(ov.numpy(), tv.numpy())
