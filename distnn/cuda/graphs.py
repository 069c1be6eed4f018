"""CUDA graphs in the shape of ``torch.cuda.graphs``: ``CUDAGraph``, the ``graph``
context manager and ``make_graphed_callables``, on CuPy's stream capture.

A capture runs the Python once on a side stream and records the kernels it queues;
``replay`` relaunches them all in one call, on the same device addresses. Those
addresses stay valid because everything the capture allocates comes from the
graph's private CuPy memory pool, which nothing outside the capture draws from.
What cannot be replayed raises instead of being frozen into the graph: a host
synchronisation (``.item()``, ``bool(t)``) or a host-to-device copy (random
numbers are drawn on the host) inside the capture, and an optimizer whose step
depends on host values that change per step (Adam's bias corrections). As in
PyTorch, warm the work up on a side stream before capturing it (kernels compile
and optimizer state is created on first use), and after capture feed a graph by
copying into its static input tensors.
"""

from contextlib import contextmanager

from .. import backend, cublas

__all__ = ["CUDAGraph", "graph", "graph_pool_handle", "is_current_stream_capturing", "make_graphed_callables"]

_CAPTURE_MODES = ("global", "thread_local", "relaxed")


class GraphCaptureError(RuntimeError):
    """Work inside a capture that a CUDA graph cannot record."""


def graph_pool_handle():
    """A memory pool several graphs can share (``pool=`` of ``graph``/``capture_begin``)."""
    return backend._import_cupy().cuda.MemoryPool()


def is_current_stream_capturing():
    return backend.capturing()


class CUDAGraph:
    """A captured sequence of GPU work, replayed with ``replay()``."""

    def __init__(self, keep_graph=False):
        self._graph = None
        self._pool = None
        self._capture = None  # (side stream, allocator context, caller's stream) while capturing

    def capture_begin(self, pool=None, capture_error_mode="global", stream=None):
        """Start recording this thread's GPU work. Every mode records the same kernels;
        distnn captures in CUDA's relaxed mode whatever is asked, since CuPy's pool may
        call cudaMalloc mid-capture, which the stricter modes refuse. A host
        synchronisation fails the capture in every mode."""
        if capture_error_mode not in _CAPTURE_MODES:
            raise ValueError(f"capture_error_mode must be one of {', '.join(_CAPTURE_MODES)}, "
                             f"got {capture_error_mode!r}")
        if self._graph is not None or self._capture is not None:
            raise RuntimeError("This CUDAGraph already holds a capture; call reset() before capturing again")
        cupy = backend._import_cupy()
        cublas.prepare()  # the cuBLAS handle and its workspace exist before the capture starts
        caller = cupy.cuda.get_current_stream()
        side = stream.cupy_stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        side.wait_event(caller.record())
        self._pool = pool if pool is not None else cupy.cuda.MemoryPool()
        allocator = cupy.cuda.using_allocator(self._pool.malloc)
        side.__enter__()
        allocator.__enter__()
        try:
            side.begin_capture(cupy.cuda.runtime.streamCaptureModeRelaxed)
        except BaseException:
            allocator.__exit__(None, None, None)
            side.__exit__(None, None, None)
            raise
        self._capture = (side, allocator, caller)
        backend.set_capturing(True)

    def capture_end(self):
        if self._capture is None:
            raise RuntimeError("capture_end() without capture_begin()")
        side, allocator, caller = self._capture
        self._capture = None
        backend.set_capturing(False)
        try:
            self._graph = side.end_capture()
        finally:
            allocator.__exit__(None, None, None)
            side.__exit__(None, None, None)
        caller.wait_event(side.record())

    def _abandon(self):
        """End a capture that failed part-way; its partial graph is dropped."""
        if self._capture is None:
            return
        try:
            self.capture_end()
        except Exception:  # an invalidated capture refuses to end cleanly: nothing to keep
            pass
        self._graph = None

    def replay(self):
        """Launch the captured work on the current stream."""
        if self._graph is None:
            raise RuntimeError("CUDAGraph.replay(): nothing has been captured (use distnn.cuda.graph(g) "
                               "or capture_begin()/capture_end() first)")
        self._graph.launch(stream=backend._import_cupy().cuda.get_current_stream())

    def reset(self):
        """Drop the captured graph and its claim on the memory pool."""
        self._graph = None
        self._pool = None

    def pool(self):
        return self._pool

    def debug_dump(self, path):
        if self._graph is None:
            raise RuntimeError("CUDAGraph.debug_dump(): nothing has been captured")
        with open(path, "w") as f:
            f.write(self._graph.debug_dot_str())


class graph:
    """``with distnn.cuda.graph(g): ...`` captures the block's GPU work into ``g``."""

    def __init__(self, cuda_graph, pool=None, stream=None, capture_error_mode="global"):
        self.cuda_graph, self.pool, self.stream, self.mode = cuda_graph, pool, stream, capture_error_mode

    def __enter__(self):
        backend.cuda_synchronize()  # as PyTorch: nothing queued before the capture runs inside it
        self.cuda_graph.capture_begin(self.pool, self.mode, self.stream)
        return self.cuda_graph

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.cuda_graph.capture_end()
            return False
        self.cuda_graph._abandon()
        if _is_capture_violation(exc):
            raise GraphCaptureError(
                "the captured block did GPU work a CUDA graph cannot record (a host synchronisation such "
                "as .item(), bool(tensor) or .cpu(), or a host-to-device copy): " + str(exc)) from exc
        return False


def _is_capture_violation(exc):
    text = str(exc)
    return "captur" in text.lower() and "CUDAGraph" not in type(exc).__name__


@contextmanager
def _side_stream():
    """Run a block on a fresh stream that first waits for the current one, and make
    the current one wait for the block (PyTorch's warm-up recipe)."""
    cupy = backend._import_cupy()
    caller = cupy.cuda.get_current_stream()
    side = cupy.cuda.Stream(non_blocking=True)
    side.wait_event(caller.record())
    with side:
        yield
    caller.wait_event(side.record())


def make_graphed_callables(callables, sample_args, num_warmup_iters=3, allow_unused_input=False, pool=None):
    """Graphed versions of ``callables`` (functions or Modules): each call replays one
    captured forward graph and its backward replays one captured backward graph.

    Every later call must pass tensors of the sample's shapes, dtypes, devices and
    requires_grad (it raises otherwise); outputs are the graph's static tensors, which
    the next call overwrites. A Module comes back with its ``forward`` replaced while it
    is in the training mode it was captured in."""
    from .graphed import graph_callable
    single = not isinstance(callables, tuple)
    if single:
        callables, sample_args = (callables,), (sample_args,)
    if len(callables) != len(sample_args):
        raise ValueError(f"make_graphed_callables: {len(callables)} callables but {len(sample_args)} "
                         "tuples of sample args")
    results = tuple(graph_callable(fn, args if isinstance(args, tuple) else (args,), num_warmup_iters,
                                   allow_unused_input, pool, _side_stream)
                    for fn, args in zip(callables, sample_args))
    return results[0] if single else results
