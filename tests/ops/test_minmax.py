"""Max and min reductions: gradcheck and torch comparison for max/min along a dim and in
full, amax/amin over dims x keepdim, tied maxima, named-tuple results, argmax/argmin."""

import numpy as np
import pytest

import distnn
from op_check import check_op, compare_with_torch, make_input, requires_torch


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("shape,dim", [((3, 4), 0), ((3, 4), -1), ((2, 3, 4), 1), ((5,), 0)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_dim(name, shape, dim, keepdim):
    check_op(lambda lib, x: tuple(getattr(lib, name)(x, dim, keepdim)), [make_input(shape)])


@pytest.mark.parametrize("name", ["max", "min", "amax", "amin"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)])
def test_full_reduction(name, shape):
    check_op(lambda lib, x: getattr(lib, name)(x), [make_input(shape)])


@pytest.mark.parametrize("name", ["amax", "amin"])
@pytest.mark.parametrize("dim", [0, -1, (0, 2), (-1, 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_amax_amin(name, dim, keepdim):
    check_op(lambda lib, x: getattr(lib, name)(x, dim, keepdim), [make_input((2, 3, 4))])


TIES = np.array([[3.0, -2.0, 3.0, -2.0], [-2.0, 3.0, 0.0, -2.0], [3.0, 1.0, 3.0, -2.0]])  # ties everywhere


@requires_torch
@pytest.mark.parametrize("expr", [lambda lib, x: x.amax(1), lambda lib, x: x.amin(0), lambda lib, x: x.max(),
                                  lambda lib, x: x.min(), lambda lib, x: x.amax((0, 1)),
                                  lambda lib, x: x.max(1).values, lambda lib, x: x.min(1, True).values,
                                  lambda lib, x: x.norm(float("inf"), 1)])
def test_ties_split_gradient_like_torch(expr):
    compare_with_torch(expr, [TIES], layouts=("contiguous",))


def test_amax_tie_gradient_is_split_evenly():
    x = distnn.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    x.amax(1).sum().backward()
    assert x.grad.tolist() == [[0.0, 0.5, 0.5]]


def test_max_returns_named_tuple():
    x = distnn.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], requires_grad=True)
    out = x.max(1)
    values, indices = out
    assert out.values is values and out.indices is indices
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype == distnn.int64 and not indices.requires_grad
    assert values.grad_fn.name() == "MaxBackward0" and x.max().grad_fn.name() == "MaxBackward1"
    assert repr(out).startswith("torch.return_types.max(\nvalues=tensor([5., 7.]")
    assert repr(x.min(0)).startswith("torch.return_types.min(")


def test_max_of_two_tensors_is_maximum():
    a = make_input((3, 4), seed=1)
    b = make_input((4,), seed=2)
    check_op(lambda lib, x, y: lib.max(x, y), [a, b])
    check_op(lambda lib, x, y: x.min(y), [a, b])


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (None, True), (0, False), (-1, True), (1, False)])
def test_argmax_argmin(name, dim, keepdim):
    compare_with_torch(lambda lib, x: getattr(lib, name)(x, dim, keepdim), [make_input((3, 4))],
                       check_grad=False)
    out = getattr(distnn, name)(distnn.tensor([[1.0, 2.0]], requires_grad=True), dim, keepdim)
    assert out.dtype == distnn.int64 and not out.requires_grad


def test_max_of_empty_tensor_raises():
    with pytest.raises(RuntimeError, match="numel\\(\\) == 0"):
        distnn.ones(0).max()
    with pytest.raises(IndexError, match="Expected reduction dim 1 to have non-zero size"):
        distnn.ones(2, 0).max(1)
