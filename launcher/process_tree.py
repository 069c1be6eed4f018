"""Finding and killing a job's processes, wherever they went, without ever
signalling a process that is not the job's.

Three nets, because each misses something the others catch:
- every worker leads its own process group, and the group is signalled, so
  ordinary children (a DataLoader worker, a subprocess) go with it;
- every worker's environment carries ``DISTNN_LAUNCH_ID=<this job>``,
  inherited by descendants that left the group (``setsid``, daemons);
- the supervisor is a child subreaper, so orphans of dead workers (even ones
  in their own session with a scrubbed environment) are reparented to it,
  not to init, and it kills them.
Where cgroups work, the job's cgroup (``launcher.cgroup``) holds all of it
too, and catches what these miss once the supervisor itself is gone.

Process ids get reused. A worker's pid is safe to use as a process-group id
only while the worker is unreaped (see ``launcher.workers``); any other pid
found in /proc is signalled through a pidfd, after checking that the pidfd's
process still is the one we meant.
"""

import os
import signal
from collections import namedtuple

from ._bootstrap import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl

LAUNCH_ID_VAR = "DISTNN_LAUNCH_ID"

Proc = namedtuple("Proc", "state ppid pgid")


def set_parent_death_signal(signum):
    """Have the kernel send ``signum`` when the thread that forked this process exits (Linux only)."""
    return prctl(PR_SET_PDEATHSIG, int(signum))


def become_subreaper():
    """Orphaned descendants get reparented to this process instead of init (Linux only)."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def signal_group(pgid, signum):
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return Proc(fields[0].decode(), int(fields[1]), int(fields[2]))
    except (OSError, IndexError, ValueError):
        return None


def processes():
    """A snapshot of every process: {pid: Proc(state, ppid, pgid)} (empty where there is no /proc)."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return {}
    table = {}
    for pid in pids:
        proc = _stat(pid)
        if proc is not None:
            table[pid] = proc
    return table


def has_marker(pid, launch_id):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{LAUNCH_ID_VAR}={launch_id}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def marked(launch_id, table):
    """Live (non-zombie) processes of the snapshot that carry this job's marker."""
    me = os.getpid()
    return [pid for pid, proc in table.items()
            if pid != me and proc.state != "Z" and has_marker(pid, launch_id)]


def children(table, exclude=()):
    """Live children of this process in the snapshot (for the subreaper: adopted orphans)."""
    me = os.getpid()
    return [pid for pid, proc in table.items() if proc.ppid == me and pid not in exclude and proc.state != "Z"]


def is_running(pid):
    """Whether process ``pid`` exists and has not exited (a zombie has); True where that cannot be told."""
    if pid <= 0:
        return True  # not a process id: never take it for a dead one
    proc = _stat(pid)
    if proc is not None:
        return proc.state != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def is_child(pid):
    """Whether ``pid`` is (still) a child of this process."""
    proc = _stat(pid)
    return proc is not None and proc.ppid == os.getpid()


def reap_zombie_children(table, exclude=()):
    """Collect adopted orphans that already died, so they do not linger as zombies."""
    me = os.getpid()
    for pid, proc in table.items():
        if proc.ppid == me and proc.state == "Z" and pid not in exclude:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def signal_if(pid, signum, still_ours):
    """Signal ``pid`` only if ``still_ours(pid)`` holds for the process a pidfd pins down."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None  # no pidfds here (old kernel): check and signal by pid
    try:
        if not still_ours(pid):
            return
        if fd is None:
            os.kill(pid, signum)
        else:
            signal.pidfd_send_signal(fd, signum)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if fd is not None:
            os.close(fd)


def marked_processes(launch_id):
    return marked(launch_id, processes())


def kill_marked(launch_id, signum):
    """Signal every live process that carries the marker; their pids."""
    pids = marked_processes(launch_id)
    for pid in pids:
        signal_if(pid, signum, lambda p: has_marker(p, launch_id))
    return pids
