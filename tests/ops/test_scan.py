"""Scans (cumsum, cumprod): gradcheck and torch comparison over dims, cumprod's
first, second and third derivatives against PyTorch with zeros in the input,
dtypes, 0-d and empty inputs, and bad dims."""

import numpy as np
import pytest

import distnn
from op_check import check_op, compare_derivatives_with_torch, compare_with_torch, make_input, requires_torch

# flat positions of exact zeros: along dim 1 of a (3, 4) input "1, 2" are adjacent,
# along dim 0 "1, 5" are; "0, 3, 5" puts a zero first and last in a row
ZEROS = {"none": (), "one": (1,), "adjacent_in_row": (1, 2), "adjacent_in_column": (1, 5), "three": (0, 3, 5)}
SCAN_DIMS = [((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), 1), ((5,), 0), ((1, 4), 0)]


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(dim):
    check_op(lambda lib, x: lib.cumsum(x, dim), [make_input((3, 4))])


@pytest.mark.parametrize("shape,dim", SCAN_DIMS)
@pytest.mark.parametrize("zeros", list(ZEROS.values()), ids=list(ZEROS))
def test_cumprod(shape, dim, zeros):
    x = make_input(shape, positive=True, zeros=[z for z in zeros if z < np.prod(shape)])
    check_op(lambda lib, t: lib.cumprod(t, dim), [x])


@requires_torch
@pytest.mark.parametrize("shape,dim", SCAN_DIMS)
@pytest.mark.parametrize("zeros", list(ZEROS.values()), ids=list(ZEROS))
def test_cumprod_second_derivative_matches_torch(shape, dim, zeros):
    x = make_input(shape, zeros=[z for z in zeros if z < np.prod(shape)])
    compare_derivatives_with_torch(lambda lib, t: t.cumprod(dim), [x])


@requires_torch
@pytest.mark.parametrize("zeros", list(ZEROS.values()), ids=list(ZEROS))
@pytest.mark.parametrize("fn", [lambda lib, t: lib.cumprod(t, 1), lambda lib, t: t.cumprod(0) * t,
                                lambda lib, t: t.prod(), lambda lib, t: t.prod(1, keepdim=True)],
                         ids=["cumprod", "cumprod_times_input", "prod", "prod_dim"])
def test_third_derivative_matches_torch(fn, zeros):
    """The gradient recorded under create_graph=True (the division-free form) is itself
    differentiated twice: exact at zeros as well."""
    compare_derivatives_with_torch(fn, [make_input((3, 4), zeros=zeros)], order=3)


def test_cumprod_second_derivative_at_two_zeros():
    """y = cumprod([0, 0, 2]): y_2 = x0 x1 x2, whose gradient vanishes at the input,
    but d2 y_2 / dx0 dx1 = x2 = 2 does not."""
    x = distnn.tensor([0.0, 0.0, 2.0], dtype=distnn.float64, requires_grad=True)
    (g,) = distnn.autograd.grad(x.cumprod(0)[2], x, create_graph=True)
    assert g.tolist() == [0.0, 0.0, 0.0]
    (h,) = distnn.autograd.grad(g[0], x)
    assert h.tolist() == [0.0, 2.0, 0.0]


@requires_torch
@pytest.mark.parametrize("expr", [lambda lib, x: x.cumprod(1), lambda lib, x: lib.cumprod(x, 0),
                                  lambda lib, x: x.cumsum(1)])
@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.int32, np.uint8])
def test_integer_and_bool_inputs_match_torch_dtypes(expr, dtype):
    x = (make_input((3, 4)) * 3).astype(dtype)
    compare_with_torch(expr, [x], check_grad=False)


@requires_torch
@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_dtype_argument_casts_first(name):
    compare_with_torch(lambda lib, x: getattr(lib, name)(x, 1, dtype=lib.float64), [make_input((2, 3))])


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_zero_dim_and_empty_inputs(name):
    scalar = distnn.tensor(3.0, requires_grad=True)
    out = getattr(distnn, name)(scalar, 0)
    assert out.shape == distnn.Size([]) and out.item() == 3.0
    assert type(out.grad_fn).__name__ == f"{name.capitalize()}Backward0"
    out.backward()
    assert scalar.grad.item() == 1.0
    empty = distnn.zeros(2, 0, requires_grad=True)
    getattr(empty, name)(1).sum().backward()
    assert empty.grad.shape == distnn.Size([2, 0])


@pytest.mark.parametrize("name", ["cumsum", "cumprod"])
def test_dim_out_of_range(name):
    with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"):
        getattr(distnn, name)(distnn.ones(2, 3), 2)
