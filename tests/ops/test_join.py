"""Joining and splitting ops (cat, stack, split, unbind): gradcheck and torch comparison,
dtype promotion on both of cat's paths, and cat's argument errors. The view, node-name and
error-text tables that also cover narrow/split/chunk/unbind stay in test_shape.py."""

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input, requires_torch, torch


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat(dim):
    shapes = {0: [(1, 3, 4), (2, 3, 4), (3, 3, 4)], 1: [(2, 1, 4), (2, 2, 4)], -1: [(2, 3, 1), (2, 3, 5)]}[dim]
    check_op(lambda lib, *xs: lib.cat(xs, dim), [make_input(s, seed=i) for i, s in enumerate(shapes)])
    check_op(lambda lib, *xs: lib.concat(list(xs), dim=dim), [make_input(s, seed=i) for i, s in enumerate(shapes)],
             gradcheck=False)


@pytest.mark.parametrize("dim", [0, 1, 3, -1, -4])
def test_stack(dim):
    check_op(lambda lib, *xs: lib.stack(xs, dim), [make_input((2, 3, 4), seed=i) for i in range(3)])


def test_unbind_and_stack_of_vectors_give_0d_arrays():
    check_op(lambda lib, x: x.unbind(0), [make_input((3,))])
    check_op(lambda lib, *xs: lib.stack(xs), [make_input((), seed=i) for i in range(3)])
    base = distnn.arange(3.0)
    pieces = base.unbind()
    assert pieces[1].shape == distnn.Size([]) and pieces[1]._data.shape == ()
    pieces[1].add_(5)  # a view: an in-place change shows in the base
    assert base.tolist() == [0.0, 6.0, 2.0]


def test_cat_with_one_input_not_requiring_grad():
    check_op(lambda lib, a, b: lib.cat([a, b], 1), [make_input((2, 3)), make_input((2, 2), seed=1)],
             requires_grad=[False, True])


def test_split_with_unused_pieces_still_backprops():
    x = distnn.arange(6.0).requires_grad_()
    a, b, c = x.split(2)
    (b * 2).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 2.0, 2.0, 0.0, 0.0]


@requires_torch
def test_cat_promotes_dtypes_like_torch():
    for other in (np.float64, np.int64):
        ours = distnn.cat([distnn.ones(2), distnn.from_numpy(np.ones(2, other))])
        theirs = torch.cat([torch.ones(2), torch.from_numpy(np.ones(2, other))])
        assert str(ours.dtype) == str(theirs.dtype)
    assert distnn.stack([distnn.tensor([1]), distnn.tensor([True])]).dtype == distnn.int64


CAT_INPUTS = [  # (shapes, dtypes, dim): the one-dtype path and the general one must agree with torch
    ([(2, 3), (2, 2)], ["float32", "float32"], -1),
    ([(2, 3), (2, 2)], ["float32", "float64"], 1),
    ([(0,), (2, 3), (0,)], ["float32", "float32", "float32"], 0),   # legacy empty 1-d tensors are skipped
    ([(0,), (3,)], ["float32", "float32"], 0),
    ([(0,), (0,)], ["float32", "float64"], 0),
    ([(3,), (1,)], ["float32", "float32"], -1),
]


@requires_torch
@pytest.mark.parametrize("shapes,dtypes,dim", CAT_INPUTS)
def test_cat_paths_match_torch(shapes, dtypes, dim):
    arrays = [np.arange(int(np.prod(s)), dtype=d).reshape(s) + i for i, (s, d) in enumerate(zip(shapes, dtypes))]
    results = []
    for lib in (distnn, torch):
        xs = [lib.tensor(a, requires_grad=True) for a in arrays]
        out = lib.cat(xs, dim)
        (out * lib.arange(out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        results.append((str(out.dtype), out.detach().numpy(), [x.grad for x in xs]))
    (ours_dtype, ours, ours_grads), (theirs_dtype, theirs, theirs_grads) = results
    assert ours_dtype == theirs_dtype
    np.testing.assert_array_equal(ours, theirs)
    for g_ours, g_theirs in zip(ours_grads, theirs_grads):
        if g_ours is None:  # a skipped legacy empty: no gradient here, an empty one in torch
            assert g_theirs.numel() == 0
            continue
        g_ours, g_theirs = g_ours.numpy(), g_theirs.numpy()
        assert g_ours.dtype == g_theirs.dtype
        np.testing.assert_array_equal(g_ours, g_theirs)


@pytest.mark.parametrize("tensors,dim,error,message", [
    ([distnn.ones(2, 3), distnn.ones(2, 3)], 2, IndexError,
     r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    ([distnn.ones(2, 3), distnn.ones(2, 3, dtype=distnn.float64)], -3, IndexError, "Dimension out of range"),
    ([distnn.tensor(1.0), distnn.tensor(2.0)], 0, RuntimeError, "zero-dimensional tensor"),
])
def test_cat_argument_errors(tensors, dim, error, message):
    with pytest.raises(error, match=message):
        distnn.cat(tensors, dim)
