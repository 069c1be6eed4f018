"""Normalisation and dropout: gradcheck and torch comparison for batch/layer/group/
instance/rms norm and normalize; running statistics against torch over several calls;
dropout statistics, exact scaling, seeding and gradients; bad-input errors."""

import warnings

import numpy as np
import pytest

import distnn
from op_check import DEVICE, check_op, make_input, requires_torch, torch


def F(lib):
    """The functional namespace: ``torch.nn.functional`` or ``distnn.ops``."""
    return distnn.ops if lib is distnn else lib.nn.functional


# --- batch norm ---------------------------------------------------------------------

BN_SHAPES = [(4, 3), (4, 3, 5), (2, 3, 3, 3)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(shape, training, affine):
    c = shape[1]
    stats = [make_input((c,), seed=3) * 0.1, make_input((c,), positive=True, seed=4)]
    params = [make_input((c,), positive=True, seed=5), make_input((c,), seed=6)] if affine else [None, None]
    check_op(lambda lib, x, rm, rv, w, b: F(lib).batch_norm(x, rm, rv, w, b, training=training, momentum=0.2),
             [make_input(shape, low=-2, high=2)] + stats + params, requires_grad=[True, False, False, True, True])


def test_eval_batch_norm_backward_uses_its_forwards_statistics():
    # eval keeps no xhat (x * scale + shift on channel rows): backward rebuilds it from the
    # running statistics as they were at forward, even if a training step updated them since
    bn = distnn.nn.BatchNorm2d(3)
    bn.running_mean.copy_(distnn.tensor([0.5, -1.0, 2.0]))
    bn.running_var.copy_(distnn.tensor([4.0, 0.25, 1.0]))
    x = distnn.tensor(make_input((2, 3, 4, 5), seed=1).astype(np.float32), requires_grad=True)
    mean, var = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    bn.eval()
    out = bn(x.transpose(2, 3))  # not C-contiguous: the (1, C, 1, 1) form
    bn.train()
    bn(x * 3)  # updates the running statistics in place
    g = make_input(out.shape, seed=2).astype(np.float32)
    out.backward(distnn.tensor(g))
    w, std = bn.weight.detach().numpy().reshape(1, 3, 1, 1), np.sqrt(var + bn.eps).reshape(1, 3, 1, 1)
    scale = w / std
    xhat = (x.detach().numpy().transpose(0, 1, 3, 2) - mean.reshape(1, 3, 1, 1)) / std
    np.testing.assert_allclose(out.detach().numpy(), xhat * w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), (g * scale).transpose(0, 1, 3, 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.weight.grad.numpy(), (g * xhat).sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)


@pytest.fixture
def bn_by_blocks(monkeypatch):
    """Batch norm by sample blocks (as on big activations without oneDNN), one or two samples a block."""
    monkeypatch.setattr("distnn.backends.mkldnn.enabled", False)
    monkeypatch.setattr("distnn.ops.normalization._BN_BLOCKED_MIN_BYTES", 0)
    monkeypatch.setattr("distnn.ops.normalization._BN_BLOCK_BYTES", 1)
    blocked = []
    monkeypatch.setattr("distnn.ops.normalization._blocked_batch_norm_backward",
                        lambda *a, fn=distnn.ops.normalization._blocked_batch_norm_backward: blocked.append(1) or fn(*a))
    return blocked


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (5, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_by_sample_blocks(bn_by_blocks, shape, affine):
    c = shape[1]
    params = [make_input((c,), positive=True, seed=5), make_input((c,), seed=6)] if affine else [None, None]
    check_op(lambda lib, x, w, b: F(lib).batch_norm(x, None, None, w, b, training=True),
             [make_input(shape, low=-2, high=2)] + params, requires_grad=[True, affine, affine])
    assert bn_by_blocks or DEVICE.type == "cuda"  # the blocks are the CPU's; a GPU runs the whole batch


@requires_torch
def test_batch_norm_by_sample_blocks_keeps_float32_statistics_exact(bn_by_blocks):
    """Blocks' moments combined (Chan et al.), far from zero mean: torch's values and running stats."""
    x = (make_input((6, 4, 5, 7), seed=2) + 300).astype(np.float32)
    g = make_input(x.shape, seed=3).astype(np.float32)
    results = []
    for lib in (distnn, torch):
        stats = [lib.zeros(4), lib.ones(4)]
        xt = lib.tensor(x, requires_grad=True)
        w = lib.tensor(make_input((4,), positive=True, seed=5).astype(np.float32), requires_grad=True)
        out = F(lib).batch_norm(xt, *stats, w, None, training=True, momentum=0.5)
        out.backward(lib.tensor(g))
        results.append([out.detach().numpy(), xt.grad.numpy(), w.grad.numpy()] + [s.numpy() for s in stats])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-4)
    assert bn_by_blocks


@requires_torch
def test_batch_norm_by_sample_blocks_with_a_strided_gradient(bn_by_blocks):
    """A gradient that is not contiguous takes the whole-array backward, xhat recomputed
    from the input the blocked forward kept instead."""
    x = make_input((4, 3, 5, 6), seed=7).astype(np.float32)
    g = make_input((3, 4, 5, 6), seed=8).astype(np.float32)
    results = []
    for lib in (distnn, torch):
        xt = lib.tensor(x, requires_grad=True)
        w = lib.tensor(make_input((3,), positive=True, seed=5).astype(np.float32), requires_grad=True)
        out = F(lib).batch_norm(xt, None, None, w, None, training=True)
        out.backward(lib.tensor(g).permute(1, 0, 2, 3))
        results.append([xt.grad.numpy(), w.grad.numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-5)
    assert not bn_by_blocks  # the blocked backward was not taken


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_without_running_stats(shape):
    check_op(lambda lib, x, w: F(lib).batch_norm(x, None, None, w, None, training=True),
             [make_input(shape), make_input((shape[1],), positive=True, seed=5)])


@requires_torch
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_batch_norm_running_stats_follow_torch(shape, momentum):
    c = shape[1]
    ours = [distnn.zeros(c), distnn.ones(c)]
    theirs = [torch.zeros(c), torch.ones(c)]
    for step in range(4):
        x = make_input(shape, low=-3, high=5, seed=step).astype(np.float32)
        out = distnn.ops.batch_norm(distnn.tensor(x), *ours, training=True, momentum=momentum)
        expected = torch.nn.functional.batch_norm(torch.tensor(x), *theirs, training=True, momentum=momentum)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert ours[0]._version == theirs[0]._version == 0  # running stats are not versioned, as in torch
    assert not ours[0].requires_grad and ours[0].grad_fn is None
    x = make_input(shape, seed=9).astype(np.float32)
    np.testing.assert_allclose(distnn.ops.batch_norm(distnn.tensor(x), *ours).numpy(),
                               torch.nn.functional.batch_norm(torch.tensor(x), *theirs).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_batch_norm_updates_running_stats_under_no_grad_and_not_in_eval():
    rm, rv = distnn.zeros(2), distnn.ones(2)
    x = distnn.tensor([[1.0, 2.0], [3.0, 6.0]])
    with distnn.no_grad():
        distnn.ops.batch_norm(x, rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(rm.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(rv.numpy(), [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 8.0])  # unbiased batch var
    distnn.ops.batch_norm(x, rm, rv, training=False)
    np.testing.assert_allclose(rm.numpy(), [1.0, 2.0])


@pytest.mark.parametrize("call,error,match", [
    (lambda x: distnn.ops.batch_norm(x, distnn.zeros(4), distnn.ones(3), training=True), RuntimeError,
     "running_mean should contain 3 elements not 4"),
    (lambda x: distnn.ops.batch_norm(x, None, None, weight=distnn.ones(2), training=True), RuntimeError,
     "weight should contain 3 elements not 2"),
    (lambda x: distnn.ops.batch_norm(x, None, None, training=False), RuntimeError,
     "running_mean must be defined in evaluation mode"),
    (lambda x: distnn.ops.batch_norm(x[:1], None, None, training=True), ValueError,
     r"Expected more than 1 value per channel when training, got input size torch.Size\(\[1, 3\]\)"),
])
def test_batch_norm_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(distnn.zeros(2, 3))


# --- layer, group, instance and rms norm ------------------------------------------------

@pytest.mark.parametrize("shape,normalized", [((3, 4), (4,)), ((2, 3, 4), (3, 4)), ((2, 3, 4), 4),
                                              ((2, 2, 2, 3), (2, 2, 3))])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm(shape, normalized, affine):
    ns = (normalized,) if isinstance(normalized, int) else normalized
    w = make_input(ns, positive=True, seed=5) if affine != "none" else None
    b = make_input(ns, seed=6) if affine == "both" else None
    check_op(lambda lib, x, w, b: F(lib).layer_norm(x, ns if lib is torch else normalized, w, b, eps=1e-5),
             [make_input(shape, low=-2, high=2), w, b])


@pytest.mark.parametrize("shape,groups", [((2, 6, 3), 1), ((2, 6, 3), 2), ((2, 6, 3), 6), ((2, 4, 2, 2), 2),
                                          ((3, 6), 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm(shape, groups, affine):
    c = shape[1]
    params = [make_input((c,), positive=True, seed=5), make_input((c,), seed=6)] if affine else [None, None]
    check_op(lambda lib, x, w, b: F(lib).group_norm(x, groups, w, b), [make_input(shape, low=-2, high=2)] + params)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm(shape, affine):
    params = [make_input((3,), positive=True, seed=5), make_input((3,), seed=6)] if affine else [None, None]
    check_op(lambda lib, x, w, b: F(lib).instance_norm(x, weight=w, bias=b), [make_input(shape)] + params)


@requires_torch
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_running_stats_follow_torch(use_input_stats):
    x = make_input((3, 2, 5), low=-1, high=4).astype(np.float32)
    ours, theirs = [distnn.zeros(2), distnn.ones(2)], [torch.zeros(2), torch.ones(2)]
    for _ in range(2):
        out = distnn.ops.instance_norm(distnn.tensor(x), *ours, use_input_stats=use_input_stats, momentum=0.3)
        expected = torch.nn.functional.instance_norm(torch.tensor(x), *theirs, use_input_stats=use_input_stats,
                                                     momentum=0.3)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,normalized", [((2, 3, 4), (4,)), ((2, 3, 4), (3, 4))])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm(shape, normalized, weighted, eps):
    w = make_input(normalized, positive=True, seed=5) if weighted else None
    check_op(lambda lib, x, w: F(lib).rms_norm(x, normalized, w, eps=eps), [make_input(shape), w])


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("shape,dim", [((3, 4), 1), ((3, 4), 0), ((2, 3, 4), -1)])
def test_normalize(p, shape, dim):
    check_op(lambda lib, x: F(lib).normalize(x, p=p, dim=dim), [make_input(shape)])


def test_normalize_clamps_small_norms():
    x = np.zeros((2, 3))
    x[1] = [3.0, 4.0, 0.0]
    check_op(lambda lib, x: F(lib).normalize(x, eps=1e-3), [x], gradcheck=False)


@pytest.mark.parametrize("call,match", [
    (lambda x: distnn.ops.layer_norm(x, (3,)), r"Given normalized_shape=\[3\], expected input with shape "
                                               r"\[\*, 3\], but got input of size\[2, 6, 4\]"),
    (lambda x: distnn.ops.layer_norm(x, (4,), weight=distnn.ones(5)), r"weight of shape \[5\] and "
                                                                       r"normalized_shape = \[4\]"),
    (lambda x: distnn.ops.group_norm(x, 4), r"divisible by num_groups, but got input of shape \[2, 6, 4\] "
                                            r"and num_groups=4"),
    (lambda x: distnn.ops.group_norm(x, 3, weight=distnn.ones(4)), r"weight of shape \[4\] and input of shape "
                                                                   r"\[2, 6, 4\]"),
])
def test_norm_shape_errors(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(distnn.zeros(2, 6, 4))


@requires_torch
@pytest.mark.parametrize("name,args", [("batch_norm", (None, None, None, None, True)), ("layer_norm", ((4,),)),
                                       ("group_norm", (2,)), ("rms_norm", ((4,),)), ("normalize", ()),
                                       ("dropout", (0.5,))])
def test_grad_fn_names_match_torch(name, args):
    x = make_input((2, 4, 4)).astype(np.float32)
    names = [getattr(F(lib), name)(lib.tensor(x, requires_grad=True), *args).grad_fn.name()
             for lib in (distnn, torch)]
    assert names[0] == names[1]


# --- dropout ----------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_zeroes_about_p_and_scales_exactly(p):
    x = distnn.ones(200_000)
    out = distnn.ops.dropout(x, p).numpy()
    assert abs((out == 0).mean() - p) < 0.01
    kept = out[out != 0]
    assert np.all(kept == np.float32(1) / np.float32(1 - p))
    if torch is not None:  # the kept value is the same float32 as torch's
        expected = torch.nn.functional.dropout(torch.ones(1000), p)
        assert np.all(kept[:1] == expected[expected != 0].numpy()[:1])


def test_dropout_is_deterministic_under_manual_seed():
    x = distnn.ones(50, 20)
    distnn.manual_seed(123)
    a = distnn.ops.dropout(x, 0.3)
    distnn.manual_seed(123)
    b = distnn.ops.dropout(x, 0.3)
    c = distnn.ops.dropout(x, 0.3)
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(b.numpy(), c.numpy())


def test_dropout_gradient_is_mask_times_scale():
    x = distnn.tensor(make_input((40, 30)).astype(np.float32), requires_grad=True)
    out = distnn.ops.dropout(x, 0.4)
    out.sum().backward()
    scale = np.float32(1) / np.float32(0.6)
    expected = np.where(out.detach().numpy() != 0, scale, np.float32(0))
    assert np.array_equal(x.grad.numpy(), expected)
    assert out.grad_fn.name() == "MulBackward0"


def test_dropout_identity_cases_and_p_one():
    x = distnn.randn(3, 4, requires_grad=True)
    assert distnn.ops.dropout(x, 0.0) is x
    assert distnn.ops.dropout(x, 0.7, training=False) is x
    assert distnn.ops.alpha_dropout(x, 0.7) is x  # training defaults to False, as in torch
    zero = distnn.ops.dropout(x, 1.0)
    assert np.array_equal(zero.detach().numpy(), np.zeros((3, 4), np.float32)) and zero.requires_grad


@pytest.mark.parametrize("fn", ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                                "feature_alpha_dropout"])
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_bad_p(fn, p):
    with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, but got {p}"):
        getattr(distnn.ops, fn)(distnn.ones(2, 3, 4, 4), p, True)


def test_dropout_inplace_modifies_input():
    x = distnn.ones(100, 10)
    out = distnn.ops.dropout(x, 0.5, inplace=True)
    assert out is x and x._version == 1
    assert set(np.unique(x.numpy())) == {0.0, 2.0}


@pytest.mark.parametrize("fn,shape,mask_dims", [("dropout1d", (8, 6, 5), 2), ("dropout1d", (6, 5), 1),
                                                ("dropout2d", (8, 6, 4, 4), 2), ("dropout3d", (8, 6, 2, 3, 3), 2),
                                                ("dropout3d", (6, 2, 3, 3), 1),
                                                ("feature_alpha_dropout", (8, 6, 4, 4), 2)])
def test_channel_dropout_drops_whole_channels(fn, shape, mask_dims):
    out = getattr(distnn.ops, fn)(distnn.ones(*shape), 0.5, True).numpy()
    flat = out.reshape(shape[:mask_dims] + (-1,))
    assert np.all(flat == flat[..., :1])  # every channel all kept or all dropped
    assert len(np.unique(flat[..., 0])) == 2  # and some channels of each kind


def test_channel_dropout_dims_checks_and_warnings():
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input, but received a 4D input"):
        distnn.ops.dropout1d(distnn.ones(2, 3, 4, 5))
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        distnn.ops.dropout2d(distnn.ones(2, 3, 4))
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d, which is deprecated"):
        distnn.ops.dropout2d(distnn.ones(2, 3))


def test_alpha_dropout_keeps_mean_and_variance_and_torch_values():
    x = distnn.randn(400_000)
    out = distnn.ops.alpha_dropout(x, 0.3, training=True).numpy()
    assert abs(out.mean()) < 0.01 and abs(out.std() - 1) < 0.01
    if torch is not None:  # the two affine maps (kept / dropped) are torch's
        ours = np.unique(distnn.ops.alpha_dropout(distnn.zeros(1000), 0.3, training=True).numpy())
        theirs = np.unique(torch.nn.functional.alpha_dropout(torch.zeros(1000), 0.3, training=True).numpy())
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_alpha_dropout_gradient_is_mask_times_a():
    x = distnn.tensor(make_input((50, 20)).astype(np.float32), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distnn.ops.alpha_dropout(x, 0.5, training=True).sum().backward()
    assert len(np.unique(x.grad.numpy())) == 2 and 0.0 in x.grad.numpy()
