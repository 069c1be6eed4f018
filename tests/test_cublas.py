"""distnn.cublas on the CPU: its cuBLAS arguments (operand order, transposes, leading
dimensions, batch strides) run through an emulated column-major strided-batched GEMM
over NumPy memory must give ``numpy.matmul``'s answer. The real library runs in the
GPU tests (tests/test_cuda_graphs.py)."""

import ctypes
import types

import numpy as np
import pytest

from distnn import cublas


class _DeviceArray(np.ndarray):
    """A NumPy array that answers the CuPy attributes cublas.py reads."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _dev(a):
    return np.asarray(a).view(_DeviceArray)


def _fake_cupy():
    def empty(shape, dtype):
        return _dev(np.empty(shape, dtype))

    return types.SimpleNamespace(
        empty=empty, ascontiguousarray=lambda x: _dev(np.ascontiguousarray(x)),
        broadcast_to=lambda x, s: _dev(np.broadcast_to(x, s)), matmul=np.matmul,
        cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0)))


def _view(ptr, ctype, count):
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype)), shape=(count,))


def _column_major(base, ctype, offset, rows, cols, ld):
    flat = _view(base, ctype, offset + (cols - 1) * ld + rows)
    return np.lib.stride_tricks.as_strided(flat[offset:], (rows, cols), (flat.itemsize, ld * flat.itemsize))


def _emulated_gemm(ctype):
    """cublas<t>gemmStridedBatched's contract, on host pointers."""

    def gemm(handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
             stride_c, count):
        alpha, beta = alpha._obj.value, beta._obj.value
        for i in range(count):
            op_a = _column_major(a, ctype, i * stride_a, *((m, k) if transa == 0 else (k, m)), lda)
            op_b = _column_major(b, ctype, i * stride_b, *((k, n) if transb == 0 else (n, k)), ldb)
            op_a = op_a if transa == 0 else op_a.T
            op_b = op_b if transb == 0 else op_b.T
            out = _column_major(c, ctype, i * stride_c, m, n, ldc)
            out[...] = alpha * (op_a @ op_b) + (beta * out if beta else 0)
        return 0
    return gemm


def _emulated_single(ctype):
    """cublas<t>gemm's contract: the batched one's for one product, without strides."""
    batched = _emulated_gemm(ctype)

    def gemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        return batched(handle, transa, transb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1)
    return gemm


@pytest.fixture
def emulated(monkeypatch):
    library = types.SimpleNamespace(
        gemm={"f": _emulated_gemm(ctypes.c_float), "d": _emulated_gemm(ctypes.c_double)},
        gemm_one={"f": _emulated_single(ctypes.c_float), "d": _emulated_single(ctypes.c_double)},
        scalars={"f": ctypes.c_float, "d": ctypes.c_double},
        handle=lambda device, stream: None, check=lambda status, what: None)
    monkeypatch.setattr(cublas, "_library", lambda: library)
    monkeypatch.setattr(cublas.backend, "_import_cupy", _fake_cupy)


def _operands(rng, case, dtype):
    shape_a, shape_b, transpose_a, transpose_b = case
    a = rng.standard_normal(shape_a[:-2] + (shape_a[-1], shape_a[-2]) if transpose_a else shape_a).astype(dtype)
    b = rng.standard_normal(shape_b[:-2] + (shape_b[-1], shape_b[-2]) if transpose_b else shape_b).astype(dtype)
    a = np.swapaxes(a, -1, -2) if transpose_a else a
    b = np.swapaxes(b, -1, -2) if transpose_b else b
    return _dev(a), _dev(b)


CASES = [
    ((3, 4), (4, 5), False, False), ((3, 4), (4, 5), True, False), ((3, 4), (4, 5), False, True),
    ((3, 4), (4, 5), True, True), ((1, 4), (4, 1), False, False), ((6, 1), (1, 7), True, True),
    ((2, 3, 4), (4, 5), False, False), ((3, 4), (2, 4, 5), False, True), ((2, 3, 4), (2, 4, 5), True, False),
    ((2, 1, 3, 4), (5, 4, 2), False, False), ((1, 3, 4), (3, 4, 2), False, True),
    ((2, 3, 3, 4), (3, 4, 2), True, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matmul_matches_numpy(emulated, case, dtype):
    a, b = _operands(np.random.default_rng(0), case, dtype)
    expected = np.matmul(np.asarray(a), np.asarray(b))
    got = cublas.matmul(a, b)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_vectors_strided_views_out_and_accumulate(emulated):
    rng = np.random.default_rng(1)
    m = _dev(rng.standard_normal((5, 8)).astype(np.float32))
    v = _dev(rng.standard_normal(16).astype(np.float32))[::2]  # a strided vector
    np.testing.assert_allclose(np.asarray(cublas.matmul(m, v)), np.asarray(m) @ np.asarray(v), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cublas.matmul(v[:5], m)), np.asarray(v[:5]) @ np.asarray(m), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cublas.dot(v, v)), np.dot(np.asarray(v), np.asarray(v)), rtol=1e-5)
    columns = _dev(rng.standard_normal((8, 12)).astype(np.float32))[:, ::3]  # neither layout: copied
    np.testing.assert_allclose(np.asarray(cublas.matmul(m, columns)), np.asarray(m) @ np.asarray(columns),
                               rtol=1e-5)
    out = _dev(np.ones((5, 4), np.float32))
    cublas.matmul(m, columns, out=out, accumulate=True)
    np.testing.assert_allclose(np.asarray(out), 1 + np.asarray(m) @ np.asarray(columns), rtol=1e-5)
    wide = _dev(np.ones((5, 8), np.float32))
    cublas.matmul(m, columns, out=wide[:, ::2], accumulate=True)  # a non-contiguous out
    np.testing.assert_allclose(np.asarray(wide)[:, ::2], 1 + np.asarray(m) @ np.asarray(columns), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(wide)[:, 1::2], 1)


def test_batched_operand_copied_takes_the_copy_batch_stride(emulated):
    """Heads split out of (L, N, E) are batched views in neither layout: the GEMM reads a
    contiguous copy, whose batch stride is not the view's (attention's gradients on the
    H200 were wrong while the view's was used)."""
    rng = np.random.default_rng(2)
    heads = _dev(rng.standard_normal((3, 2, 4)).astype(np.float32)).transpose(1, 0, 2)  # (2, 3, 4)
    keys = _dev(rng.standard_normal((2, 5, 4)).astype(np.float32)).transpose(0, 2, 1)  # (2, 4, 5), transposed
    for a, b in [(heads, keys), (keys.transpose(0, 2, 1), heads.transpose(0, 2, 1))]:
        np.testing.assert_allclose(np.asarray(cublas.matmul(a, b)), np.matmul(np.asarray(a), np.asarray(b)),
                                   rtol=1e-5, atol=1e-6)


def test_mismatched_shapes_name_both(emulated):
    a, b = _dev(np.ones((3, 4), np.float32)), _dev(np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="size 5 is different from 4"):
        cublas.matmul(a, b)
    with pytest.raises(ValueError, match="do not broadcast"):
        cublas.matmul(_dev(np.ones((2, 3, 4), np.float32)), _dev(np.ones((3, 4, 5), np.float32)))
