"""Elementwise ops: gradcheck and torch comparison over shapes with broadcasting."""

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input

SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum"])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS)
def test_binary(name, shapes):
    a = make_input(shapes[0], seed=1)
    b = make_input(shapes[1], seed=2, positive=(name == "div"))
    check_op(lambda lib, x, y: getattr(lib, name)(x, y), [a, b])


@pytest.mark.parametrize("expr", [lambda x: x + 2, lambda x: 2 - x, lambda x: x * 0.5, lambda x: 3 / x,
                                  lambda x: x ** 2, lambda x: 2 ** x, lambda x: -x, lambda x: x - 1.5])
def test_scalar_operators_keep_float32(expr):
    a = make_input((2, 3), positive=True)
    check_op(lambda lib, x: expr(x), [a])


@pytest.mark.parametrize("name,positive", [("exp", False), ("log", True), ("log1p", True), ("sqrt", True),
                                           ("rsqrt", True), ("abs", False), ("sin", False),
                                           ("cos", False), ("reciprocal", True), ("square", False)])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_unary(name, positive, shape):
    check_op(lambda lib, x: getattr(lib, name)(x), [make_input(shape, positive=positive)])


def test_pow_tensor_exponent():
    check_op(lambda lib, x, y: lib.pow(x, y), [make_input((3, 4), positive=True), make_input((4,))])


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.2), (-0.2, None)])
def test_clamp(lo, hi):
    check_op(lambda lib, x: lib.clamp(x, lo, hi), [make_input((4, 5))])


def test_where():
    cond = make_input((3, 4)) > 0
    check_op(lambda lib, c, x, y: lib.where(c, x, y),
             [cond, make_input((3, 4), seed=1), make_input((4,), seed=2)], requires_grad=[False, True, True])


def test_comparisons_have_no_grad():
    x = distnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for out in (x > 2, x == 2, x.lt(2), x.ge(1.5)):
        assert out.dtype == distnn.bool and not out.requires_grad
    assert (x > 1.5).tolist() == [False, True, True]


def test_int_tensor_with_float_scalar_gives_float32():
    x = distnn.tensor([1, 2, 3])
    assert (x * 0.5).dtype == distnn.float32
    assert (x + 1).dtype == distnn.int64
    assert (x / 2).dtype == distnn.float32
    assert (distnn.ones(2, dtype=distnn.float64) * distnn.ones(2)).dtype == distnn.float64


@pytest.mark.parametrize("dtype", [distnn.float32, distnn.float16, distnn.float64])
@pytest.mark.parametrize("shape", [(3, 4), ()])
@pytest.mark.parametrize("requires_grad, no_grad", [(True, True), (False, False)])
def test_unrecorded_product_with_a_float_matches_the_mul_op(dtype, shape, requires_grad, no_grad):
    """``1e-4 * p.grad`` skips Mul.apply when nothing is recorded; same values and dtype."""
    from distnn.ops.elementwise import Mul
    t = distnn.tensor(np.linspace(-2, 2, int(np.prod(shape))).reshape(shape), dtype=dtype,
                      requires_grad=requires_grad)
    with distnn.set_grad_enabled(not no_grad):
        fast, general = 1e-4 * t, Mul.apply(t, 1e-4)
    assert type(fast._data) is np.ndarray and fast._data.dtype == general._data.dtype == t._data.dtype
    np.testing.assert_array_equal(fast._data, general._data)
    assert not fast.requires_grad and fast.grad_fn is None and fast._data is not t._data


def test_recorded_product_with_a_float_keeps_its_node():
    t = distnn.ones(2, 3, requires_grad=True)
    assert (0.5 * t).grad_fn.name() == "MulBackward0"
