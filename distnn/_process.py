"""Whether a process still runs, for cleaning up after one that was killed (stale
checkpoint temp files, shared-memory regions) and for noticing a dead peer."""

import os


def process_state(pid):
    """The state letter of ``pid`` in /proc (R, S, D, T for stopped, t for traced, Z), or
    None when it is gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def process_running(pid):
    """False once ``pid`` has exited, even while it waits unreaped as a zombie."""
    state = process_state(pid)
    if state is not None:
        return state not in ("Z", "X")
    if os.path.isdir("/proc"):
        return False
    try:  # no /proc (not Linux): ask the kernel directly
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
