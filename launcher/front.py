"""The launcher is two processes, so that killing either one with SIGKILL
still takes the whole job down.

The *front* is the process the user started: it forks the *supervisor*,
forwards SIGINT/SIGTERM/SIGHUP to it, and exits with its status. The
supervisor runs the job (``launcher.job``) in its own session, as a child
subreaper, so every process of the job stays its descendant. If the front is
SIGKILLed, the kernel sends the supervisor ``FRONT_DIED`` (PR_SET_PDEATHSIG)
and it SIGKILLs everything at once; if the supervisor is SIGKILLed, its
workers get SIGKILL the same way, and the front SIGKILLs every process that
carries the job's marker.
"""

import os
import signal
import sys
import time
import traceback
import uuid

from . import job, process_tree
from .output import log

FRONT_DIED = signal.SIGUSR1


def launch(cfg):
    """Run the job; the launcher's exit status."""
    launch_id = uuid.uuid4().hex
    front_pid = os.getpid()
    supervisor = os.fork()  # before any thread exists: fork copies only the calling thread
    if supervisor == 0:
        _supervise(cfg, launch_id, front_pid)
    return _front(supervisor, launch_id)


def _supervise(cfg, launch_id, front_pid):  # pragma: no cover - runs in the forked child
    status = 1
    try:
        os.setsid()  # a terminal's Ctrl-C reaches the front only, which forwards it once
        status = job.run(cfg, launch_id, front_pid=front_pid, front_died=FRONT_DIED)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _front(supervisor, launch_id):
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
        return 1
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    killed = set()
    for _ in range(20):  # killing a process can orphan children that also carry the marker
        found = process_tree.kill_marked(launch_id, signal.SIGKILL)
        if not found:
            break
        killed.update(found)
        time.sleep(0.05)
    log(f"error: the launcher's supervisor process was killed by {signal.Signals(-code).name}; "
        f"SIGKILLed {len(killed)} process(es) of the job")
    return 128 - code
