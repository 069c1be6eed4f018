"""Normalisation layers (running statistics included), dropout layers and Embedding
against PyTorch and against their defining formulas."""

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import assert_normal, compare_module, make_pair, requires_torch, torch
from op_check import host, make_input

NORM_CASES = [
    ("BatchNorm1d", (4,), {}, (6, 4)),
    ("BatchNorm1d", (4,), {"momentum": None, "affine": False}, (6, 4, 5)),
    ("BatchNorm2d", (3,), {"eps": 1e-3, "momentum": 0.3}, (4, 3, 5, 5)),
    ("BatchNorm2d", (3,), {"track_running_stats": False}, (2, 3, 4, 4)),
    ("BatchNorm2d", (3,), {"bias": False}, (2, 3, 4, 4)),
    ("BatchNorm3d", (2,), {}, (2, 2, 3, 2, 2)),
    ("LayerNorm", (5,), {}, (3, 4, 5)),
    ("LayerNorm", ([4, 5],), {"eps": 1e-3, "bias": False}, (3, 4, 5)),
    ("LayerNorm", (5,), {"elementwise_affine": False}, (2, 5)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5, 2)),
    ("GroupNorm", (4, 4), {"affine": False}, (3, 4, 6)),
    ("RMSNorm", (5,), {}, (3, 4, 5)),
    ("RMSNorm", ([4, 5],), {"eps": 1e-3}, (3, 4, 5)),
]


@requires_torch
@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: f"{c[0]}{c[1]}{c[2] or ''}".replace(" ", ""))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_torch(case, mode):
    name, args, kwargs, shape = case
    ours, theirs = make_pair(name, *args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    if mode == "eval":
        # non-trivial running statistics and affine parameters first
        with torch.no_grad():
            for buf_name, buf in theirs.named_buffers():
                if buf.dtype == torch.float32:
                    buf.copy_(torch.rand(buf.shape) + 0.5)
            for p in theirs.parameters():
                p.copy_(torch.randn(p.shape))
        ours.eval()
        theirs.eval()
    compare_module(ours, theirs, [make_input(shape, seed=2).astype(np.float32)], rtol=1e-5, atol=1e-5)


@requires_torch
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_over_steps(momentum):
    ours, theirs = make_pair("BatchNorm2d", 3, momentum=momentum)
    for step in range(3):
        x = make_input((4, 3, 2, 2), seed=step, low=-2, high=3).astype(np.float32)
        ours(distnn.from_numpy(x))
        theirs(torch.from_numpy(x))
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(theirs, name).numpy(), rtol=1e-5,
                                   atol=1e-6)
    tracked = ours.num_batches_tracked
    assert tracked.dtype == distnn.int64 and tracked.dim() == 0 and tracked.item() == 3
    ours.eval()
    theirs.eval()
    x = make_input((2, 3, 2, 2), seed=9).astype(np.float32)
    np.testing.assert_allclose(ours(distnn.from_numpy(x)).detach().numpy(),
                               theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert ours.num_batches_tracked.item() == 3  # eval leaves the statistics alone


def test_batchnorm_buffers_and_reset():
    bn = nn.BatchNorm1d(3)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    bn(distnn.randn(4, 3) * 3 + 2)
    bn.reset_running_stats()
    assert bn.running_mean.tolist() == [0, 0, 0] and bn.running_var.tolist() == [1, 1, 1]
    assert bn.num_batches_tracked.item() == 0
    untracked = nn.BatchNorm1d(3, track_running_stats=False)
    assert untracked.running_mean is None and list(untracked.buffers()) == []


def test_batchnorm_loads_old_checkpoint_without_num_batches_tracked():
    bn = nn.BatchNorm1d(2)
    bn(distnn.randn(4, 2))
    old = {k: v for k, v in nn.BatchNorm1d(2).state_dict().items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(old).missing_keys == []
    assert bn.num_batches_tracked.item() == 1  # kept, as PyTorch keeps it
    current = nn.BatchNorm1d(2).state_dict()
    assert current._metadata[""]["version"] == 2


@pytest.mark.parametrize("layer,x,match", [
    (nn.BatchNorm1d(3), distnn.zeros(2, 3, 4, 5), r"expected 2D or 3D input \(got 4D input\)"),
    (nn.BatchNorm2d(3), distnn.zeros(2, 3, 4), r"expected 4D input \(got 3D input\)"),
])
def test_batchnorm_input_dim_errors(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)


def test_groupnorm_divisibility_error():
    with pytest.raises(ValueError, match=r"num_channels \(5\) must be divisible by num_groups \(2\)"):
        nn.GroupNorm(2, 5)


def test_norm_default_init():
    for layer in (nn.BatchNorm2d(4), nn.LayerNorm(4), nn.GroupNorm(2, 4)):
        assert layer.weight.tolist() == [1, 1, 1, 1] and layer.bias.tolist() == [0, 0, 0, 0]
        assert layer.weight.dtype == distnn.float32


# --- dropout -------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_train_zeroes_and_rescales(p):
    layer = nn.Dropout(p)
    x = distnn.ones(200, 100, requires_grad=True)
    y = layer(x)
    out = y.detach().numpy()
    kept = out != 0
    assert abs((~kept).mean() - p) < 0.02
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), out, rtol=1e-6)  # same mask, same scale


def test_dropout_eval_and_extremes():
    x = distnn.randn(4, 5)
    layer = nn.Dropout(0.7).eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    assert (nn.Dropout(1.0)(x).numpy() == 0).all()
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())


def test_dropout_inplace_writes_input():
    x = distnn.ones(50, 50)
    y = nn.Dropout(0.5, inplace=True)(x)
    assert (x.numpy() == y.numpy()).all() and (x.numpy() == 0).any()


@pytest.mark.parametrize("name,shape", [("Dropout1d", (8, 16, 5)), ("Dropout2d", (8, 16, 3, 3)),
                                        ("Dropout3d", (4, 16, 2, 2, 2))])
def test_channel_dropout_drops_whole_channels(name, shape):
    y = getattr(nn, name)(0.5)(distnn.ones(*shape)).numpy()
    per_channel = y.reshape(shape[0], shape[1], -1)
    # every channel is all-zero or all-2
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()
    assert 0 < (per_channel == 0).all(-1).mean() < 1


def test_dropout_probability_error_and_repr():
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)
    assert repr(nn.Dropout()) == "Dropout(p=0.5, inplace=False)"
    assert repr(nn.Dropout2d(0.2, inplace=True)) == "Dropout2d(p=0.2, inplace=True)"


def test_alpha_dropout_keeps_mean_and_variance():
    distnn.manual_seed(0)
    x = distnn.randn(100000)
    y = nn.AlphaDropout(0.3)(x).numpy()
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02


# --- embedding -----------------------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("kwargs", [{}, {"padding_idx": 2}, {"padding_idx": -1}, {"max_norm": 1.0},
                                    {"scale_grad_by_freq": True}])
def test_embedding_matches_torch(kwargs):
    ours, theirs = make_pair("Embedding", 6, 3, **kwargs)
    assert repr(ours) == repr(theirs)
    idx = np.array([[0, 2, 4], [2, 5, 5]], dtype=np.int64)
    compare_module(ours, theirs, [idx])
    # max_norm renormalises the looked-up rows of the weight itself, as torch does
    np.testing.assert_allclose(host(ours.weight), theirs.weight.detach().numpy(), rtol=1e-6)


def test_embedding_init_and_padding_row():
    distnn.manual_seed(0)
    emb = nn.Embedding(1000, 64, padding_idx=0)
    assert emb.weight.detach().numpy()[0].tolist() == [0.0] * 64
    assert_normal(emb.weight[1:], 0.0, 1.0)
    out = emb(distnn.tensor([0, 1, 0]))
    out.sum().backward()
    assert not emb.weight.grad.numpy()[0].any() and emb.weight.grad.numpy()[1].tolist() == [1.0] * 64


def test_embedding_from_pretrained():
    w = distnn.randn(4, 2)
    emb = nn.Embedding.from_pretrained(w)
    assert not emb.weight.requires_grad and repr(emb) == "Embedding(4, 2)"
    np.testing.assert_array_equal(emb(distnn.tensor([3])).numpy(), w.numpy()[3:4])
    assert nn.Embedding.from_pretrained(w, freeze=False).weight.requires_grad


def test_embedding_errors():
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 2, padding_idx=3)
    with pytest.raises(IndexError, match="index out of range"):
        nn.Embedding(3, 2)(distnn.tensor([3]))
