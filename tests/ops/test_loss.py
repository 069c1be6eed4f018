"""Losses: gradcheck and torch comparison for every reduction, weights, ignore_index,
label smoothing, probability targets, unbatched / 2-D / spatial inputs; node names,
legacy arguments and bad-input errors."""

import warnings

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input, requires_torch, torch

REDUCTIONS = ["mean", "sum", "none"]


def F(lib):
    """The functional namespace: ``torch.nn.functional`` or ``distnn.ops``."""
    return distnn.ops if lib is distnn else lib.nn.functional


def class_targets(shape, n_classes, seed=0, ignore=None):
    """int64 class indices; with ``ignore``, a few entries set to that index."""
    t = np.random.default_rng(seed).integers(0, n_classes, size=shape).astype(np.int64)
    if ignore is not None and t.size > 1:
        t.reshape(-1)[::3] = ignore
    return t


def probabilities(shape, axis, seed=0):
    e = np.exp(make_input(shape, seed=seed) * 2)
    return e / e.sum(axis=axis, keepdims=True)


# --- regression losses --------------------------------------------------------------

POINTWISE = [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}), ("smooth_l1_loss", {"beta": 0.3}),
             ("smooth_l1_loss", {"beta": 0.0}), ("huber_loss", {}), ("huber_loss", {"delta": 0.4})]


@pytest.mark.parametrize("name,kw", POINTWISE)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_pointwise_losses(name, kw, reduction, shape):
    check_op(lambda lib, x, y: getattr(F(lib), name)(x, y, reduction=reduction, **kw),
             [make_input(shape, seed=1), make_input(shape, seed=2)])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pointwise_losses_weighted(name, reduction):
    check_op(lambda lib, x, y, w: getattr(F(lib), name)(x, y, reduction=reduction, weight=w),
             [make_input((3, 4), seed=1), make_input((3, 4), seed=2), make_input((3, 4), positive=True)])


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_pointwise_broadcast_target_warns_like_torch(name):
    x, y = make_input((3, 4), seed=1), make_input((4,), seed=2)
    with pytest.warns(UserWarning, match=r"target size \(torch.Size\(\[4\]\)\) that is different to the "
                                         r"input size \(torch.Size\(\[3, 4\]\)\)"):
        check_op(lambda lib, a, b: getattr(F(lib), name)(a, b), [x, y])


def test_pointwise_unbroadcastable_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"\[3, 4\].*\[5\]"), pytest.warns(UserWarning):
        distnn.ops.mse_loss(distnn.zeros(3, 4), distnn.zeros(5))


def test_mse_promotes_like_torch():
    out = distnn.ops.mse_loss(distnn.ones(3, dtype=distnn.float32), distnn.zeros(3, dtype=distnn.float64))
    assert out.dtype == distnn.float64 and out.item() == 1.0


def test_mse_gradient_reaches_target():
    x, y = distnn.tensor([1.0, 2.0]), distnn.tensor([0.0, 0.0], requires_grad=True)
    distnn.ops.mse_loss(x, y).backward()
    assert y.grad.tolist() == [-1.0, -2.0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_requires_grad", [False, True])
def test_mse_same_shape_shortcut_matches_the_general_path(reduction, target_requires_grad):
    from distnn.ops.loss import MseLoss, _pointwise
    results = []
    for loss in (distnn.ops.mse_loss, lambda x, y, reduction: _pointwise(MseLoss, x, y, reduction)):
        x = distnn.tensor(make_input((3, 4), seed=1), requires_grad=True)
        y = distnn.tensor(make_input((3, 4), seed=2), requires_grad=target_requires_grad)
        out = loss(x, y, reduction=reduction)
        assert out.grad_fn.name() == "MseLossBackward0"
        out.sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy(), None if y.grad is None else y.grad.numpy()))
    for ours, general in zip(*results):
        np.testing.assert_array_equal(ours, general)


def test_smooth_l1_and_huber_parameter_errors():
    x = distnn.zeros(2)
    with pytest.raises(RuntimeError, match="negative values for beta"):
        distnn.ops.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(RuntimeError, match="non-positive values for delta"):
        distnn.ops.huber_loss(x, x, delta=0.0)
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        distnn.ops.mse_loss(x, x, weight=distnn.ones(3))


# Integer and bool operands: torch's kernels refuse them (mse, smooth_l1, huber), l1_loss
# is (input - target).abs() then a reduction, and huber writes into the input's dtype.
REGRESSION_LOSSES = [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}), ("smooth_l1_loss", {"beta": 0.0}),
                     ("huber_loss", {})]
DTYPE_PAIRS = [("int64", "int64"), ("int32", "int32"), ("uint8", "int8"), ("int32", "int64"), ("bool", "bool"),
               ("int64", "bool"), ("bool", "int64"), ("float32", "int64"), ("int64", "float32"),
               ("float32", "bool"), ("bool", "float32"), ("float16", "int64"), ("float16", "float32"),
               ("float32", "float64"), ("int32", "float64")]


def loss_outcome(lib, name, kw, input_dtype, target_dtype, reduction):
    """(dtype name, values) of the loss, or (exception type, message) when it raises."""
    x = lib.tensor([1, 0, 3], dtype=getattr(lib, input_dtype))
    y = lib.tensor([1, 1, 0], dtype=getattr(lib, target_dtype))
    try:
        out = getattr(F(lib), name)(x, y, reduction=reduction, **kw)
    except RuntimeError as exc:
        return type(exc).__name__, str(exc)
    return str(out.dtype).rsplit(".", 1)[-1], out.tolist()


@requires_torch
@pytest.mark.parametrize("name,kw", REGRESSION_LOSSES)
@pytest.mark.parametrize("input_dtype,target_dtype", DTYPE_PAIRS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_on_integer_and_mixed_dtypes_match_torch(name, kw, input_dtype, target_dtype, reduction):
    args = (name, kw, input_dtype, target_dtype, reduction)
    assert loss_outcome(distnn, *args) == loss_outcome(torch, *args)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, y: distnn.ops.mse_loss(x, y), NotImplementedError, "\"mse_cpu\" not implemented for 'Long'"),
    (lambda x, y: distnn.nn.MSELoss()(x.int(), y.int()), NotImplementedError,
     "\"mse_cpu\" not implemented for 'Int'"),
    (lambda x, y: distnn.ops.mse_loss(x.bool(), y.bool()), NotImplementedError,
     "\"mse_cpu\" not implemented for 'Bool'"),
    (lambda x, y: distnn.ops.smooth_l1_loss(x, y), NotImplementedError,
     "\"smooth_l1_cpu\" not implemented for 'Long'"),
    (lambda x, y: distnn.ops.huber_loss(x, y), NotImplementedError, "\"huber_cpu\" not implemented for 'Long'"),
    (lambda x, y: distnn.ops.huber_loss(x, y.float()), RuntimeError,
     "result type Float can't be cast to the desired output type Long"),
    (lambda x, y: distnn.ops.l1_loss(x, y), RuntimeError, "mean(): could not infer output dtype. Input dtype must "
                                                          "be either a floating point or complex dtype. Got: Long"),
    (lambda x, y: distnn.ops.l1_loss(x.float(), y.bool()), RuntimeError,
     "Subtraction, the `-` operator, with a bool tensor is not supported."),
])
def test_integer_regression_losses_raise_like_torch(call, error, message):
    """The same checks without the oracle: torch 2.13's exception types and messages."""
    with pytest.raises(error) as info:
        call(distnn.tensor([1, 2]), distnn.tensor([1, 4]))
    assert str(info.value).startswith(message) and isinstance(info.value, RuntimeError)


def test_integer_regression_losses_torch_accepts():
    x, y = distnn.tensor([1, 2]), distnn.tensor([1, 4])
    mixed = distnn.ops.mse_loss(x.float(), y)
    assert mixed.dtype == distnn.float32 and mixed.item() == 2.0
    assert distnn.ops.mse_loss(x, y.double()).dtype == distnn.float64
    assert distnn.ops.l1_loss(x.int(), y.int(), reduction="none").dtype == distnn.int32
    total = distnn.ops.l1_loss(x.to(distnn.uint8), y.to(distnn.uint8), reduction="sum")
    assert total.dtype == distnn.int64 and total.item() == 254  # uint8 wraps in the subtraction, as in torch
    half = distnn.ops.huber_loss(x.half(), y.float(), reduction="none")
    assert half.dtype == distnn.float16 and half.tolist() == [0.0, 1.5]
    # the cast to the input's dtype is differentiable (torch 2.13's own backward fails here,
    # "Found dtype Double but expected Float")
    w = distnn.tensor([1.0, 2.0], requires_grad=True)
    distnn.ops.huber_loss(w, distnn.tensor([1.0, 4.0], dtype=distnn.float64)).backward()
    assert w.grad.dtype == distnn.float32 and w.grad.tolist() == [0.0, -0.5]


# --- binary cross-entropy and KL ------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(reduction, weighted):
    arrays = [make_input((3, 4), low=0.05, high=0.95), make_input((3, 4), low=0.0, high=1.0, seed=2)]
    if weighted:
        arrays.append(make_input((4,), positive=True, seed=3))
    check_op(lambda lib, x, t, *w: F(lib).binary_cross_entropy(x, t, *w, reduction=reduction), arrays,
             requires_grad=[True, True, False])


def test_binary_cross_entropy_clamps_log_like_torch():
    check_op(lambda lib, x, t: F(lib).binary_cross_entropy(x, t, reduction="none"),
             [np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])], gradcheck=False, check_grad=False)


def test_binary_cross_entropy_rejects_out_of_range_input():
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        distnn.ops.binary_cross_entropy(distnn.tensor([0.5, 1.5]), distnn.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target size \(torch.Size\(\[3\]\)\).*input size \(torch.Size\(\[2\]\)\)"):
        distnn.ops.binary_cross_entropy(distnn.tensor([0.5, 0.5]), distnn.zeros(3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,pos_weighted", [(False, False), (True, False), (False, True), (True, True)])
def test_binary_cross_entropy_with_logits(reduction, weighted, pos_weighted):
    w = make_input((3, 4), positive=True, seed=3) if weighted else None
    pw = make_input((4,), positive=True, seed=4) if pos_weighted else None
    check_op(lambda lib, x, t, w, pw: F(lib).binary_cross_entropy_with_logits(x, t, w, reduction=reduction,
                                                                              pos_weight=pw),
             [make_input((3, 4), low=-4, high=4), make_input((3, 4), low=0, high=1, seed=2), w, pw],
             requires_grad=[True, True, False, False])


def test_binary_cross_entropy_with_logits_is_stable_for_large_logits():
    x = distnn.tensor([-200.0, 200.0, 80.0])
    out = distnn.ops.binary_cross_entropy_with_logits(x, distnn.tensor([1.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(out.numpy(), [200.0, 200.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("fn,arg", [("binary_cross_entropy", "weight"),
                                    ("binary_cross_entropy_with_logits", "pos_weight"),
                                    ("nll_loss", "weight")])
def test_non_differentiable_weights_refuse_requires_grad(fn, arg):
    x = distnn.tensor([[0.2, 0.7]], requires_grad=True)
    t = distnn.tensor([1]) if fn == "nll_loss" else distnn.tensor([[0.0, 1.0]])
    with pytest.raises(RuntimeError, match=f"not differentiable with respect to argument '{arg}'"):
        getattr(distnn.ops, fn)(x, t, **{arg: distnn.ones(2, requires_grad=True)})


@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    target = make_input((3, 4), seed=2) if log_target else make_input((3, 4), low=0.05, high=1.0, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'mean' warns, as in torch
        check_op(lambda lib, x, t: F(lib).kl_div(x, t, reduction=reduction, log_target=log_target),
                 [make_input((3, 4)), target])


def test_kl_div_mean_warns_like_torch():
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        distnn.ops.kl_div(distnn.zeros(2, 2), distnn.ones(2, 2))


# --- nll_loss and cross_entropy with class indices ------------------------------------

# (input shape, target shape): unbatched, (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W)
CLASS_SHAPES = [((5,), ()), ((4, 5), (4,)), ((2, 3, 4), (2, 4)), ((2, 3, 2, 2), (2, 2, 2)),
                ((2, 3, 2, 1, 2), (2, 2, 1, 2))]


def class_index_case(shapes, ignore_index, weighted):
    in_shape, t_shape = shapes
    n_classes = in_shape[0 if len(in_shape) == 1 else 1]
    target = class_targets(t_shape, n_classes, ignore=ignore_index if ignore_index != -100 else None)
    weight = make_input((n_classes,), positive=True, seed=5) if weighted else None
    return [make_input(in_shape, low=-2, high=2), target, weight]


@pytest.mark.parametrize("shapes", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,ignore_index", [(False, -100), (True, -100), (False, 1), (True, 2)])
def test_nll_loss(shapes, reduction, weighted, ignore_index):
    # torch's nll_loss2d backward refuses non-contiguous inputs ("grad_input must be contiguous")
    check_op(lambda lib, x, t, w: F(lib).nll_loss(x.contiguous() if lib is torch else x, t, w,
                                                  ignore_index=ignore_index, reduction=reduction),
             class_index_case(shapes, ignore_index, weighted), requires_grad=[True, False, False])


@pytest.mark.parametrize("shapes", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,ignore_index", [(False, -100), (True, -100), (False, 1), (True, 2)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_class_indices(shapes, reduction, weighted, ignore_index, label_smoothing):
    check_op(lambda lib, x, t, w: F(lib).cross_entropy(x, t, w, ignore_index=ignore_index, reduction=reduction,
                                                       label_smoothing=label_smoothing),
             class_index_case(shapes, ignore_index, weighted), requires_grad=[True, False, False])


@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 2, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets(shape, reduction, weighted, label_smoothing):
    n_classes = shape[0 if len(shape) == 1 else 1]
    weight = make_input((n_classes,), positive=True, seed=5) if weighted else None
    check_op(lambda lib, x, t, w: F(lib).cross_entropy(x, t, w, reduction=reduction,
                                                       label_smoothing=label_smoothing),
             [make_input(shape, low=-2, high=2), probabilities(shape, 0 if len(shape) == 1 else 1), weight],
             requires_grad=[True, True, weighted])


def test_cross_entropy_int32_targets_match_int64():
    x = distnn.tensor([[0.1, 0.9, -0.3], [1.0, 0.0, 0.5]])
    a = distnn.ops.cross_entropy(x, distnn.tensor([1, 2], dtype=distnn.int32))
    b = distnn.ops.cross_entropy(x, distnn.tensor([1, 2]))
    assert a.item() == b.item()


def test_cross_entropy_is_stable_for_large_logits():
    x = distnn.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = distnn.ops.cross_entropy(x, distnn.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(1000.0)
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0, 0.0]], atol=1e-6)


def test_nll_loss_all_ignored_mean_is_nan_like_torch():
    out = distnn.ops.nll_loss(distnn.zeros(2, 3), distnn.tensor([-100, -100]))
    assert np.isnan(out.item())


@requires_torch
@pytest.mark.parametrize("case", [
    lambda lib, x, t, p: F(lib).cross_entropy(x, t),
    lambda lib, x, t, p: F(lib).cross_entropy(x, t, label_smoothing=0.1),
    lambda lib, x, t, p: F(lib).cross_entropy(x, p),
    lambda lib, x, t, p: F(lib).cross_entropy(x, p, reduction="sum"),
    lambda lib, x, t, p: F(lib).nll_loss(x, t, reduction="none"),
    lambda lib, x, t, p: F(lib).nll_loss(x.reshape(2, 3, 2, 1), t.reshape(2, 2, 1)),
    lambda lib, x, t, p: F(lib).mse_loss(x, p),
    lambda lib, x, t, p: F(lib).l1_loss(x, p),
    lambda lib, x, t, p: F(lib).l1_loss(x, p, reduction="none"),
    lambda lib, x, t, p: F(lib).smooth_l1_loss(x, p),
    lambda lib, x, t, p: F(lib).huber_loss(x, p),
    lambda lib, x, t, p: F(lib).binary_cross_entropy(lib.sigmoid(x), p),
    lambda lib, x, t, p: F(lib).binary_cross_entropy_with_logits(x, p),
    lambda lib, x, t, p: F(lib).kl_div(x, p, reduction="batchmean"),
    lambda lib, x, t, p: F(lib).kl_div(x, p, reduction="none", log_target=True),
])
def test_grad_fn_names_match_torch(case):
    x, p = make_input((4, 3)), probabilities((4, 3), 1)
    t = class_targets((4,), 3)
    names = []
    for lib in (distnn, torch):
        xs = lib.tensor(x.astype(np.float32), requires_grad=True)
        names.append(case(lib, xs, lib.tensor(t), lib.tensor(p.astype(np.float32))).grad_fn.name())
    assert names[0] == names[1]


# --- reduction arguments and bad input ---------------------------------------------------

@requires_torch
@pytest.mark.parametrize("size_average,reduce", [(False, None), (None, False), (True, True), (False, True)])
def test_legacy_size_average_and_reduce(size_average, reduce):
    x, t = make_input((4, 5)).astype(np.float32), class_targets((4,), 5)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = distnn.ops.cross_entropy(distnn.tensor(x), distnn.tensor(t), size_average=size_average,
                                        reduce=reduce)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), size_average=size_average,
                                                   reduce=reduce)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_invalid_reduction():
    with pytest.raises(ValueError, match="foo is not a valid value for reduction"):
        distnn.ops.mse_loss(distnn.zeros(2), distnn.zeros(2), reduction="foo")


@pytest.mark.parametrize("target,error,match", [
    (distnn.tensor([1, 2, 12]), IndexError, "Target 12 is out of bounds."),
    (distnn.tensor([1, -3, 0]), IndexError, "Target -3 is out of bounds."),
    (distnn.tensor([1, 2]), ValueError, r"Expected input batch_size \(3\) to match target batch_size \(2\)"),
    (distnn.zeros(3, 5, dtype=distnn.float16), RuntimeError,
     r"Expected target of dtype int64 \(class indices\) or float \(class probabilities\), got torch.float16"),
    (distnn.zeros(3), RuntimeError, r"input's shape \[3, 5\], got \[3\]"),
    (distnn.zeros(3, 4), RuntimeError, r"input's shape \[3, 5\], got \[3, 4\]"),
])
def test_cross_entropy_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        distnn.ops.cross_entropy(distnn.zeros(3, 5), target)


def test_nll_loss_shape_and_weight_errors():
    with pytest.raises(RuntimeError, match=r"Expected target size \[2, 4\], got \[2, 5\]"):
        distnn.ops.nll_loss(distnn.zeros(2, 3, 4), distnn.zeros(2, 5, dtype=distnn.int64))
    with pytest.raises(RuntimeError, match="all 5 classes or no classes but got weight tensor of shape: \\[4\\]"):
        distnn.ops.nll_loss(distnn.zeros(3, 5), distnn.tensor([0, 1, 2]), weight=distnn.ones(4))
    with pytest.raises(RuntimeError, match="got torch.float32"):
        distnn.ops.nll_loss(distnn.zeros(3, 5), distnn.zeros(3))
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0. Got: 1.5"):
        distnn.ops.cross_entropy(distnn.zeros(3, 5), distnn.tensor([0, 1, 2]), label_smoothing=1.5)
