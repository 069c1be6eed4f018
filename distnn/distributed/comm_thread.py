"""The communication thread: runs a world's collectives one at a time in submission
order, owns its sockets while it does, and completes posted point-to-point receives
whenever their messages arrive. A failure there is broadcast to every peer."""

import queue
import threading
import time

from .errors import DistributedError, DistributedTimeoutError

LINGER_MS = 5000  # closing waits this long for queued messages to leave


class CommThread:
    """Runs collectives in submission order. Sockets are used by one thread at a
    time, under ``_lock``: this thread for asynchronous work, or the caller itself
    for a synchronous collective when nothing asynchronous is pending (which
    saves two thread hand-offs per call).

    Point-to-point receives are *posted*: they wait on the side while later work
    runs, and complete whenever their message arrives, so ``irecv`` followed by
    ``isend`` or a barrier never deadlocks (as with torch's backends)."""

    _POSTED_POLL_MS = 1  # while receives are posted, how often newly submitted work is looked at

    def __init__(self, world):
        self._world = world
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._posted = []  # (work, attempt, deadline): attempt() -> True once complete
        self._thread = threading.Thread(target=self._loop, name="distnn-comm", daemon=True)
        self._thread.start()

    def submit(self, work, fn):
        with self._lock:
            self._pending += 1
        self._queue.put((work, fn, False))

    def post(self, work, attempt):
        """Queue a receive that completes when ``attempt()`` finds its message."""
        with self._lock:
            self._pending += 1
        self._queue.put((work, attempt, True))

    def run_inline(self, fn):
        """Run ``fn`` on this thread and return True if nothing is queued, else return False."""
        with self._lock:
            if self._pending:
                return False
            if self._world.broken is not None:
                raise self._broken_error()
            try:
                fn()
            except Exception as exc:  # every peer hears of it too
                self._world.fail(exc)
                raise
            return True

    def stop(self):
        self._queue.put(None)
        self._thread.join(timeout=LINGER_MS / 1000 + 5)

    def _loop(self):
        while True:
            if self._posted:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    with self._lock:  # wakes as soon as a message lands, or to check the queue
                        self._world.transport.wait_readable(self._POSTED_POLL_MS)
                    item = ()
            else:
                item = self._queue.get()
            if item is None:
                return
            with self._lock:
                if item:
                    work, fn, posted = item
                    if posted:
                        self._posted.append((work, fn, time.monotonic() + self._world.timeout))
                    else:
                        self._execute(work, fn)
                        self._pending -= 1
                if self._posted:
                    self._service_posted()

    def _service_posted(self):
        try:
            self._world.transport.drain()
        except Exception as exc:
            for work, _, _ in self._posted:
                work._finish(error=exc)
            self._pending -= len(self._posted)
            self._posted.clear()
            return
        still = []
        for work, attempt, deadline in self._posted:
            try:
                if attempt():
                    work._finish(result=work._result)
                elif time.monotonic() > deadline:
                    raise DistributedTimeoutError(f"{work.description} timed out after "
                                                  f"{self._world.timeout:.1f}s")
                else:
                    still.append((work, attempt, deadline))
                    continue
            except Exception as exc:
                self._world.fail(exc)
                work._finish(error=exc)
            self._pending -= 1
        self._posted = still

    def _broken_error(self):
        return DistributedError(f"{self._world.broken} (earlier failure; this process group can no longer be used)")

    def _execute(self, work, fn):
        if self._world.broken is not None:
            work._finish(error=self._broken_error())
            return
        try:
            work._finish(result=fn())
        except Exception as exc:  # handed to the waiting thread, and to every peer
            self._world.fail(exc)
            work._finish(error=exc)


