"""``Work``: the handle of an asynchronous collective, as ``async_op=True`` returns."""

import threading

from ..futures import work_future
from .errors import DistributedTimeoutError


class Work:
    """Handle of an asynchronous collective, as returned with ``async_op=True``."""

    def __init__(self, description, default_timeout):
        self.description = description
        self._timeout = default_timeout
        self._done = threading.Event()
        self._error = None
        self._result = None
        self.outputs = []  # the collective's output tensors: what get_future() completes with

    def wait(self, timeout=None):
        timeout = self._timeout if timeout is None else seconds(timeout)
        if not self._done.wait(timeout):
            raise DistributedTimeoutError(f"{self.description} did not complete within {timeout:.1f}s")
        if self._error is not None:
            raise self._error
        return True

    def is_completed(self):
        return self._done.is_set()

    def is_success(self):
        return self._done.is_set() and self._error is None

    def exception(self):
        return self._error

    def result(self):
        self.wait()
        return self._result

    def get_future(self):
        """A ``distnn.futures.Future`` completing with the output tensors (a list) once
        this collective has, as torch's ``Work.get_future()``."""
        return work_future(self, self.outputs)

    def _finish(self, result=None, error=None):
        self._result, self._error = result, error
        self._done.set()


def seconds(timeout):
    """A timeout given as seconds or as a ``timedelta``, in seconds."""
    return timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
