"""Matrix products of CuPy arrays through distnn's own cuBLAS handle.

CuPy refuses every cuBLAS call while a stream is being captured into a CUDA graph
(it checks in ``cublasSetStream``), so a training step with a Linear in it could
not be captured. These GEMMs call cuBLAS through ctypes with a handle of our own
whose workspace is set once (cuBLAS then allocates nothing while capturing, as
CUDA graphs need), and cost a few microseconds of Python against ``cupy.matmul``'s
tens. ``matmul`` keeps ``cupy.matmul``'s semantics (broadcast batch dims, 1-D
operands); float32 and float64 run here, any other dtype goes to CuPy.
"""

import ctypes
import threading

from . import backend

_N, _T = 0, 1  # cublasOperation_t
_TF32_TENSOR_OP_MATH = 3
_GEMM_CHARS = ("f", "d")  # dtype.char of float32 and float64
_WORKSPACE_BYTES = 32 << 20  # what cuBLAS asks for on Hopper; kept for the handle's life


class CublasError(RuntimeError):
    pass


def _library_path():
    """The libcublas CuPy already loaded (same build), else the one the loader finds."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(" ", 1)[-1].strip()
                if "/libcublas.so" in path:
                    return path
    except OSError:
        pass
    return None


class _Cublas:
    """The loaded library and one handle per GPU, each with its workspace."""

    def __init__(self):
        cupy = backend._import_cupy()
        getattr(cupy.cuda, "cublas")  # CuPy loads libcublas on first touch of this module
        path = _library_path()
        names = [path] if path else ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
        for name in names:
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise CublasError("distnn could not load libcublas (tried " + ", ".join(names) + ")")
        lib, p, i = self.lib, ctypes.c_void_p, ctypes.c_int
        gemm_args = [p, i, i, i, i, i, p, p, i, ctypes.c_longlong, p, i, ctypes.c_longlong, p, p, i,
                     ctypes.c_longlong, i]
        # keyed by dtype.char ('f' float32, 'd' float64): dtype.name costs microseconds a call
        self.gemm = {"f": lib.cublasSgemmStridedBatched, "d": lib.cublasDgemmStridedBatched}
        for fn in self.gemm.values():
            fn.argtypes = gemm_args
        # one product: the plain GEMM, whose kernel choice cuBLAS keeps, not the batched one's
        self.gemm_one = {"f": lib.cublasSgemm_v2, "d": lib.cublasDgemm_v2}
        for fn in self.gemm_one.values():
            fn.argtypes = [p, i, i, i, i, i, p, p, i, p, i, p, p, i]
        lib.cublasSetStream_v2.argtypes = [p, p]
        lib.cublasSetWorkspace_v2.argtypes = [p, p, ctypes.c_size_t]
        lib.cublasSetMathMode.argtypes = [p, i]
        self.scalars = {"f": ctypes.c_float, "d": ctypes.c_double}
        self.handles = {}  # device id -> (handle, workspace array, stream it was last set to)
        self.lock = threading.Lock()

    def check(self, status, what):
        if status != 0:
            raise CublasError(f"cuBLAS {what} failed with status {status}")

    def handle(self, device_id, stream_ptr):
        entry = self.handles.get(device_id)
        if entry is None:
            with self.lock:
                entry = self.handles.get(device_id) or self._create(device_id)
        if entry[2] != stream_ptr:
            self.check(self.lib.cublasSetStream_v2(entry[0], stream_ptr), "cublasSetStream")
            entry[2] = stream_ptr
        return entry[0]

    def _create(self, device_id):
        from .backends._flags import cupy_uses_tf32
        cupy = backend._import_cupy()
        with cupy.cuda.Device(device_id):
            handle = ctypes.c_void_p()
            self.check(self.lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
            workspace = cupy.empty(_WORKSPACE_BYTES, cupy.uint8)
            self.check(self.lib.cublasSetWorkspace_v2(handle, workspace.data.ptr, _WORKSPACE_BYTES),
                       "cublasSetWorkspace")
            if cupy_uses_tf32():
                self.check(self.lib.cublasSetMathMode(handle, _TF32_TENSOR_OP_MATH), "cublasSetMathMode")
        entry = self.handles[device_id] = [handle, workspace, None]
        return entry


_cublas = None
_load_error = None


def _library():
    """The loaded library, or None where it would not load (CuPy's GEMMs serve then)."""
    global _cublas, _load_error
    if _cublas is None and _load_error is None:
        try:
            _cublas = _Cublas()
        except (OSError, AttributeError, CublasError) as exc:
            _load_error = exc
    return _cublas


def prepare(device_id=None):
    """Load cuBLAS and make this GPU's handle now (a graph capture calls this first)."""
    cupy = backend._import_cupy()
    device_id = cupy.cuda.Device().id if device_id is None else device_id
    lib = _library()
    if lib is None:
        raise CublasError(f"distnn's cuBLAS GEMMs are unavailable ({_load_error}), and CuPy's cannot be "
                          "captured in a CUDA graph")
    lib.handle(device_id, cupy.cuda.get_current_stream().ptr)


def _operand(x):
    """(cuBLAS op, leading dimension) reading the last two axes of ``x`` as stored,
    or None when they are neither row-major nor a transposed row-major matrix."""
    r, c = x.shape[-2:]
    sr, sc = x.strides[-2:]
    size = x.itemsize
    if (c == 1 or sc == size) and (r == 1 or sr == c * size):
        return _N, max(c, 1)
    if (r == 1 or sr == size) and (c == 1 or sc == r * size):
        return _T, max(r, 1)
    return None


def _batch_stride(x, batch_shape):
    """``x`` broadcast over ``batch_shape`` and the one element stride between its
    matrices (0 when every matrix is the same one), or None when no single stride does."""
    lead = x.shape[:-2]
    strides = (0,) * (len(batch_shape) - len(lead)) + tuple(
        0 if n == 1 else s for n, s in zip(lead, x.strides[:-2]))
    step, expected = None, None
    for n, s in zip(reversed(batch_shape), reversed(strides)):
        if n == 1:
            continue
        if step is None:
            step, expected = s, s * n
            continue
        if s == 0 and step == 0:
            continue
        if s != expected:
            return None
        expected = s * n
    step = step or 0
    return None if step % x.itemsize else step // x.itemsize


def matmul(a, b, out=None, accumulate=False):
    """``cupy.matmul(a, b, out=out)``; with ``accumulate`` it adds the product into ``out``."""
    cupy = backend._import_cupy()
    dtype = a.dtype
    if (dtype != b.dtype or dtype.char not in _GEMM_CHARS or a.ndim == 0 or b.ndim == 0
            or _library() is None):
        if accumulate:
            out += cupy.matmul(a, b)
            return out
        return cupy.matmul(a, b, out=out)
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = a.reshape(1, -1)
    if squeeze_b:
        b = b.reshape(-1, 1)
    m, k = a.shape[-2:]
    k2, n = b.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0 (size {k2} "
                         f"is different from {k})")
    batch = _broadcast_batch(a.shape[:-2], b.shape[:-2])
    count = 1
    for size in batch:
        count *= size
    shape = batch + (m, n)
    result_shape = shape[:-2] + ((m,) if not squeeze_a else ()) + ((n,) if not squeeze_b else ())
    if out is None:
        out = cupy.empty(result_shape, dtype)
    elif out.shape != result_shape or out.dtype != dtype:
        raise ValueError(f"matmul: out has shape {out.shape} and dtype {out.dtype}, expected "
                         f"{result_shape} and {dtype}")
    if count == 0 or m == 0 or n == 0:
        return out
    direct = out.flags.c_contiguous
    target = out if direct else cupy.empty(result_shape, dtype)
    if k == 0:
        if not (accumulate and direct):
            target.fill(0)
    else:
        _gemm(cupy, _gemm_operand(cupy, a, batch), _gemm_operand(cupy, b, batch), target, m, n, k, count,
              accumulate and direct)
    if not direct:
        if accumulate:
            out += target
        else:
            out[...] = target
    return out


def _broadcast_batch(sa, sb):
    shape = []
    for i in range(max(len(sa), len(sb))):
        x = sa[len(sa) - 1 - i] if i < len(sa) else 1
        y = sb[len(sb) - 1 - i] if i < len(sb) else 1
        if x != y and 1 not in (x, y):
            raise ValueError(f"matmul: batch dimensions {sa} and {sb} do not broadcast")
        shape.append(max(x, y))
    return tuple(reversed(shape))


def _gemm_operand(cupy, x, batch):
    """(``x`` or a contiguous copy of it, its cuBLAS op, leading dimension and batch
    stride): what a strided-batched GEMM reads, worked out once per operand."""
    stride = _batch_stride(x, batch) if batch else 0
    if stride is None:  # batch dims broadcast in a way no one stride walks
        x = cupy.ascontiguousarray(cupy.broadcast_to(x, batch + x.shape[-2:]))
        stride = _batch_stride(x, batch)
    layout = _operand(x)
    if layout is None:  # a copy has its own batch stride
        x = cupy.ascontiguousarray(x)
        layout = _operand(x)
        stride = _batch_stride(x, batch) if batch else 0
    return (x,) + layout + (stride,)


def _gemm(cupy, a, b, out, m, n, k, count, accumulate):
    """``out = a @ b`` (``+=`` with ``accumulate``) for operands from ``_gemm_operand``.
    Row-major C = A @ B is column-major C^T = B^T @ A^T: cuBLAS gets B first."""
    (a, op_a, ld_a, stride_a), (b, op_b, ld_b, stride_b) = a, b
    lib = _library()
    handle = lib.handle(out.device.id, cupy.cuda.get_current_stream().ptr)
    kind = out.dtype.char
    scalar = lib.scalars[kind]
    alpha, beta = scalar(1.0), scalar(1.0 if accumulate else 0.0)
    if count == 1:
        lib.check(lib.gemm_one[kind](
            handle, op_b, op_a, n, m, k, ctypes.byref(alpha), b.data.ptr, ld_b, a.data.ptr, ld_a,
            ctypes.byref(beta), out.data.ptr, n), "gemm")
        return
    lib.check(lib.gemm[kind](
        handle, op_b, op_a, n, m, k, ctypes.byref(alpha), b.data.ptr, ld_b, stride_b,
        a.data.ptr, ld_a, stride_a, ctypes.byref(beta), out.data.ptr, n, m * n, count), "gemm")


def dot(a, b, out=None):
    """``cupy.dot``: matmul for 1-D and 2-D operands, CuPy's own for the rest."""
    if a.ndim <= 2 and b.ndim <= 2 and a.ndim and b.ndim:
        return matmul(a, b, out=out)
    return backend._import_cupy().dot(a, b, out=out)
