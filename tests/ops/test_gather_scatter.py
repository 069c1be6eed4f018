"""gather, take_along_dim, scatter, scatter_add and index_select against gradcheck and
PyTorch, and their argument errors; repeated indices must accumulate."""

import pytest

import distnn
from op_check import check_op, const, make_input


GATHER_CASES = [((3, 4), 1, [[0, 0], [3, 1], [2, 2]]), ((3, 4), 0, [[2, 0, 1, 1], [0, 0, 0, 2]]),
                ((2, 3, 4), -1, [[[1, 1, 3]], [[0, 2, 2]]]), ((5,), 0, [4, 4, 0])]


@pytest.mark.parametrize("shape,dim,idx", GATHER_CASES)
def test_gather(shape, dim, idx):
    check_op(lambda lib, t: lib.gather(t, dim, const(lib, idx)), [make_input(shape)])
    check_op(lambda lib, t: t.gather(dim, const(lib, idx)), [make_input(shape)], gradcheck=False)


@pytest.mark.parametrize("input_shape,dim,idx", [((3, 1), 1, [[0], [0], [0]]), ((1, 4), 1, [[3, 0], [1, 1]]),
                                                 ((2, 3), 0, [[1, 0, 1]])])
def test_take_along_dim_broadcasts(input_shape, dim, idx):
    check_op(lambda lib, t: lib.take_along_dim(t, const(lib, idx), dim), [make_input(input_shape)])


def test_take_along_dim_without_dim_flattens():
    # torch itself fails on a non-contiguous input here (it calls view(-1)), so compare contiguous only
    check_op(lambda lib, t: lib.take_along_dim(t, const(lib, [5, 0, 5])), [make_input((2, 3))],
             layouts=("contiguous",))
    x = distnn.arange(6.0).reshape(2, 3).t()
    assert distnn.take_along_dim(x, distnn.tensor([5, 0, 1])).tolist() == [5.0, 0.0, 3.0]


SCATTER_CASES = [(1, [[0, 2], [3, 1], [1, 0]], (3, 2)), (0, [[2, 0, 1, 1]], (1, 4)), (-1, [[1], [2], [0]], (3, 1))]
# src larger than index: only its leading block is used (torch's own backward fails here: it
# returns a gradient of the index's shape), so those gradients are checked by gradcheck alone
LARGER_SRC_CASES = [(0, [[2, 0, 1, 1]], (2, 5)), (-1, [[1], [2], [0]], (3, 3))]


@pytest.mark.parametrize("dim,idx,src_shape", SCATTER_CASES)
def test_scatter_with_src(dim, idx, src_shape):
    check_op(lambda lib, t, s: lib.scatter(t, dim, const(lib, idx), s),
             [make_input((3, 4)), make_input(src_shape, seed=3)])


@pytest.mark.parametrize("name", ["scatter", "scatter_add"])
@pytest.mark.parametrize("dim,idx,src_shape", LARGER_SRC_CASES)
def test_scatter_with_larger_src(name, dim, idx, src_shape):
    check_op(lambda lib, t, s: getattr(lib, name)(t, dim, const(lib, idx), s),
             [make_input((3, 4)), make_input(src_shape, seed=3)], check_grad=False)


def test_scatter_with_value():
    check_op(lambda lib, t: t.scatter(1, const(lib, [[0, 2], [3, 1], [1, 0]]), 2.5), [make_input((3, 4))])
    y = distnn.scatter(distnn.zeros(2, 3, requires_grad=True), 1, distnn.tensor([[0], [2]]), 1.0)
    assert y.grad_fn.name() == "ScatterBackward1"


@pytest.mark.parametrize("dim,idx,src_shape", [(1, [[0, 0, 0], [3, 1, 3], [1, 1, 0]], (3, 3)),
                                               (0, [[2, 2, 1, 2], [0, 2, 0, 0]], (2, 4))])
def test_scatter_add_accumulates_repeats(dim, idx, src_shape):
    check_op(lambda lib, t, s: lib.scatter_add(t, dim, const(lib, idx), s),
             [make_input((3, 4)), make_input(src_shape, seed=3)])


@pytest.mark.parametrize("shape,dim,idx", [((4, 3), 0, [3, 0, 3, 3]), ((4, 3), 1, [2, 0]), ((2, 3, 4), -1, [1]),
                                           ((4, 3), 0, 2)])
def test_index_select(shape, dim, idx):
    check_op(lambda lib, t: lib.index_select(t, dim, const(lib, idx)), [make_input(shape)])
    check_op(lambda lib, t: t.index_select(dim, const(lib, idx)), [make_input(shape)], gradcheck=False)


@pytest.mark.parametrize("call,error,match", [
    (lambda x: distnn.gather(x, 1, distnn.tensor([0, 1])), RuntimeError, "same number of dimensions"),
    (lambda x: distnn.gather(x, 1, distnn.tensor([[4]])), RuntimeError,
     "index 4 is out of bounds for dimension 1 with size 4"),
    (lambda x: distnn.gather(x, 1, distnn.tensor([[-1]])), RuntimeError, "index -1 is out of bounds"),
    (lambda x: distnn.gather(x, 1, distnn.tensor([[0]] * 4)), RuntimeError, "Size does not match at dimension 0"),
    (lambda x: distnn.gather(x, 1, distnn.tensor([[0.0]])), RuntimeError, "int64"),
    (lambda x: distnn.scatter(x, 0, distnn.tensor([[0, 1]]), distnn.ones(1, 1)), RuntimeError, "smaller than src"),
    (lambda x: distnn.scatter_add(x, 0, distnn.tensor([[0]]), distnn.ones(1, 1, dtype=distnn.float64)),
     RuntimeError, "Expect: float32, Actual: float64"),
    (lambda x: distnn.index_select(x, 0, distnn.tensor([3])), IndexError, "index out of range"),
    (lambda x: distnn.index_select(x, 0, distnn.tensor([[0]])), IndexError, "vector"),
    (lambda x: distnn.index_select(x, 2, distnn.tensor([0])), IndexError, "Dimension out of range"),
])
def test_gather_family_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(distnn.zeros(3, 4))
