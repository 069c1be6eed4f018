"""The launcher is three processes, so that killing any of them, or all, with
SIGKILL still takes the whole job down and leaves nothing behind.

The *front* is the process the user started: it sweeps what killed launchers
left, makes the job's workspace (``launcher.workspace``: a private temp folder
and, where cgroups work, the job's cgroup), forks the *supervisor* and the
*watchdog*, forwards SIGINT/SIGTERM/SIGHUP to the supervisor, removes the
workspace and exits with the supervisor's status. The supervisor joins the job
cgroup and runs the job (``launcher.job``) in its own session, as a child
subreaper, so every process of the job stays its descendant and in its cgroup.

- front SIGKILLed: the kernel sends the supervisor ``FRONT_DIED``
  (PR_SET_PDEATHSIG); it SIGKILLs everything at once and tears the workspace down;
- supervisor SIGKILLed: its workers get SIGKILL the same way, and the front
  kills the job cgroup and every process that carries the job's marker;
- both: the watchdog, in a session of its own, waits on both with pidfds and
  then does what the front would have done;
- all three: the next launcher started with the same temp folder does it
  (``launcher.workspace.sweep``).
"""

import os
import select
import signal
import sys
import tempfile
import traceback
import uuid

from . import job, workspace
from .output import log

FRONT_DIED = signal.SIGUSR1


def launch(cfg):
    """Run the job; the launcher's exit status."""
    launch_id = uuid.uuid4().hex
    front_pid = os.getpid()
    workspace.sweep()
    try:
        space = workspace.Workspace.create(launch_id)
    except OSError as e:
        log(f"error: Expect: a private folder in {tempfile.gettempdir()} (set TMPDIR to move it), Actual: {e}")
        return 1
    except ValueError as e:
        log(f"error: {e}")
        return 2
    supervisor = os.fork()  # before any thread exists: fork copies only the calling thread
    if supervisor == 0:
        _supervise(cfg, launch_id, front_pid, space)
    _start_watchdog(space, supervisor)
    return _front(supervisor, space)


def _supervise(cfg, launch_id, front_pid, space):  # pragma: no cover - runs in the forked child
    status = 1
    try:
        space.join_cgroup()  # first: every process the job starts is then born in it
        os.setsid()  # a terminal's Ctrl-C reaches the front only, which forwards it once
        status = job.run(cfg, launch_id, front_pid=front_pid, front_died=FRONT_DIED, workspace=space)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            if os.getppid() != front_pid:  # the front is gone: it will not remove the workspace
                space.tear_down()
        except BaseException:
            traceback.print_exc()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _start_watchdog(space, supervisor):
    """Fork the watchdog; None without pidfds (Linux < 5.3), when only the sweep
    covers the front and the supervisor both being killed."""
    fds = []
    try:
        fds.append(os.pidfd_open(supervisor))  # not reaped yet, so the pid is still the supervisor's
        fds.append(os.pidfd_open(os.getpid()))
        watchdog = os.fork()
    except (AttributeError, OSError):
        watchdog = None
    if watchdog == 0:
        _watch(space, fds)
    for fd in fds:
        os.close(fd)
    return watchdog


def _watch(space, fds):  # pragma: no cover - runs in the forked child
    """The watchdog: once the supervisor and the front are both gone, and the front
    did not get to remove the workspace, kill what is left of the job and remove it."""
    try:
        os.setsid()  # a signal to the front's process group (a terminal's, a test's) spares it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.chdir("/")  # holds no folder of the user's busy
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # whoever reads the launcher's output sees its end when the front exits
            os.dup2(null, fd)
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)  # a pidfd is readable once its process has exited
        waiting = len(fds)
        while waiting:
            for fd, _ in poller.poll():
                poller.unregister(fd)
                waiting -= 1
        if os.path.isdir(space.path):
            space.tear_down()
    finally:
        os._exit(0)


def _front(supervisor, space):
    def forward(signum, frame):
        try:
            os.kill(supervisor, signum)
        except ProcessLookupError:
            pass

    for signum in job.FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        _, status = os.waitpid(supervisor, 0)
    except ChildProcessError:
        space.tear_down()
        return 1
    code = os.waitstatus_to_exitcode(status)
    for signum in job.FORWARDED_SIGNALS:  # reaped: its pid may be a stranger's by now
        signal.signal(signum, signal.SIG_IGN)
    if code >= 0:
        space.remove()
        return code
    killed = space.tear_down()
    log(f"error: the launcher's supervisor process was killed by {signal.Signals(-code).name}; "
        f"SIGKILLed {len(killed)} process(es) of the job")
    return 128 - code
