"""Matrix products: gradcheck and torch comparison for every matmul shape case
(vectors, matrices, broadcast batch dims), the named products, the fused
``linear``, node names as PyTorch prints them, and shape/dtype errors."""

import numpy as np
import pytest

import distnn
from op_check import check_op, make_input, requires_torch

try:
    import torch
except ImportError:
    torch = None



def _linear(lib):
    return distnn.ops.linear if lib is distnn else lib.nn.functional.linear


MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 4)),
                 ((2, 3), (4, 3, 5)), ((2, 1, 2, 3), (3, 3, 2)), ((5, 2, 3), (5, 3, 4)), ((3,), (2, 3, 4)),
                 ((2, 3, 4), (4,)), ((1, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    check_op(lambda lib, x, y: x @ y, [make_input(sa, seed=1), make_input(sb, seed=2)])


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES[:6])
def test_matmul_one_input_requires_grad(sa, sb):
    a, b = make_input(sa, seed=1), make_input(sb, seed=2)
    check_op(lambda lib, x, y: lib.matmul(x, y), [a, b], requires_grad=[True, False])
    check_op(lambda lib, x, y: lib.matmul(x, y), [a, b], requires_grad=[False, True])


@pytest.mark.parametrize("name,sa,sb", [("mm", (2, 3), (3, 4)), ("bmm", (2, 3, 4), (2, 4, 5)),
                                        ("mv", (2, 3), (3,)), ("dot", (4,), (4,)), ("outer", (3,), (4,)),
                                        ("ger", (2,), (3,))])
def test_named_products(name, sa, sb):
    check_op(lambda lib, x, y: getattr(lib, name)(x, y), [make_input(sa, seed=1), make_input(sb, seed=2)])
    check_op(lambda lib, x, y: getattr(x, name)(y), [make_input(sa, seed=1), make_input(sb, seed=2)],
             gradcheck=False)


@pytest.mark.parametrize("bias_shape", [(4,), (1, 4), (3, 4), (3, 1)])
@pytest.mark.parametrize("beta,alpha", [(1, 1), (0.5, 2.0), (0, 1)])
def test_addmm(bias_shape, beta, alpha):
    check_op(lambda lib, c, x, y: lib.addmm(c, x, y, beta=beta, alpha=alpha),
             [make_input(bias_shape), make_input((3, 2), seed=1), make_input((2, 4), seed=2)])


@pytest.mark.parametrize("beta,alpha", [(1, 1), (0.5, 2.0)])
def test_baddbmm(beta, alpha):
    check_op(lambda lib, c, x, y: lib.baddbmm(c, x, y, beta=beta, alpha=alpha),
             [make_input((3, 4)), make_input((2, 3, 2), seed=1), make_input((2, 2, 4), seed=2)])


@pytest.mark.parametrize("x_shape", [(5,), (3, 5), (2, 3, 5), (2, 1, 3, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(x_shape, with_bias):
    arrays = [make_input(x_shape), make_input((4, 5), seed=1)] + ([make_input((4,), seed=2)] if with_bias else [])
    check_op(lambda lib, x, w, *b: _linear(lib)(x, w, *b), arrays)


def test_linear_weight_gradient_only():
    check_op(lambda lib, x, w, b: _linear(lib)(x, w, b),
             [make_input((3, 5)), make_input((4, 5), seed=1), make_input((4,), seed=2)],
             requires_grad=[False, True, True])


@pytest.mark.parametrize("eq,shapes", [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
                                       ("ij->j", [(3, 4)]), ("i,j->ij", [(3,), (4,)]), ("ij,ij->", [(2, 3), (2, 3)]),
                                       ("ij,jk", [(2, 3), (3, 4)]), ("ijk->kji", [(2, 3, 4)]),
                                       ("ij,kl->il", [(2, 3), (4, 5)])])
def test_einsum(eq, shapes):
    check_op(lambda lib, *xs: lib.einsum(eq, *xs), [make_input(s, seed=i) for i, s in enumerate(shapes)])


def test_einsum_accepts_operand_list():
    a, b = distnn.ones(2, 3), distnn.ones(3, 4)
    assert distnn.einsum("ij,jk->ik", [a, b]).tolist() == distnn.einsum("ij,jk->ik", a, b).tolist()


@requires_torch
@pytest.mark.parametrize("expr", [lambda lib, a, m, b3, v: a @ m, lambda lib, a, m, b3, v: v @ v,
                                  lambda lib, a, m, b3, v: a @ v, lambda lib, a, m, b3, v: v @ m,
                                  lambda lib, a, m, b3, v: b3 @ m, lambda lib, a, m, b3, v: lib.bmm(b3, b3.mT),
                                  lambda lib, a, m, b3, v: _linear(lib)(a, m.T, v),
                                  lambda lib, a, m, b3, v: _linear(lib)(a, m.T),
                                  lambda lib, a, m, b3, v: lib.addmm(v, a, m), lambda lib, a, m, b3, v: lib.outer(v, v)])
def test_node_names_match_torch(expr):
    def run(lib, convert):
        arrays = [make_input((4, 4)), make_input((4, 4), seed=1), make_input((2, 4, 4), seed=2),
                  make_input((4,), seed=3)]
        ts = [convert(a.astype(np.float32)).requires_grad_() for a in arrays]
        return expr(lib, *ts).grad_fn.name()
    assert run(distnn, distnn.from_numpy) == run(torch, torch.from_numpy)


def test_linear_with_bias_is_one_fused_node():
    x = distnn.randn(3, 5, requires_grad=True)
    w = distnn.randn(4, 5, requires_grad=True)
    b = distnn.randn(4, requires_grad=True)
    out = distnn.ops.linear(x, w, b)
    assert out.grad_fn.name() == "AddmmBackward0"
    assert [fn.name() for fn, _ in out.grad_fn.next_functions] == ["AccumulateGrad"] * 3


@pytest.mark.parametrize("expr", [lambda a, b: a @ b, lambda a, b: distnn.mm(a, b), lambda a, b: a.matmul(b),
                                  lambda a, b: distnn.ops.linear(a, b.T, b[0])])
def test_float32_stays_float32(expr):
    a = distnn.randn(3, 3, requires_grad=True)
    b = distnn.randn(3, 3, requires_grad=True)
    out = expr(a, b)
    assert out.dtype == distnn.float32
    out.sum().backward()
    assert a.grad.dtype == distnn.float32 and b.grad.dtype == distnn.float32


def test_integer_matmul():
    a = distnn.tensor([[1, 2], [3, 4]])
    assert (a @ a).tolist() == [[7, 10], [15, 22]] and (a @ a).dtype == distnn.int64


@pytest.mark.parametrize("call,message", [
    (lambda: distnn.ones(3, 4) @ distnn.ones(3, 4), r"mat1 and mat2 shapes cannot be multiplied \(3x4 and 3x4\)"),
    (lambda: distnn.ones(2, 3, 4) @ distnn.ones(3, 5), r"mat1 and mat2 shapes cannot be multiplied \(6x4 and 3x5\)"),
    (lambda: distnn.ones(5) @ distnn.ones(3, 4), r"mat1 and mat2 shapes cannot be multiplied \(1x5 and 3x4\)"),
    (lambda: distnn.ones(3, 4) @ distnn.ones(3), r"size mismatch, got input \(3\), mat \(3x4\), vec \(3\)"),
    (lambda: distnn.ones(4) @ distnn.ones(3), r"expected tensor \[4\] and src \[3\]"),
    (lambda: distnn.ones(2, 3, 4) @ distnn.ones(2, 5, 3), r"to be: \[2, 4\] but got: \[2, 5\]"),
    (lambda: distnn.ones(2, 2, 3) @ distnn.ones(3, 3, 2), r"size of tensor a \(2\) must match the size of tensor b \(3\)"),
    (lambda: distnn.tensor(1.0) @ distnn.ones(3), r"at least 1D, but they are 0D and 1D"),
    (lambda: distnn.ones(3, 4) @ distnn.ones(4, 3, dtype=distnn.float64),
     r"expected m1 and m2 to have the same dtype, but got: float != double"),
    (lambda: distnn.mm(distnn.ones(3), distnn.ones(3, 4)), "self must be a matrix"),
    (lambda: distnn.bmm(distnn.ones(2, 3, 4), distnn.ones(3, 4, 5)), r"to be: \[2, 4\] but got: \[3, 4\]"),
    (lambda: distnn.bmm(distnn.ones(3, 4), distnn.ones(4, 5)), "batch1 must be a 3D tensor"),
    (lambda: distnn.mv(distnn.ones(3, 4), distnn.ones(3, 4)), "vector \\+ matrix @ vector expected, got 1, 2, 2"),
    (lambda: distnn.dot(distnn.ones(3, 4), distnn.ones(3, 4)), "1D tensors expected, but got 2D and 2D tensors"),
    (lambda: distnn.dot(distnn.ones(3), distnn.ones(3, dtype=distnn.float64)), "found Float and Double"),
    (lambda: distnn.outer(distnn.ones(2, 2), distnn.ones(3)), "Expected 1-D argument self, but got 2-D"),
    (lambda: distnn.ops.linear(distnn.ones(2, 3, 4), distnn.ones(5, 3)),
     r"mat1 and mat2 shapes cannot be multiplied \(6x4 and 3x5\)"),
    (lambda: distnn.ops.linear(distnn.ones(3, 4), distnn.ones(5, 4), distnn.ones(3)),
     r"expanded size of the tensor \(5\) must match the existing size \(3\) at non-singleton dimension 1"),
    (lambda: distnn.addmm(distnn.ones(4, 5), distnn.ones(3, 4), distnn.ones(4, 5)),
     r"expanded size of the tensor \(3\) must match the existing size \(4\) at non-singleton dimension 0"),
    (lambda: distnn.einsum("ij,jk->ik", distnn.ones(2, 3), distnn.ones(4, 3)),
     "subscript j has size 4 for operand 1 which does not broadcast with previously seen size 3"),
])
def test_errors_name_both_shapes(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


@requires_torch
def test_error_messages_equal_torch():
    for sa, sb in [((3, 4), (3, 4)), ((2, 3, 4), (3, 5)), ((5,), (3, 4)), ((3, 4), (3,)), ((4,), (3,)),
                   ((2, 3, 4), (2, 5, 3))]:
        with pytest.raises(RuntimeError) as ours:
            distnn.ones(*sa) @ distnn.ones(*sb)
        with pytest.raises(RuntimeError) as theirs:
            torch.ones(*sa) @ torch.ones(*sb)
        assert str(ours.value) == str(theirs.value)
