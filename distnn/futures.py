"""``distnn.futures``: ``Future`` as ``torch.futures.Future`` (``wait``, ``value``,
``then``, ``done``, ``set_result``, ``add_done_callback``), ``collect_all`` and
``wait_all``, and ``work_future``, the Future of an asynchronous collective.

A Future made by ``then`` (or by ``work_future``) is resolved *lazily*, by the
first ``wait()`` on it or on a Future chained after it, on the waiting thread.
torch runs ``then`` callbacks on its communication threads; here collectives
must be issued in the same order on every rank from the program's own thread,
so a callback that issues one (PowerSGD's do) runs where the program waits, in
the order it waits. ``done()`` never runs a callback.
"""

import threading

__all__ = ["Future", "collect_all", "wait_all", "work_future"]


class Future:
    """The eventual value of an asynchronous computation."""

    def __init__(self, *, devices=None):
        self._settled = threading.Event()
        self._lock = threading.RLock()
        self._value = None
        self._error = None
        self._compute = None  # lazily resolved futures: () -> value, run by the first wait()
        self._ready = None  # () -> True once _compute would return without blocking or issuing work
        self._callbacks = []

    # --- completing ----------------------------------------------------------------
    def set_result(self, result):
        """Complete with ``result``; a Future is completed once only (RuntimeError after)."""
        self._settle(result, None, by_user=True)

    def set_exception(self, result):
        """Complete with an exception, which ``wait()`` and ``value()`` raise."""
        if not isinstance(result, BaseException):
            raise TypeError(f"Expect: an exception, Actual: {type(result).__name__}")
        self._settle(None, result, by_user=True)

    def _settle(self, value, error, by_user=False):
        with self._lock:
            if self._settled.is_set():
                if by_user:
                    raise RuntimeError("Future can only be marked completed once.")
                return
            self._value, self._error = value, error
            self._settled.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def _resolve(self):
        """Run the deferred computation, if any and not yet run (settling this Future)."""
        with self._lock:
            compute, self._compute = self._compute, None
        if compute is None:
            return
        try:
            value = compute()
        except Exception as exc:  # the Future holds it: wait() and value() raise it
            self._settle(None, exc)
        else:
            self._settle(value, None)

    # --- reading -------------------------------------------------------------------
    def done(self):
        """Whether the value (or error) is available without blocking."""
        if not self._settled.is_set() and self._compute is not None and self._ready is None:
            return False
        if not self._settled.is_set() and self._ready is not None and self._ready():
            self._resolve()  # a source future (no callback of the user's runs here)
        return self._settled.is_set()

    def wait(self):
        """Block until complete and return the value (raising the Future's error, if any)."""
        self._resolve()
        self._settled.wait()
        return self.value()

    def value(self):
        """The value of a completed Future; raises its error, or RuntimeError when not complete."""
        if not self.done():
            raise RuntimeError("Future.value() called before the Future completed: call wait() first")
        if self._error is not None:
            raise self._error
        return self._value

    # --- chaining ------------------------------------------------------------------
    def then(self, callback):
        """A new Future holding ``callback(self)`` once this one completes (its error, if the
        callback raises). The callback runs when the new Future is first waited for."""
        child = Future()

        def compute():
            self._resolve()
            self._settled.wait()
            return callback(self)
        child._compute = compute
        return child

    def add_done_callback(self, callback):
        """Run ``callback(self)`` when this Future completes (now, if it has)."""
        with self._lock:
            if not self._settled.is_set():
                self._callbacks.append(callback)
                return
        callback(self)


def work_future(work, value):
    """A Future completing with ``value`` once ``work`` (a ``Work`` of an ``async_op=True``
    collective, or anything with ``wait()`` and ``is_completed()``) has: what torch's
    ``work.get_future()`` gives, e.g. ``work_future(work, [tensor])``. ``work=None`` (a
    collective that already ran) gives a completed Future."""
    future = Future()
    if work is None:
        future.set_result(value)
        return future

    def compute():
        work.wait()
        return value
    future._compute = compute
    future._ready = work.is_completed
    return future


def collect_all(futures):
    """A Future completing with the list of ``futures`` once all have (torch.futures.collect_all)."""
    futures = list(futures)
    combined = Future()

    def compute():
        for f in futures:
            f._resolve()
            f._settled.wait()
        return futures
    combined._compute = compute
    return combined


def wait_all(futures):
    """Wait for every Future and return their values in order (raising the first error)."""
    return [f.wait() for f in futures]
