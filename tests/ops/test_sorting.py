"""sort, argsort and topk: values gradchecked and compared with PyTorch with their
indices across dims, directions and ``stable``; ties and NaN ordered as PyTorch's CPU
sort; dtypes, 0-d and empty inputs; named-tuple results, node names and errors."""

import numpy as np
import pytest

import distnn
from op_check import check_op, compare_derivatives_with_torch, compare_with_torch, make_input, requires_torch, torch

TIES = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, 0.0, -1.0, 0.0, 5.0, -1.0]])


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), 1)])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("stable", [False, True])
def test_sort_matches_torch(shape, dim, descending, stable):
    check_op(lambda lib, x: tuple(lib.sort(x, dim=dim, descending=descending, stable=stable)), [make_input(shape)])


@pytest.mark.parametrize("descending", [False, True])
def test_argsort_matches_torch(descending):
    compare_with_torch(lambda lib, x: lib.argsort(x, 1, descending), [make_input((3, 5))], check_grad=False)
    compare_with_torch(lambda lib, x: x.argsort(dim=0, descending=descending, stable=True), [make_input((3, 5))],
                       check_grad=False)


@requires_torch
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("stable", [False, True])
@pytest.mark.parametrize("dim", [0, 1])
def test_ties_keep_their_order_as_torch(descending, stable, dim):
    """PyTorch's CPU sort is stable even unasked; the gradient goes where its indices point."""
    compare_with_torch(lambda lib, x: tuple(x.sort(dim=dim, descending=descending, stable=stable)), [TIES],
                       layouts=("contiguous",))
    compare_with_torch(lambda lib, x: x.argsort(dim, descending), [TIES], check_grad=False, layouts=("contiguous",))


@requires_torch
@pytest.mark.parametrize("descending", [False, True])
def test_nan_and_infinities_sort_as_torch(descending):
    data = np.array([np.nan, 1.0, -np.inf, np.nan, np.inf, 1.0, -0.5], dtype=np.float32)
    ours = distnn.from_numpy(data.copy()).sort(descending=descending)
    theirs = torch.from_numpy(data.copy()).sort(descending=descending)
    np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    top = distnn.from_numpy(data.copy()).topk(3, largest=descending)
    np.testing.assert_array_equal(top.values.numpy(), theirs.values.numpy()[:3])


@requires_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "float64"])
def test_dtypes_as_torch(dtype):
    data = np.array([[3, 0, 2, 2, 1], [1, 1, 0, 4, 4]]).astype(dtype)
    for descending in (False, True):
        ours = distnn.from_numpy(data.copy()).sort(1, descending)
        theirs = torch.from_numpy(data.copy()).sort(1, descending)
        for o, t in zip(ours, theirs):
            assert str(o.dtype) == str(t.dtype)
            np.testing.assert_array_equal(o.numpy(), t.numpy())
    if dtype != "bool":
        ours, theirs = distnn.from_numpy(data.copy()).topk(2), torch.from_numpy(data.copy()).topk(2)
        assert str(ours.values.dtype) == str(theirs.values.dtype) and ours.indices.dtype == distnn.int64
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())


@pytest.mark.parametrize("k,dim", [(1, -1), (3, -1), (4, 1), (2, 0), (0, 1)])
@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_torch(k, dim, largest):
    check_op(lambda lib, x: tuple(lib.topk(x, k, dim, largest)), [make_input((3, 4))])


@pytest.mark.parametrize("fn", [lambda lib, x: x.sort(1, descending=True).values ** 3,
                                lambda lib, x: lib.topk(x, 2, 0).values ** 3])
def test_higher_derivatives_match_torch(fn):
    compare_derivatives_with_torch(fn, [make_input((3, 4), seed=5)], order=3)


def test_topk_3d_and_unsorted():
    check_op(lambda lib, x: tuple(x.topk(2, dim=1)), [make_input((2, 3, 4))])
    # sorted=False leaves the order to the implementation: compare the values as a set
    check_op(lambda lib, x: x.topk(3, sorted=False).values.sort().values, [make_input((2, 5))])


def test_topk_ties_take_the_first_occurrences():
    """PyTorch's CPU topk orders tied values as its selection algorithm leaves them;
    distnn takes them in input order (the documented difference). The values agree."""
    x = distnn.tensor([1.0, 5.0, 5.0, 5.0, 2.0, 5.0, 0.0, 5.0], requires_grad=True)
    top = x.topk(3)
    assert top.values.tolist() == [5.0, 5.0, 5.0] and top.indices.tolist() == [1, 2, 3]
    assert x.topk(3, largest=False).indices.tolist() == [6, 0, 4]
    top.values.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    if torch is not None:
        theirs = torch.tensor(x.tolist()).topk(3)
        assert theirs.values.tolist() == top.values.tolist()


@requires_torch
def test_zero_dim_and_empty_as_torch():
    for lib in (distnn, torch):
        scalar = lib.tensor(2.5, requires_grad=True)
        values, indices = lib.sort(scalar)
        assert values.shape == () and indices.item() == 0 and values.grad_fn.name() == "SortBackward0"
        values.backward()
        assert scalar.grad.item() == 1.0
        assert lib.topk(scalar, 1).indices.item() == 0 and lib.topk(scalar, 0).values.item() == 2.5
        assert lib.argsort(scalar).shape == ()
        empty = lib.sort(lib.ones(2, 0), 0)
        assert tuple(empty.values.shape) == (2, 0) and empty.indices.dtype == lib.int64
        assert tuple(lib.topk(lib.ones(2, 0), 0).indices.shape) == (2, 0)


def test_named_tuples_and_node_names():
    x = distnn.tensor([[1.0, 5.0, 2.0]], requires_grad=True)
    out = x.sort(descending=True)
    values, indices = out
    assert out.values is values and out.indices is indices and not indices.requires_grad
    assert repr(out).startswith("torch.return_types.sort(\nvalues=tensor([[5., 2., 1.]]")
    assert repr(x.topk(1)).startswith("torch.return_types.topk(\nvalues=tensor([[5.]]")
    assert values.grad_fn.name() == "SortBackward0"
    assert x.sort(stable=True).values.grad_fn.name() == "SortBackward1"
    assert x.topk(2).values.grad_fn.name() == "TopkBackward0"
    assert not x.argsort().requires_grad and x.argsort().dtype == distnn.int64


@pytest.mark.parametrize("call,error,message", [
    (lambda lib, x: x.topk(5), RuntimeError, "selected index k out of range"),
    (lambda lib, x: x.topk(-1), RuntimeError, "selected index k out of range"),
    (lambda lib, x: x.topk(4, dim=0), RuntimeError, "selected index k out of range"),
    (lambda lib, x: lib.topk(x, 2.0), TypeError, "topk(): argument 'k' (position 2) must be int, not float"),
    (lambda lib, x: x.topk(1, dim=2), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    (lambda lib, x: x.sort(2), IndexError, "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    (lambda lib, x: (x > 0).topk(1), RuntimeError, "topk does not support bool dtypes on CPU"),
])
def test_errors_as_torch(call, error, message):
    libs = (distnn, torch) if torch is not None else (distnn,)
    for lib in libs:
        with pytest.raises(error) as raised:
            call(lib, lib.zeros(3, 4))
        assert str(raised.value) == message, lib.__name__


@pytest.mark.parametrize("call", [lambda x: x.sort(), lambda x: x.topk(2)])
def test_indices_modified_in_place_refuse_backward(call):
    x = distnn.tensor([3.0, 1.0, 2.0], requires_grad=True)
    values, indices = call(x)
    indices.add_(0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        values.sum().backward()
