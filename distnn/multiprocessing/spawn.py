"""``spawn`` and ``start_processes``: run ``fn(i, *args)`` in ``nprocs`` processes and
join them as ``torch.multiprocessing`` does. The first process to fail stops the
others (SIGTERM, then SIGKILL after a grace period), and its failure is raised in
the parent: ``ProcessRaisedException`` with the child's traceback when ``fn``
raised, ``ProcessExitedException`` with the exit code or the signal otherwise.

Each child reports its exception through a pipe of its own, which the parent
reads while it waits (a long traceback never blocks the child), so, unlike
PyTorch's error files, nothing is written to /tmp.
"""

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
import time
import traceback
import warnings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ProcessException(Exception):
    __slots__ = ["error_index", "error_pid"]

    def __init__(self, msg, error_index, error_pid):
        super().__init__(msg)
        self.msg = msg
        self.error_index = error_index
        self.error_pid = error_pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.error_pid)


class ProcessRaisedException(ProcessException):
    """Exception raised when a process failed due to an exception raised by the code."""


class ProcessExitedException(ProcessException):
    """Exception raised when a process failed due to signal or exited with a specific code."""

    __slots__ = ["exit_code"]

    def __init__(self, msg, error_index, error_pid, exit_code, signal_name=None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code = exit_code
        self.signal_name = signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.error_pid, self.exit_code, self.signal_name)


def _set_parent_death_signal(sig):
    """Have Linux send ``sig`` to this process when its parent dies (``prctl``), so a
    child does not outlive the process that would join it; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _wrap(fn, i, args, error_conn):
    _set_parent_death_signal(signal.SIGINT)
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass  # SIGINT: stopped by the parent (or its death), nothing to report
    except Exception:
        error_conn.send(traceback.format_exc())
        sys.exit(1)
    finally:
        error_conn.close()


class ProcessContext:
    """The processes ``start_processes`` started: ``pids()``, and ``join()`` until it returns True."""

    def __init__(self, processes, error_conns):
        self.processes = processes
        self.error_conns = error_conns
        self.sentinels = {process.sentinel: index for index, process in enumerate(processes)}
        self._unread = {conn: index for index, conn in enumerate(error_conns)}
        self._errors = [None] * len(processes)

    def pids(self):
        return [int(process.pid) for process in self.processes]

    def _read_error(self, index):
        conn = self.error_conns[index]
        if conn not in self._unread:
            return
        try:
            if conn.poll():
                self._errors[index] = conn.recv()
        except (EOFError, OSError):
            pass
        del self._unread[conn]
        conn.close()

    def _join_procs_with_timeout(self, timeout):
        """Attempt to join all processes with a shared timeout."""
        end = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(0, end - time.monotonic()))

    def join(self, timeout=None, grace_period=None):
        """Wait for a process to exit (at most ``timeout`` seconds). When one failed, stop the
        others (waiting ``grace_period`` seconds for them first, if given) and raise its error.

        Returns ``True`` if all processes have been joined successfully,
        ``False`` if there are more processes that need to be joined.
        """
        if not self.sentinels:
            return True
        ready = multiprocessing.connection.wait(list(self.sentinels) + list(self._unread), timeout=timeout)
        error_index = None
        for item in ready:
            if item in self._unread:
                self._read_error(self._unread[item])
        for item in ready:
            if item not in self.sentinels:
                continue
            index = self.sentinels.pop(item)
            process = self.processes[index]
            process.join()
            if process.exitcode != 0:
                error_index = index
                break
        if error_index is None:
            if not self.sentinels:
                for index in list(self._unread.values()):
                    self._read_error(index)
            return not self.sentinels
        self._stop_all(grace_period)
        self._raise(error_index)

    def _stop_all(self, grace_period):
        if grace_period is not None:
            self._join_procs_with_timeout(grace_period)
        for process in self.processes:
            if process.is_alive():
                log.warning("Terminating process %s via signal SIGTERM", process.pid)
                process.terminate()
        self._join_procs_with_timeout(30 if grace_period is None else grace_period)
        for process in self.processes:
            if process.is_alive():
                log.warning("Unable to shutdown process %s via SIGTERM , forcefully exiting via SIGKILL",
                            process.pid)
                process.kill()
            process.join()
        self.sentinels.clear()

    def _raise(self, error_index):
        for index in list(self._unread.values()):
            self._read_error(index)
        failed = self.processes[error_index]
        original_trace = self._errors[error_index]
        if original_trace is None:
            exitcode = failed.exitcode
            if exitcode < 0:
                try:
                    name = signal.Signals(-exitcode).name
                except ValueError:
                    name = f"<Unknown signal {-exitcode}>"
                raise ProcessExitedException(f"process {error_index:d} terminated with signal {name}",
                                             error_index=error_index, error_pid=failed.pid,
                                             exit_code=exitcode, signal_name=name)
            raise ProcessExitedException(f"process {error_index:d} terminated with exit code {exitcode:d}",
                                         error_index=error_index, error_pid=failed.pid, exit_code=exitcode)
        msg = f"\n\n-- Process {error_index:d} terminated with the following error:\n" + original_trace
        raise ProcessRaisedException(msg, error_index, failed.pid)


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Start ``nprocs`` processes with ``start_method`` running ``fn(i, *args)``; join them
    (None) or, with ``join=False``, return their ``ProcessContext``."""
    mp = multiprocessing.get_context(start_method)
    processes, error_conns = [], []
    try:
        for i in range(nprocs):
            reader, writer = mp.Pipe(duplex=False)
            error_conns.append(reader)
            process = mp.Process(target=_wrap, args=(fn, i, args, writer), daemon=daemon)
            try:
                process.start()
            finally:
                writer.close()  # the child's copy is the only one: its exit means end of file
            processes.append(process)
    except BaseException:
        for process in processes:
            process.kill()
            process.join()
        for conn in error_conns:
            conn.close()
        raise
    context = ProcessContext(processes, error_conns)
    if not join:
        return context
    while not context.join():
        pass


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Spawn ``nprocs`` processes that run ``fn(i, *args)`` (``fn`` defined at the top level
    of a module, so a spawned child can import it); see ``torch.multiprocessing.spawn``.

    Returns None if ``join`` is True, the ``ProcessContext`` otherwise.
    """
    if start_method != "spawn":
        msg = (f"This method only supports start_method=spawn (got: {start_method}).\n"
               "To use a different start_method use:\n\t\t"
               " torch.multiprocessing.start_processes(...)")
        warnings.warn(msg, FutureWarning, stacklevel=2)
    return start_processes(fn, args, nprocs, join, daemon, start_method="spawn")
