"""Reductions: gradcheck and torch comparison over dims (None, int, negative,
tuple) x keepdim, prod's second derivatives with zeros, integer dtypes, and bad
input; max/min are in test_minmax.py, cumsum/cumprod in test_scan.py."""

import math
import warnings

import numpy as np
import pytest

import distnn
from op_check import check_op, compare_derivatives_with_torch, compare_with_torch, make_input, requires_torch, torch

DIMS = [((3, 4), None), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), (0, 2)), ((2, 3, 4), (-1, -3)),
        ((2, 3, 4), 1), ((2, 3, 4), ()), ((5,), 0), ((), None), ((), 0)]


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize("shape,dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean(name, shape, dim, keepdim):
    if dim is None:
        check_op(lambda lib, x: getattr(lib, name)(x), [make_input(shape)])
    else:
        check_op(lambda lib, x: getattr(x, name)(dim, keepdim=keepdim), [make_input(shape)])


@pytest.mark.parametrize("shape,dim", [((3, 4), None), ((3, 4), 1), ((2, 3, 4), -2), ((5,), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("with_zero", [False, True])
def test_prod(shape, dim, keepdim, with_zero):
    x = make_input(shape, positive=True)
    if with_zero:
        x.reshape(-1)[1] = 0.0  # zeros must not break the gradient (no division by x)
    if dim is None:
        check_op(lambda lib, t: t.prod(), [x])
    else:
        check_op(lambda lib, t: lib.prod(t, dim, keepdim=keepdim), [x])


def test_prod_with_two_zeros_matches_torch():
    x = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    compare_with_torch(lambda lib, t: t.prod(), [x])
    compare_with_torch(lambda lib, t: t.prod(1), [x])


# flat positions of exact zeros: along dim 1 of a (3, 4) input "1, 2" are adjacent,
# along dim 0 "1, 5" are; "0, 3, 5" puts a zero first and last in a row
PROD_ZEROS = {"none": (), "one": (1,), "adjacent_in_row": (1, 2), "adjacent_in_column": (1, 5), "three": (0, 3, 5)}


@requires_torch
@pytest.mark.parametrize("shape,dim,keepdim", [((3, 4), None, False), ((3, 4), 1, False), ((3, 4), -2, True),
                                               ((2, 3, 4), 1, True), ((2, 3, 4), -1, False), ((6,), 0, False)])
@pytest.mark.parametrize("zeros", list(PROD_ZEROS.values()), ids=list(PROD_ZEROS))
def test_prod_second_derivative_matches_torch(shape, dim, keepdim, zeros):
    """Double backward through prod (recorded cumprods of the other elements), exact at zeros."""
    x = make_input(shape, zeros=zeros)
    if dim is None:
        compare_derivatives_with_torch(lambda lib, t: lib.prod(t), [x])
    else:
        compare_derivatives_with_torch(lambda lib, t: t.prod(dim, keepdim=keepdim), [x])


@pytest.mark.parametrize("name", ["var", "std"])
@pytest.mark.parametrize("shape,dim", [((3, 4), None), ((3, 4), 0), ((2, 3, 4), (0, -1)), ((6,), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("correction", [0, 1, 2])
def test_var_std(name, shape, dim, keepdim, correction):
    check_op(lambda lib, x: getattr(lib, name)(x, dim, keepdim=keepdim, correction=correction),
             [make_input(shape)])


@requires_torch
@pytest.mark.parametrize("expr", [lambda lib, x: x.var(False), lambda lib, x: x.std(1, False),
                                  lambda lib, x: lib.var(x, 0, True, True), lambda lib, x: x.std(unbiased=False)])
def test_var_std_legacy_unbiased_overloads(expr):
    compare_with_torch(expr, [make_input((3, 4))])


@pytest.mark.parametrize("p", [2, "fro", 1, 3, 0.5, math.inf, -math.inf])
@pytest.mark.parametrize("dim", [None, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_norm(p, dim, keepdim):
    if p == "fro" and dim is not None and not isinstance(dim, tuple):
        dim = (dim,)
    x = make_input((3, 4), positive=(p == 0.5))
    if dim is None and not keepdim:
        check_op(lambda lib, t: t.norm(p), [x])
    else:
        check_op(lambda lib, t: lib.norm(t, p, dim, keepdim), [x])


def test_norm_of_zero_vector_has_zero_gradient():
    x = distnn.zeros(3, requires_grad=True)
    x.norm().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("shape,dim", [((3, 4), 1), ((3, 4), -2), ((2, 3, 4), (0, 2)), ((5,), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(shape, dim, keepdim):
    check_op(lambda lib, x: lib.logsumexp(x, dim, keepdim), [make_input(shape, low=-3, high=3)])


def test_logsumexp_is_stable_for_large_and_infinite_values():
    x = distnn.tensor([[1000.0, 1000.0], [-math.inf, -math.inf], [-1000.0, 0.0]], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all -inf row makes no numpy warning, as in PyTorch
        out = x.logsumexp(1)
        out.sum().backward(retain_graph=True)
    np.testing.assert_allclose(out.tolist()[0], 1000.0 + math.log(2), rtol=1e-6)
    assert out.tolist()[1] == -math.inf
    assert out.dtype == distnn.float32
    x.grad = None
    out[0].backward()
    np.testing.assert_allclose(x.grad.numpy()[0], [0.5, 0.5], rtol=1e-4)


@requires_torch
@pytest.mark.parametrize("expr", [lambda lib, x: x.all(), lambda lib, x: x.any(), lambda lib, x: x.all(1),
                                  lambda lib, x: x.any(0, keepdim=True), lambda lib, x: lib.count_nonzero(x),
                                  lambda lib, x: lib.count_nonzero(x, 1), lambda lib, x: x.count_nonzero((0, 1)),
                                  lambda lib, x: x.sum(), lambda lib, x: x.sum(0), lambda lib, x: x.prod(1),
                                  lambda lib, x: x.cumsum(1), lambda lib, x: x.amax(1)])
@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int32, np.uint8])
def test_integer_and_bool_inputs_match_torch_dtypes(expr, dtype):
    x = (make_input((3, 4)) * 3).astype(dtype)
    compare_with_torch(expr, [x], check_grad=False)


def test_sum_dtype_argument_and_int_sum():
    assert distnn.tensor([1, 2, 3], dtype=distnn.int32).sum().dtype == distnn.int64
    assert distnn.tensor([True, True]).sum().item() == 2
    x = distnn.ones(2, 3)
    assert x.sum(dtype=distnn.float64).dtype == distnn.float64
    assert x.sum().dtype == distnn.float32 and x.mean(0).dtype == distnn.float32


def test_reductions_keep_float32():
    x = distnn.randn(3, 4, requires_grad=True)
    for out in (x.sum(), x.mean(1), x.var(), x.std(0), x.norm(), x.logsumexp(1), x.prod(), x.amax(0)):
        assert out.dtype == distnn.float32
        out.sum().backward()
        assert x.grad.dtype == distnn.float32
        x.grad = None


def test_reduction_results_are_arrays_not_scalars():
    out = distnn.ones(3).sum()
    assert out.shape == distnn.Size([]) and out._data.shape == ()
    out.add_(1)  # a numpy scalar would not support in-place ops
    assert out.item() == 4.0


def test_mean_of_integer_tensor_raises():
    with pytest.raises(RuntimeError, match="mean\\(\\): could not infer output dtype.*Got: Long"):
        distnn.tensor([1, 2]).mean()


@pytest.mark.parametrize("call", [lambda x: x.sum(2), lambda x: x.mean(-3), lambda x: x.max(5),
                                  lambda x: x.amax((0, 3)), lambda x: x.cumsum(2), lambda x: x.var(2)])
def test_dim_out_of_range(call):
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\]"):
        call(distnn.ones(2, 3))


REPEATED_DIMS = [
    (lambda x: x.sum((1, -2)), "dim 1 appears multiple times in the list of dims"),
    (lambda x: x.amax((0, 1, 1)), "dim 1 appears multiple times in the list of dims"),
    (lambda x: x[0, 0].mean((0, -1)), "dim 0 appears multiple times in the list of dims"),
]


@pytest.mark.parametrize("call,message", REPEATED_DIMS)
def test_repeated_dim(call, message):
    """PyTorch names the first dim that repeats, after wrapping negative dims."""
    with pytest.raises(RuntimeError, match=message):
        call(distnn.ones(2, 3, 4))


@requires_torch
@pytest.mark.parametrize("call,message", REPEATED_DIMS)
def test_repeated_dim_matches_torch(call, message):
    with pytest.raises(RuntimeError, match=message):
        call(torch.ones(2, 3, 4))


def test_logsumexp_requires_dim():
    with pytest.raises(TypeError):
        distnn.logsumexp(distnn.ones(2))


def test_var_rejects_integer_input():
    with pytest.raises(RuntimeError, match="Got Long"):
        distnn.tensor([1, 2, 3]).var()
