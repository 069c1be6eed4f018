"""``tril``, ``triu`` and ``diag``: gradchecked (second order too) and compared with
PyTorch across diagonals and batch dims (diag: vectors and matrices, square or not), as
functions and Tensor methods; dtypes kept; node names; PyTorch's errors."""

import numpy as np
import pytest

import distnn
from op_check import check_op, compare_derivatives_with_torch, make_input, requires_torch, torch


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


@pytest.mark.parametrize("shape,diagonal", [((3,), 0), ((3,), 2), ((4,), -1), ((1,), -3), ((0,), 1)])
def test_diag_of_vector_matches_torch(shape, diagonal):
    check_op(lambda lib, x: lib.diag(x, diagonal), [make_input(shape)])


@pytest.mark.parametrize("shape,diagonal", [((4, 4), 0), ((3, 5), 1), ((3, 5), 3), ((5, 3), -2), ((3, 4), 5),
                                            ((3, 4), -4), ((2, 6), -1)])
def test_diag_of_matrix_matches_torch(shape, diagonal):
    check_op(lambda lib, x: x.diag(diagonal) ** 2, [make_input(shape)])


@requires_torch
@pytest.mark.parametrize("dtype", ["bool", "int64", "uint8", "float64"])
@pytest.mark.parametrize("shape", [(3,), (3, 4)])
def test_diag_keeps_dtype(dtype, shape):
    data = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(dtype)
    for k in (0, 1, -1):
        ours, theirs = distnn.diag(distnn.from_numpy(data), k), torch.diag(torch.from_numpy(data), k)
        assert str(ours.dtype) == str(theirs.dtype)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("shape,diagonal", [((3,), 1), ((3, 4), -1)])
def test_diag_higher_derivatives_match_torch(shape, diagonal):
    compare_derivatives_with_torch(lambda lib, x: lib.diag(x, diagonal) ** 3, [make_input(shape, seed=4)], order=3)


def test_diag_node_names():
    assert distnn.diag(distnn.ones(3, requires_grad=True)).grad_fn.name() == "DiagEmbedBackward0"
    assert distnn.ones(3, 3, requires_grad=True).diag(1).grad_fn.name() == "DiagonalBackward0_copy"


def test_diag_of_matrix_is_a_copy():
    x = distnn.ones(2, 2)
    d = distnn.diag(x)
    d.add_(1)
    assert x.tolist() == [[1.0, 1.0], [1.0, 1.0]] and x._version == 0


@pytest.mark.parametrize("make,error,message", [
    (lambda lib: lib.diag(lib.ones(2, 3, 4)), RuntimeError, "diag(): Supports 1D or 2D tensors. Got 3D"),
    (lambda lib: lib.diag(lib.tensor(1.0)), RuntimeError, "diag(): Supports 1D or 2D tensors. Got 0D"),
    (lambda lib: lib.diag(lib.ones(3), 1.5), TypeError, "diag(): argument 'diagonal' (position 2) must be int, "
                                                        "not float"),
])
def test_diag_errors_as_torch(make, error, message):
    for lib in (distnn, torch) if torch is not None else (distnn,):
        with pytest.raises(error) as raised:
            make(lib)
        assert str(raised.value) == message
