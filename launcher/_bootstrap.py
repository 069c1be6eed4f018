"""Runs inside each worker, before the user's code: ties the worker's life to
the launcher's and reports an uncaught exception's traceback to the launcher.

The launcher starts ``python <this file> script.py args...`` (or ``-m module
args...``). This file then behaves like ``python script.py args...``:
``sys.argv``, ``sys.path[0]`` and ``__name__ == "__main__"`` are what the
script would see when run directly. Only the standard library is used, and
nothing is imported before ``sys.path[0]`` is fixed, so no file next to this
one can shadow a module the script imports. It is self-contained for the same
reason: ``launcher.process_tree`` borrows its ``prctl`` from here, not the
other way round.

An uncaught exception's traceback is written as JSON to ``$DISTNN_ERROR_FILE``
before ``sys.excepthook`` prints it, so a script that installs its own hook
still gets its hook and the launcher still gets the traceback.
"""

import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option, value):
    """prctl(2) on Linux; False elsewhere (or when it fails)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _script_path_entry(argv):
    """What ``sys.path[0]`` would be for ``python <argv>``: the script's directory, or the cwd for ``-m``."""
    import os
    if argv[0] == "-m":
        return os.getcwd()
    return os.path.dirname(os.path.realpath(argv[0]))


def _tie_to_launcher():
    """SIGKILL this worker when the launcher dies (PR_SET_PDEATHSIG). Set here, in
    the worker, rather than in a preexec_fn: preexec_fn is unsafe once the
    launcher runs its output thread. The launcher may have died before this line
    ran; then our parent is no longer the launcher and we leave at once."""
    import os
    import signal
    prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    launcher_pid = os.environ.get("DISTNN_LAUNCHER_PID")
    if launcher_pid is not None and os.getppid() != int(launcher_pid):
        os.kill(os.getpid(), signal.SIGKILL)


def _run_script(path):
    """Run a script file as ``__main__`` the way ``python path`` does: ``__file__``
    absolute (Python >= 3.9) while ``sys.argv[0]`` stays as typed (runpy.run_path
    would make both the same), and the script's module *is* ``sys.modules["__main__"]``
    for as long as it runs, so pickling and multiprocessing find its classes."""
    import builtins
    import io
    import os
    import types
    from importlib.machinery import SourceFileLoader
    path = os.path.abspath(path)
    with io.open_code(path) as f:
        code = compile(f.read(), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __cached__=None, __loader__=SourceFileLoader("__main__", path),
                         __builtins__=builtins)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _user_frames(tb):
    """Drop the bootstrap's and runpy's frames from the top of a traceback."""
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                              or tb.tb_frame.f_globals.get("__name__") == "runpy"):
        tb = tb.tb_next
    return tb


def _write_error_file(exc, tb):
    """The traceback as JSON, written atomically, for the launcher's summary."""
    import json
    import os
    import time
    import traceback
    path = os.environ.get("DISTNN_ERROR_FILE")
    if not path:
        return
    record = {"rank": os.environ.get("RANK"), "pid": os.getpid(), "timestamp": time.time(),
              "exc_type": type(exc).__qualname__, "message": str(exc),
              "traceback": "".join(traceback.format_exception(type(exc), exc, tb))}
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the launcher falls back to the last lines of stderr


def main():
    argv = sys.argv[1:]
    sys.path[0] = _script_path_entry(argv)
    _tie_to_launcher()
    try:
        if argv[0] == "-m":
            import runpy
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            _run_script(argv[0])
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = _user_frames(exc.__traceback__)
        exc.__traceback__ = tb  # the default hook prints the exception's own traceback
        _write_error_file(exc, tb)
        sys.excepthook(type(exc), exc, tb)
        sys.exit(1)


if __name__ == "__main__":
    main()
