"""``torch.cuda.Stream``, ``torch.cuda.Event``, ``torch.cuda.stream`` and
``torch.cuda.current_stream`` over CuPy's streams and events: what PyTorch's CUDA-graph
recipe uses to warm up on a side stream, and what times GPU work without a host wait."""

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

    def record_event(self, event=None):
        """Record ``event`` (a new one if None) on this stream and return it."""
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        """Work queued on this stream from now on waits for ``event``."""
        self.cupy_stream.wait_event(event.cupy_event)

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


class Event:
    """A CUDA event: a marker in a stream that the host or other streams can wait for,
    and, with ``enable_timing``, time against another (``elapsed_time``, in ms)."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        cupy = backend._import_cupy()
        if interprocess and enable_timing:
            raise ValueError("an interprocess CUDA event cannot have enable_timing=True")
        self.enable_timing = enable_timing
        self.cupy_event = cupy.cuda.Event(block=blocking, disable_timing=not enable_timing,
                                          interprocess=interprocess)
        self._recorded = False

    def record(self, stream=None):
        stream = current_stream() if stream is None else stream
        self.cupy_event.record(stream.cupy_stream)
        self._recorded = True

    def wait(self, stream=None):
        (current_stream() if stream is None else stream).wait_event(self)

    def query(self):
        return self.cupy_event.done

    def synchronize(self):
        self.cupy_event.synchronize()

    def elapsed_time(self, end_event):
        """Milliseconds between this event and ``end_event``, both recorded and complete."""
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if not (self._recorded and end_event._recorded):
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return backend._import_cupy().cuda.get_elapsed_time(self.cupy_event, end_event.cupy_event)

    def __repr__(self):
        return f"<distnn.cuda.Event {self.cupy_event.ptr:#x}>"
