"""Elementwise ops: gradcheck and torch comparison over shapes with broadcasting."""

import numpy as np
import pytest

import distnn
from distnn import _tensor_inplace
from distnn.ops import elementwise
from op_check import check_op, make_input, requires_torch, torch

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


# Subtraction with a bool operand, in each spelling: PyTorch refuses it, a Python bool counting
# as a bool tensor and a numpy bool not; without a bool, mixed operands subtract as promoted.
# b, b0: bool tensors (b0 0-dim); i: int64; f: float32; fg: float32 requiring grad.
SUBTRACTIONS = [
    "b - b", "b - b0", "b - True", "True - b", "b - 1", "1 - b", "b - 1.5", "2.5 - b", "i - b", "b - i",
    "f - b", "b - f", "f - b0", "i - True", "True - i", "f - True", "True - f", "f - False", "fg - b",
    "fg * 1 - True", "f - np.True_", "b - np.True_", "i - 1", "f - i", "i - 0.5", "f - 1", "1 - f", "f - f",
    "sub(b, b)", "sub(i, b)", "sub(i, True)", "sub(b, 1, alpha=2)", "sub(i, b, alpha=2)", "sub(i, True, alpha=2)",
    "sub(b, b, alpha=True)", "sub(f, i, alpha=2)", "rsub(b, b)", "rsub(i, b)", "rsub(b, 1)", "rsub(f, True)",
    "rsub(f, 2)", "b.sub(b)", "i.sub(True)", "f.sub(i)",
]
INPLACE_SUBTRACTIONS = [
    "i.sub_(b)", "i.sub_(True)", "b.sub_(b)", "b.sub_(1)", "b.sub_(True)", "f.sub_(b)", "f.sub_(True)",
    "f.sub_(b, alpha=2)", "i.sub_(i, alpha=2)", "f.sub_(i)", "(fg * 1).sub_(b)", "(fg * 1).sub_(f)",
    "i -= b", "i -= True", "b -= b", "b -= b0", "b -= f", "f -= b", "f -= True", "f -= f", "i -= 1", "f -= np.True_",
]


def subtraction_outcome(lib, expr):
    """(dtype, values) of ``expr``, or its RuntimeError's message; then every operand's
    values, so a refused in-place subtraction is seen to leave its target alone."""
    names = {"b": lib.tensor([True, False]), "b0": lib.tensor(True), "i": lib.tensor([3, 4]),
             "f": lib.tensor([1.5, 2.0]), "fg": lib.tensor([1.5, 2.0], requires_grad=True),
             "sub": lib.sub, "rsub": lib.rsub, "np": np}
    try:
        if "-=" in expr:
            exec(expr, names)
            out = names[expr.split()[0]]
        else:
            out = eval(expr, names)
        outcome = (str(out.dtype).rsplit(".", 1)[-1], out.tolist())
    except RuntimeError as exc:
        outcome = (str(exc),)
    return outcome + tuple(names[k].tolist() for k in ("b", "b0", "i", "f"))


@requires_torch
@pytest.mark.parametrize("expr", SUBTRACTIONS + INPLACE_SUBTRACTIONS)
def test_subtraction_with_bools_matches_torch(expr):
    assert subtraction_outcome(distnn, expr) == subtraction_outcome(torch, expr)


@pytest.mark.parametrize("expr, message", [
    ("b - b", "Subtraction, the `-` operator, with two bool tensors is not supported. "
              "Use the `^` or `logical_xor()` operator instead."),
    ("f - True", "Subtraction, the `-` operator, with a bool tensor is not supported. "
                 "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead."),
    ("i -= b", "Subtraction, the `-` operator, with a bool tensor is not supported."),
])
def test_subtraction_with_bools_raises_torchs_error(expr, message):
    """The same refusals without the oracle: torch 2.13's messages."""
    assert subtraction_outcome(distnn, expr)[0].startswith(message)


def test_common_subtractions_skip_the_bool_check(monkeypatch):
    # Two tensors of one dtype, or a float tensor and a Python number, are the hot path
    # (``p -= lr * g``): no look at dtype kinds there.
    def counted(*args):
        calls.append(args)

    calls = []
    monkeypatch.setattr(elementwise, "refuse_bool_subtraction", counted)
    monkeypatch.setattr(_tensor_inplace, "refuse_bool_subtraction", counted)
    p, g = distnn.ones(2), distnn.ones(2)
    results = [p - g, p - 0.5, p - 1, 2 - p, p.sub(g)]
    p -= g
    p.sub_(g)
    assert calls == []
    assert [r.tolist() for r in results] == [[0.0, 0.0], [0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert p.tolist() == [-1.0, -1.0]
