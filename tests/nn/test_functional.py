"""nn.functional: the names it exports, and the functionals it implements itself
(bilinear, interpolate, attention, distances, composed losses), each
gradchecked and compared with PyTorch."""

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from layer_check import requires_torch, torch
from op_check import check_op, make_input


@requires_torch
def test_every_name_is_torchs_and_callable():
    for name in F.__all__:
        assert callable(getattr(F, name)), name
        assert hasattr(torch.nn.functional, name), f"F.{name} is not a torch.nn.functional name"


@requires_torch
@pytest.mark.parametrize("name", ["relu", "softmax", "log_softmax", "conv2d", "max_pool2d", "avg_pool2d",
                                  "cross_entropy", "nll_loss", "mse_loss", "linear", "dropout", "embedding",
                                  "one_hot", "batch_norm", "layer_norm", "gelu", "sigmoid", "tanh",
                                  "adaptive_avg_pool2d", "binary_cross_entropy_with_logits"])
def test_common_functionals_are_exported(name):
    assert name in F.__all__


# --- layers built here ------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((3, 4), (3, 2), (5, 4, 2)), ((2, 3, 4), (2, 3, 2), (5, 4, 2))])
def test_bilinear(shapes):
    x1, x2, w = (make_input(s, seed=i) for i, s in enumerate(shapes))
    check_op(lambda lib, a, b, w, bias: lib.nn.functional.bilinear(a, b, w, bias),
             [x1, x2, w, make_input((5,), seed=9)])


def test_bilinear_shape_error():
    with pytest.raises(RuntimeError, match=r"Expect: input1 \(\*, 4\) and input2 \(\*, 2\).*Actual: \[3, 5\]"):
        F.bilinear(distnn.zeros(3, 5), distnn.zeros(3, 2), distnn.zeros(6, 4, 2))


@pytest.mark.parametrize("shape,kwargs", [
    ((2, 3, 4, 5), {"size": (6, 7)}),
    ((2, 3, 4, 5), {"scale_factor": 2}),
    ((1, 2, 5, 6), {"scale_factor": 0.6}),
    ((2, 3, 4, 5), {"size": (7, 3), "mode": "bilinear"}),
    ((2, 3, 4, 5), {"scale_factor": 1.5, "mode": "bilinear", "align_corners": True}),
    ((2, 3, 4, 5), {"scale_factor": (2, 3), "mode": "bilinear", "recompute_scale_factor": True}),
    ((2, 3, 6), {"size": 9, "mode": "linear"}),
    ((2, 3, 6), {"scale_factor": 2}),
])
def test_interpolate(shape, kwargs):
    check_op(lambda lib, x: lib.nn.functional.interpolate(x, **kwargs), [make_input(shape)])


def test_interpolate_errors():
    x = distnn.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="only one of size or scale_factor should be defined"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor should be defined"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set with the interpolating modes"):
        F.interpolate(x, size=3, align_corners=True)
    with pytest.raises(NotImplementedError, match="Actual: mode 'bicubic'"):
        F.interpolate(x, size=3, mode="bicubic")


@pytest.mark.parametrize("kwargs,kv_len", [({}, 5), ({"is_causal": True}, 4), ({"scale": 0.3}, 5)])
def test_scaled_dot_product_attention(kwargs, kv_len):
    q, k, v = make_input((2, 4, 3), seed=1), make_input((2, kv_len, 3), seed=2), make_input((2, kv_len, 2), seed=3)
    check_op(lambda lib, q, k, v: lib.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs), [q, k, v])


def test_scaled_dot_product_attention_masks():
    mask = make_input((4, 5), seed=4) > -0.5
    bias = make_input((4, 5), seed=5)
    q, k, v = make_input((2, 4, 3), seed=1), make_input((2, 5, 3), seed=2), make_input((2, 5, 2), seed=3)
    check_op(lambda lib, q, k, v, m: lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m),
             [q, k, v, mask], requires_grad=[True, True, True, False])
    check_op(lambda lib, q, k, v, m: lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m),
             [q, k, v, bias], requires_grad=[True, True, True, False])


@pytest.mark.parametrize("fn", [
    lambda lib, a, b: lib.nn.functional.cosine_similarity(a, b),
    lambda lib, a, b: lib.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-3),
    lambda lib, a, b: lib.nn.functional.pairwise_distance(a, b),
    lambda lib, a, b: lib.nn.functional.pairwise_distance(a, b, p=1.5, keepdim=True),
])
def test_distances(fn):
    check_op(fn, [make_input((4, 3, 5), seed=1), make_input((4, 3, 5), seed=2)])


# --- composed losses ------------------------------------------------------------------------

SIGN = np.where(make_input((4,), seed=7) > 0, 1.0, -1.0)
SIGN_2D = np.where(make_input((4, 5), seed=8) > 0, 1.0, -1.0)
BINARY = (make_input((4, 5), seed=9) > 0).astype(np.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,inputs,n_grad,kwargs", [
    ("soft_margin_loss", [make_input((4, 5)), SIGN_2D], 1, {}),
    ("margin_ranking_loss", [make_input((4,)), make_input((4,), seed=3), SIGN], 2, {"margin": 0.1}),
    ("hinge_embedding_loss", [make_input((4, 5)), SIGN_2D], 1, {"margin": 0.4}),
    ("cosine_embedding_loss", [make_input((4, 5)), make_input((4, 5), seed=3), SIGN], 2, {"margin": -0.2}),
    ("multilabel_soft_margin_loss", [make_input((4, 5)), BINARY], 1, {}),
    ("poisson_nll_loss", [make_input((4, 5)), make_input((4, 5), positive=True) * 2], 1, {}),
    ("poisson_nll_loss", [make_input((4, 5), positive=True), make_input((4, 5), positive=True) * 2], 1,
     {"log_input": False, "full": True}),
    ("gaussian_nll_loss", [make_input((4, 5)), make_input((4, 5), seed=3), make_input((4, 1), positive=True)], 1,
     {"full": True}),
    ("triplet_margin_loss", [make_input((4, 5)), make_input((4, 5), seed=3), make_input((4, 5), seed=4)], 3,
     {"swap": True}),
])
def test_composed_losses(name, inputs, n_grad, kwargs, reduction):
    grads = [True] * n_grad + [False] * (len(inputs) - n_grad)
    if name == "gaussian_nll_loss":
        grads[2] = True  # var gets a gradient
    check_op(lambda lib, *xs: getattr(lib.nn.functional, name)(*xs, reduction=reduction, **kwargs), inputs,
             requires_grad=grads)


def test_composed_loss_legacy_arguments():
    x, y = distnn.randn(3, 4), distnn.randn(3, 4).sign()
    with pytest.warns(UserWarning, match="reduction='sum'"):
        total = F.soft_margin_loss(x, y, size_average=False)
    np.testing.assert_allclose(total.item(), F.soft_margin_loss(x, y, reduction="sum").item(), rtol=1e-6)


def test_gaussian_nll_var_errors():
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(distnn.zeros(4, 5), distnn.zeros(4, 5), distnn.ones(3))
    with pytest.raises(ValueError, match="var has negative entry"):
        F.gaussian_nll_loss(distnn.zeros(4, 5), distnn.zeros(4, 5), -distnn.ones(4, 5))


# --- in-place aliases ------------------------------------------------------------------------

@pytest.mark.parametrize("name,args", [("relu_", ()), ("elu_", (0.5,)), ("leaky_relu_", (0.2,)),
                                       ("hardtanh_", (-0.5, 0.5)), ("threshold_", (0.1, -1.0)),
                                       ("celu_", (2.0,)), ("selu_", ())])
def test_inplace_aliases(name, args):
    x = distnn.randn(5, 4)
    expected = getattr(F, name.rstrip("_"))(x, *args)
    out = getattr(F, name)(x, *args)
    assert out is x
    np.testing.assert_array_equal(x.numpy(), expected.numpy())
