"""``torch.cuda.Stream``, ``torch.cuda.stream`` and ``torch.cuda.current_stream`` over
CuPy's streams: what PyTorch's CUDA-graph recipe uses to warm up on a side stream."""

from contextlib import contextmanager

from .. import backend


class Stream:
    """A CUDA stream of the current GPU (non-blocking with respect to the default one)."""

    def __init__(self, device=None, priority=0, _cupy_stream=None):
        cupy = backend._import_cupy()
        if _cupy_stream is None:
            with cupy.cuda.Device(backend.cuda_current_device() if device is None
                                  else backend.as_device(device).index):
                _cupy_stream = cupy.cuda.Stream(non_blocking=True, priority=priority)
        self.cupy_stream = _cupy_stream

    @property
    def cuda_stream(self):
        return self.cupy_stream.ptr

    def wait_stream(self, other):
        """Work queued on this stream from now on waits for what ``other`` has queued so far."""
        self.cupy_stream.wait_event(other.cupy_stream.record())

    def synchronize(self):
        self.cupy_stream.synchronize()

    def query(self):
        return self.cupy_stream.done

    def __eq__(self, other):
        return isinstance(other, Stream) and other.cupy_stream.ptr == self.cupy_stream.ptr

    def __hash__(self):
        return hash(self.cupy_stream.ptr)

    def __repr__(self):
        return f"<distnn.cuda.Stream cuda_stream={self.cuda_stream:#x}>"


def current_stream(device=None):
    """The stream CuPy queues work on now in this thread."""
    cupy = backend._import_cupy()
    if device is None:
        return Stream(_cupy_stream=cupy.cuda.get_current_stream())
    with cupy.cuda.Device(backend.as_device(device).index):
        return Stream(_cupy_stream=cupy.cuda.get_current_stream())


@contextmanager
def stream(s):
    """Queue the block's GPU work on ``s`` (``None`` leaves the current stream)."""
    if s is None:
        yield
        return
    with s.cupy_stream:
        yield
