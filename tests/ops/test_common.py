"""Operand handling shared by the op families: type promotion of tensor/scalar pairs."""

import numpy as np
import pytest

import distnn
from distnn import dtypes
from distnn.ops.common import _cast_operand, as_tensor, promote_operands
from op_check import requires_torch, torch

TENSOR_DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]
SCALARS = [2, 2.5, True, np.float64(2.5), np.int32(3)]


def _operand(lib, kind):
    """A tensor of dtype ``kind`` (or a 0-dim one, for ``"0d-<dtype>"``), else the scalar itself."""
    if not isinstance(kind, str):
        return kind
    zero_dim = kind.startswith("0d-")
    dtype = getattr(lib, kind[3:] if zero_dim else kind)
    return lib.ones((), dtype=dtype) if zero_dim else lib.ones(2, dtype=dtype)


PAIRS = ([(a, b) for a in TENSOR_DTYPES for b in TENSOR_DTYPES + ["0d-float64", "0d-int64"]]
         + [(a, s) for a in TENSOR_DTYPES for s in SCALARS] + [(s, a) for a in TENSOR_DTYPES for s in SCALARS])


@pytest.mark.parametrize("a,b", PAIRS, ids=str)
def test_shortcuts_give_the_general_rule(a, b):
    """The early returns for common pairs answer exactly what the promotion rules would."""
    x, y = _operand(distnn, a), _operand(distnn, b)
    px, py = promote_operands(x, y)
    raw = [v._data if isinstance(v, distnn.Tensor) else v for v in (x, y)]
    target = dtypes.promote(*raw)
    for original, promoted in ((x, px), (y, py)):
        expected = _cast_operand(original, target)
        if isinstance(expected, distnn.Tensor):
            assert promoted._data.dtype == target
            assert promoted is original or original._data.dtype != target
        else:
            assert type(promoted) is type(expected) and promoted == expected


@requires_torch
@pytest.mark.parametrize("a,b", [p for p in PAIRS if not any(isinstance(v, np.generic) for v in p)], ids=str)
def test_result_dtype_matches_torch(a, b):
    def result_dtype(lib):
        return (_operand(lib, a) + _operand(lib, b)).dtype
    assert str(result_dtype(distnn)) == str(result_dtype(torch))


def test_as_tensor_places_arrays_where_they_are_or_beside_like():
    assert as_tensor(np.ones(2, np.float32)).device == distnn.device("cpu")
    assert as_tensor([1.0, 2.0], like=distnn.ones(2)).device == distnn.device("cpu")


@pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")
def test_as_tensor_keeps_a_raw_gpu_array_on_its_gpu():
    """A backward formula's constant (a CuPy mask) must not be copied to the CPU."""
    on_gpu = distnn.ones(3, device="cuda")
    t = as_tensor(on_gpu._data > 0)
    assert t.device == on_gpu.device
    assert as_tensor([1.0, 2.0], like=on_gpu).device == on_gpu.device
