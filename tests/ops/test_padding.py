"""Padding (``F.pad``): constant (negative amounts crop), reflect, replicate and circular,
gradchecked and compared with PyTorch, and PyTorch's errors."""

import pytest

import distnn
import distnn.nn.functional as F
from op_check import check_op, make_input


@pytest.mark.parametrize("shape,pad,mode", [
    ((2, 3, 4), (1, 2), "constant"),
    ((2, 3, 4, 5), (1, 0, 2, 1), "constant"),
    ((2, 3, 4, 5), (-1, 2, 0, -2), "constant"),
    ((2, 3, 4), (1, 1, 0, 0, 1, 0), "constant"),
    ((2, 3, 5), (2, 3), "reflect"),
    ((1, 2, 4, 5), (1, 3, 2, 0), "reflect"),
    ((2, 3, 4), (3, 1), "replicate"),
    ((1, 2, 3, 4), (2, 2, 1, 3), "replicate"),
    ((2, 2, 4), (2, 3), "circular"),
    ((1, 2, 3, 4), (1, 4, 3, 0), "circular"),
])
def test_pad(shape, pad, mode):
    check_op(lambda lib, x: lib.nn.functional.pad(x, pad, mode=mode), [make_input(shape)])


def test_pad_value():
    check_op(lambda lib, x: lib.nn.functional.pad(x, (1, 1), value=-2.5), [make_input((2, 3))])
    out = F.pad(distnn.tensor([[1, 2]]), (1, 0), value=7)
    assert out.dtype == distnn.int64 and out.tolist() == [[7, 1, 2]]


@pytest.mark.parametrize("pad,mode,error,match", [
    ((1,), "constant", RuntimeError, "Padding length must be divisible by 2"),
    ((1, 1) * 4, "constant", RuntimeError, "Padding length should be less than or equal to two times"),
    ((4, 0), "reflect", RuntimeError, "Padding size should be at most 3 for mode 'reflect'"),
    ((1, 1), "mirror", NotImplementedError, "Actual: 'mirror'"),
])
def test_pad_errors(pad, mode, error, match):
    with pytest.raises(error, match=match):
        F.pad(distnn.zeros(2, 3, 4), pad, mode=mode)


def test_nn_functional_pad_is_the_op():
    assert F.pad is distnn.ops.padding.pad
