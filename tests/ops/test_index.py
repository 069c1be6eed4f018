"""Indexing ops: every key kind of ``x[key]`` (views and copies), ``x[key] = v``,
masks and nonzero, against gradcheck and PyTorch; repeated indices must accumulate."""

import numpy as np
import pytest

import distnn
from distnn.ops import index as index_ops
from op_check import check_op, const, make_input, requires_torch, torch


# Keys written once for both libraries: ``key(lib)`` may build index tensors.
KEYS = {
    "int": lambda lib: 1,
    "negative_int": lambda lib: -1,
    "two_ints": lambda lib: (1, -2),
    "slice_step": lambda lib: slice(0, 3, 2),
    "negative_slice": lambda lib: (slice(None), slice(-3, -1)),
    "none_ellipsis": lambda lib: (None, Ellipsis, 0),
    "ellipsis_int": lambda lib: (Ellipsis, 1),
    "int_then_slice": lambda lib: (0, slice(1, 3)),
    "list_repeats": lambda lib: [0, 2, 0, 0],
    "tensor_repeats": lambda lib: lib.tensor([[1, 1], [2, 0]]),
    "negative_tensor": lambda lib: lib.tensor([-1, 0, -1]),
    "zero_dim_tensor": lambda lib: lib.tensor(2),
    "mixed_basic_advanced": lambda lib: (slice(1, None), lib.tensor([0, 2, 2])),
    "advanced_split_by_slice": lambda lib: (lib.tensor([0, 1, 1]), slice(None), lib.tensor([1, 1, 0])),
    "two_advanced_broadcast": lambda lib: (lib.tensor([[0], [2]]), slice(None), lib.tensor([0, 1, 1])),
    "bool_rows": lambda lib: lib.tensor([True, False, True]),
    "bool_with_slice": lambda lib: (slice(None), lib.tensor([True, False, True, True])),
    "bool_list": lambda lib: [False, True, True],
    "python_true": lambda lib: True,
}


@pytest.mark.parametrize("name", list(KEYS))
def test_getitem(name):
    x = make_input((3, 4, 2), seed=5)
    check_op(lambda lib, t: t[KEYS[name](lib)], [x])


@pytest.mark.parametrize("shape", [(5,), (3, 4)])
def test_getitem_full_bool_mask(shape):
    x = make_input(shape, seed=6)
    mask = make_input(shape, seed=7) > 0
    check_op(lambda lib, t: t[const(lib, mask)], [x])


def test_repeated_indices_accumulate():
    x = distnn.zeros(4, 2, requires_grad=True)
    x[distnn.tensor([0, 0, 3, 0])].sum().backward()
    assert x.grad[:, 0].tolist() == [3.0, 0.0, 0.0, 1.0]
    y = distnn.zeros(3, requires_grad=True)
    (y[[1, 1]] * distnn.tensor([2.0, 5.0])).sum().backward()
    assert y.grad.tolist() == [0.0, 7.0, 0.0]


@pytest.mark.parametrize("key,is_view", [(0, True), ((slice(None), 1), True), ((1, 2), True), (None, True),
                                         ([0, 1], False), ((slice(None), [1]), False)])
def test_basic_indexing_is_a_view_advanced_a_copy(key, is_view):
    x = distnn.arange(12.0).reshape(3, 4)
    y = x[key]
    assert np.shares_memory(y._data, x._data) == is_view
    assert (y._vc is x._vc) == is_view


def test_select_of_1d_gives_0dim_view():
    x = distnn.arange(3.0)
    v = x[1]
    assert v.shape == () and v.item() == 1.0
    v.add_(10)
    assert x.tolist() == [0.0, 11.0, 2.0]


@requires_torch
@pytest.mark.parametrize("key", [slice(1, 3), 0, (slice(None), 0), (0, slice(1, 3)), (slice(1, 3), 0), None,
                                 Ellipsis, [0, 1]])
def test_getitem_node_names_match_torch(key):
    ours = distnn.randn(3, 4, requires_grad=True)[key]
    theirs = torch.randn(3, 4, requires_grad=True)[key]
    assert ours.grad_fn.name() == theirs.grad_fn.name()


@pytest.mark.parametrize("key,match", [
    (5, "index 5 is out of bounds for axis 0 with size 3"),
    ((0, -5), "index -5 is out of bounds for axis 1 with size 4"),
    ([0, 3], "index 3 is out of bounds for axis 0 with size 3"),
    (1.5, "only integers, slices"),
    ("a", "only integers, slices"),
    ((0, 0, 0), "too many indices"),
])
def test_getitem_errors(key, match):
    with pytest.raises(IndexError, match=match):
        distnn.zeros(3, 4)[key]


def test_float_tensor_index_raises():
    with pytest.raises(IndexError, match="long, int, byte or bool"):
        distnn.zeros(3)[distnn.tensor([0.0])]


def test_bool_mask_of_wrong_shape_raises():
    with pytest.raises(IndexError, match="boolean index did not match"):
        distnn.zeros(3, 4)[distnn.tensor([True, False])]


# --- x[key] = value ---------------------------------------------------------------------

SET_CASES = {
    "int_scalar_value": (lambda lib: 1, None),
    "slice_row_value": (lambda lib: slice(0, 2), (4,)),
    "column_value": (lambda lib: (slice(None), 2), (3,)),
    "value_with_leading_one": (lambda lib: 0, (1, 4)),
    "advanced_rows": (lambda lib: lib.tensor([2, 0]), (2, 4)),
    "mask": (lambda lib: lib.tensor([True, False, True]), (1, 4)),
    "mixed": (lambda lib: (lib.tensor([0, 2]), slice(1, 3)), (2, 2)),
}


@pytest.mark.parametrize("name", list(SET_CASES))
def test_setitem_under_autograd(name):
    key, value_shape = SET_CASES[name]
    x = make_input((3, 4), seed=8)
    if value_shape is None:
        def fn(lib, t):
            y = t * 2
            y[key(lib)] = 7.5
            return y
        check_op(fn, [x])
        return

    def fn(lib, t, v):
        y = t * 2
        y[key(lib)] = v * 3
        return y
    check_op(fn, [x, make_input(value_shape, seed=9)])


def test_index_put_is_out_of_place_and_named():
    x = distnn.ones(3, requires_grad=True)
    v = distnn.tensor(4.0, requires_grad=True)
    y = index_ops.index_put(x, distnn.tensor([0, 2]), v)
    assert x.tolist() == [1.0, 1.0, 1.0] and y.tolist() == [4.0, 1.0, 4.0]
    assert y.grad_fn.name() == "IndexPutBackward0"
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0] and v.grad.item() == 2.0


@pytest.mark.parametrize("accumulate,idx", [(False, [[0, 2, 1], [1, 1, 3]]), (True, [[0, 2, 0], [1, 1, 1]])])
def test_index_put_matches_torch_signature(accumulate, idx):
    # repeats only with accumulate: which duplicate wins a plain write is unspecified (as in torch)
    check_op(lambda lib, t, v: lib.index_put(t, (lib.tensor(idx[0]), lib.tensor(idx[1])), v, accumulate),
             [make_input((3, 4)), make_input((3,), seed=4)])


def test_index_put_casts_value_to_input_dtype():
    y = index_ops.index_put(distnn.zeros(3, dtype=distnn.int64), 1, 2.7)
    assert y.dtype == distnn.int64 and y.tolist() == [0, 2, 0]


@pytest.mark.parametrize("index,value,expected", [
    (distnn.tensor([True, False, True]), 9.0, [9.0, 1.0, 9.0]),
    ((distnn.tensor(1),), distnn.tensor(5.0), [0.0, 5.0, 2.0]),
    ([0, 2], distnn.tensor([7.0, 8.0]), [7.0, 1.0, 8.0]),
    (slice(None, None, 2), -1.0, [-1.0, 1.0, -1.0]),
])
def test_assign_index_writes_raw_array(index, value, expected):
    data = np.arange(3, dtype=np.float32)
    assert index_ops.assign_index(data, index, value) is None
    assert data.tolist() == expected


@pytest.mark.parametrize("mask,value,expected", [
    (distnn.tensor([True, False, True]), 9.0, [[9.0, 1.0, 9.0], [9.0, 4.0, 9.0]]),
    (distnn.tensor([[False], [True]]), distnn.tensor(-1.0), [[0.0, 1.0, 2.0], [-1.0, -1.0, -1.0]]),
    (np.array([[True, False, False], [False, False, True]]), 7, [[7.0, 1.0, 2.0], [3.0, 4.0, 7.0]]),
])
def test_assign_masked_broadcasts_the_mask(mask, value, expected):
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert index_ops.assign_masked(data, mask, value) is None
    assert data.tolist() == expected and data.dtype == np.float32


def test_assign_masked_casts_to_the_array_dtype():
    data = np.arange(3)
    index_ops.assign_masked(data, np.array([True, False, True]), 1.7)
    assert data.tolist() == [1, 1, 1] and data.dtype == np.int64


# --- masks, nonzero ------------------------------------------------------------------------

@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (3, 1)])
def test_masked_fill(mask_shape):
    mask = make_input(mask_shape, seed=11) > 0
    check_op(lambda lib, t: lib.masked_fill(t, const(lib, mask), -2.0), [make_input((3, 4))])
    check_op(lambda lib, t: t.masked_fill(const(lib, mask), 0.5), [make_input((3, 4))],
             gradcheck=False)


def test_masked_fill_with_tensor_value_is_differentiable():
    mask = make_input((3, 4), seed=12) > 0
    check_op(lambda lib, t, v: lib.masked_fill(t, const(lib, mask), v.sum()),
             [make_input((3, 4)), make_input((2,), seed=2)])


def test_masked_fill_casts_value_and_rejects_bad_masks():
    x = distnn.arange(5)
    assert distnn.masked_fill(x, x > 2, 1.7).tolist() == [0, 1, 2, 1, 1]
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        distnn.masked_fill(x, x * 1.0, 1.0)
    with pytest.raises(RuntimeError, match="0-dimensional value tensor"):
        distnn.masked_fill(x, x > 2, distnn.ones(2))


@pytest.mark.parametrize("shape,mask_shape", [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (2, 4))])
def test_masked_select(shape, mask_shape):
    mask = make_input(mask_shape, seed=13) > 0
    check_op(lambda lib, t: lib.masked_select(t, const(lib, mask)), [make_input(shape)])


@requires_torch
@pytest.mark.parametrize("values", [[[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]], [0, 3, 0, 4], 3.0, 0.0, [[True, False]]])
@pytest.mark.parametrize("as_tuple", [False, True])
def test_nonzero_matches_torch(values, as_tuple):
    ours = distnn.nonzero(distnn.tensor(values), as_tuple=as_tuple)
    theirs = torch.nonzero(torch.tensor(values), as_tuple=as_tuple)
    ours, theirs = (ours, theirs) if as_tuple else ((ours,), (theirs,))
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs):
        assert o.dtype == distnn.int64 and tuple(o.shape) == tuple(t.shape)
        assert o.tolist() == t.tolist()


def test_where_with_condition_only_is_nonzero():
    rows, cols = distnn.where(distnn.tensor([[0, 1], [1, 1]]) > 0)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 1]
