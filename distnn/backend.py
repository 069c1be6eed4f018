"""The one place that picks the array module (numpy or cupy) for a device.

Every op does its array math through the ``xp`` it gets from here, so one
implementation serves CPU and GPU. CuPy is imported lazily, on first use of a
CUDA device, and nowhere else in the package.
"""

import ctypes
import os
import sys
import threading

import numpy as np

_cupy = None
_gpu_xp = None  # CuPy as ops see it: _GpuArrayModule
_current_cuda = 0  # what a bare "cuda" means; set by cuda_set_device


def _import_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as exc:
            raise RuntimeError(
                "CUDA device requested but CuPy is not installed; "
                "install the 'gpu' extra (pip install distnn[gpu])") from exc
        _cupy = cupy
    return _cupy


def cuda_is_available():
    """True when CuPy imports and sees at least one GPU."""
    try:
        cupy = _import_cupy()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no GPU, or CuPy missing: all mean "no"
        return False


def cuda_device_count():
    return _import_cupy().cuda.runtime.getDeviceCount() if cuda_is_available() else 0


def _cuda_index(device):
    """The GPU index ``device`` (None, an int, a string or a Device) names, checked to exist."""
    index = _current_cuda if device is None else as_device(device).index
    if device is not None and as_device(device).type != "cuda":
        raise ValueError(f"Expected a CUDA device, got {device!r}")
    _import_cupy()  # CuPy missing altogether: say so, and how to install it
    count = cuda_device_count()
    if not 0 <= index < count:
        raise RuntimeError(f"CUDA device {index} requested, but {count} GPU(s) are visible"
                           if count else "CUDA device requested, but CuPy sees no GPU")
    return index


def cuda_set_device(device):
    """Make ``device`` what a bare "cuda" means from now on, and CuPy's current GPU."""
    global _current_cuda
    index = _cuda_index(device)
    _import_cupy().cuda.Device(index).use()
    _current_cuda = index


def cuda_current_device():
    return _current_cuda


def cuda_synchronize(device=None):
    """Wait until every kernel queued on the GPU has finished."""
    with _import_cupy().cuda.Device(_cuda_index(device)) as dev:
        dev.synchronize()


def cuda_device_name(device=None):
    name = _import_cupy().cuda.runtime.getDeviceProperties(_cuda_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else name


class Device:
    """A place where tensors live: ``Device("cpu")`` or ``Device("cuda:0")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"Expected a device string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {spec}")
        if idx:
            if index is not None:
                raise RuntimeError(f"device index given twice: {spec!r} and index={index}")
            index = int(idx)
        if kind == "cuda" and index is None:
            index = _current_cuda
        if kind == "cpu":
            index = None
        self.type, self.index = kind, index

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"


CPU = Device("cpu")


def as_device(device):
    """None means the default (CPU); strings and ints are parsed."""
    if device is None:
        return CPU
    if isinstance(device, Device):
        return device
    if isinstance(device, int):
        return Device("cuda", device)
    return Device(device)


class _GpuArrayModule:
    """CuPy as the ops' ``xp``: every attribute is CuPy's, except the matrix products,
    which go through distnn's own cuBLAS handle (``cublas.py``): CuPy refuses cuBLAS
    inside a CUDA-graph capture, and calls it with more Python per product."""

    __name__ = "cupy"

    def __init__(self, cupy):
        from . import cublas
        self._cupy = cupy
        self.matmul, self.dot = cublas.matmul, cublas.dot

    def __getattr__(self, name):
        value = getattr(self._cupy, name)
        setattr(self, name, value)  # found once; later lookups skip __getattr__
        return value


def _gpu_array_module():
    global _gpu_xp
    if _gpu_xp is None:
        _gpu_xp = _GpuArrayModule(_import_cupy())
    return _gpu_xp


def xp_for(device):
    """The array module serving ``device``."""
    device = as_device(device)
    if device.type == "cpu":
        return np
    return _gpu_array_module()


def array_module(array):
    """The array module an existing array belongs to (numpy fast path)."""
    if type(array) is np.ndarray or _cupy is None:
        return np
    return _gpu_array_module() if isinstance(array, _cupy.ndarray) else np


def is_gpu_array(obj):
    """True for a CuPy array (never imports CuPy to find out)."""
    return _cupy is not None and isinstance(obj, _cupy.ndarray)


_NDARRAY, _asarray = np.ndarray, np.asarray  # as_array runs in every op
_SCALARS = (np.generic, bool, int, float)


def as_array(result):
    """numpy returns 0-d results (full reductions, ``a[i, j]``, vector @ vector) as
    scalars (``np.float32``): those become 0-d arrays of the same dtype, as does a
    Python number. Arrays (numpy's, CuPy's) and anything else pass through."""
    if type(result) is _NDARRAY:
        return result
    return _asarray(result) if isinstance(result, _SCALARS) else result


def device_of(array):
    if type(array) is np.ndarray or not is_gpu_array(array):
        return CPU
    return Device("cuda", array.device.id)


_capture = threading.local()  # this thread is capturing a CUDA graph (distnn.cuda.graphs)


def set_capturing(flag):
    _capture.active = flag


def capturing():
    return getattr(_capture, "active", False)


def _refuse_copy_in_capture(what):
    raise RuntimeError(f"{what} inside a CUDA graph capture: a graph cannot replay a copy between host "
                       "and GPU (the host data would be stale or gone); make the tensor before the capture "
                       "and copy_ into it")


def move_to(array, device):
    """Copy ``array`` onto ``device`` (no copy when it is already there)."""
    device = as_device(device)
    if device.type == "cpu":
        if type(array) is np.ndarray:
            return array
        if _cupy is not None and isinstance(array, _cupy.ndarray):
            if capturing():
                _refuse_copy_in_capture("a GPU-to-host copy")
            return array.get()
        return np.asarray(array)
    cupy = _import_cupy()
    if capturing() and not isinstance(array, cupy.ndarray):
        _refuse_copy_in_capture("a host-to-GPU copy")
    with cupy.cuda.Device(device.index):
        return cupy.asarray(array)


def to_numpy(array):
    return move_to(array, CPU)


_copy_streams = {}  # device index -> the side stream GPU arrays are staged through


def _copy_stream(cupy, index):
    stream = _copy_streams.get(index)
    if stream is None:  # non-blocking: its copies overlap the legacy stream's kernels
        stream = _copy_streams[index] = cupy.cuda.Stream(non_blocking=True)
    return stream


def stage_to_host(array):
    """Start copying a GPU ``array`` into pinned host memory on a side stream, after
    the work queued on the current stream so far, and return at once: (the flat host
    array, a function that waits for the copy to land). A plain ``to_numpy`` waits for
    the GPU to finish everything queued before it, so the host could not queue more
    work meanwhile (DDP's buckets, launched during backward)."""
    cupy = _import_cupy()
    import cupyx
    with cupy.cuda.Device(array.device.id):
        source = cupy.ascontiguousarray(array).reshape(-1)
        host = cupyx.empty_pinned(source.shape, source.dtype)
        side = _copy_stream(cupy, array.device.id)
        side.wait_event(cupy.cuda.get_current_stream().record())
        try:
            source.get(stream=side, out=host, blocking=False)
        except TypeError:  # CuPy before 13: a copy on a given stream is asynchronous
            source.get(stream=side, out=host)
        landed = side.record()

    def wait():
        landed.synchronize()
        return source  # kept alive (and its memory out of the pool) until the copy landed
    return host, wait


def unstage_from_host(array, host):
    """Copy ``host`` (pinned, from ``stage_to_host``) back into the GPU ``array`` on the
    same side stream (after the copy out, so after the work queued before it) and wait
    for it, so ``host`` may be freed."""
    cupy = _import_cupy()
    with cupy.cuda.Device(array.device.id):
        side = _copy_stream(cupy, array.device.id)
        with side:
            array[...] = cupy.asarray(host.reshape(array.shape))
        side.synchronize()


def tune_host_allocator():
    """Keep freed multi-megabyte buffers in the heap instead of giving them back.

    glibc returns big freed blocks to the OS at once, so every training step
    page-faults its activations back in (thousands of faults per ConvNet step,
    over twice the time). Raising the mmap and trim thresholds keeps them for
    reuse. Skipped off glibc, when the user set any MALLOC_* variable, or with
    DISTNN_MALLOC_TUNING=0.
    """
    if not sys.platform.startswith("linux") or os.environ.get("DISTNN_MALLOC_TUNING", "1") == "0":
        return False
    if any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 << 20)  # glibc's ceiling on 64-bit
    ok &= mallopt(m_trim_threshold, 1 << 30)
    ok &= mallopt(m_top_pad, 64 << 20)
    return bool(ok)
