"""``tril`` and ``triu``: gradchecked (second order too) and compared with PyTorch across
diagonals and batch dims, as functions and Tensor methods; dtypes kept; PyTorch's errors."""

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input, requires_torch, torch


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("shape,diagonal", [
    ((4, 4), 0),
    ((3, 5), 1),
    ((5, 3), -1),
    ((2, 3, 4), 2),
    ((2, 1, 3, 3), -2),
    ((3, 4), 7),
    ((3, 4), -7),
])
def test_matches_torch(name, shape, diagonal):
    check_op(lambda lib, x: getattr(lib, name)(x, diagonal) * x, [make_input(shape)])


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_method_and_keyword(name):
    check_op(lambda lib, x: getattr(x, name)(diagonal=1), [make_input((3, 4))], gradcheck=False)
    check_op(lambda lib, x: getattr(lib, name)(x, diagonal=-1), [make_input((3, 4))], gradcheck=False)


@requires_torch
@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("dtype", ["bool", "int64", "float64"])
def test_keeps_dtype(name, dtype):
    data = np.arange(1, 13).reshape(3, 4).astype(dtype)
    ours = getattr(distnn, name)(distnn.from_numpy(data), 1)
    theirs = getattr(torch, name)(torch.from_numpy(data), 1)
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_node_names():
    x = distnn.randn(3, 3, requires_grad=True)
    assert type(distnn.tril(x).grad_fn).__name__ == "TrilBackward0"
    assert type(distnn.triu(x, 1).grad_fn).__name__ == "TriuBackward0"


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_needs_a_matrix(name):
    with pytest.raises(RuntimeError, match=f"^{name}: input tensor must have at least 2 dimensions$"):
        getattr(distnn, name)(distnn.ones(3))


def test_causal_mask_idiom():
    """What language models write: a -inf upper triangle over zeros."""
    mask = distnn.triu(distnn.full((3, 3), float("-inf")), diagonal=1)
    expected = np.triu(np.full((3, 3), -np.inf, dtype=np.float32), 1)
    np.testing.assert_array_equal(mask.numpy(), expected)
    assert mask.dtype == distnn.float32
