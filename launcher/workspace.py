"""A job's footprint outside its processes: the launcher's private temp folder
``$TMPDIR/distnn-launcher-<front pid>-XXXXXX`` (0700; the run dir unless
--log-dir is given) with the workers' runtime dir inside it
(``DISTNN_RUNTIME_DIR``, where their ipc sockets go), and the job's cgroup
(``launcher.cgroup``).

The front makes all of it before it forks, and whichever launcher process
outlives the others takes it down (``tear_down``). Every launcher process
holds a lock on the folder for as long as it lives, so that a later launcher
can tell a folder whose launchers were all SIGKILLed (its front pid is gone
and nobody holds its lock) and ``sweep`` what is left of that job.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
import time

from . import process_tree
from .cgroup import KINDS, JobCgroup

CGROUP_VAR = "DISTNN_LAUNCHER_CGROUP"  # auto (default), v2, v1-freezer or none: which kinds may be used
PREFIX = "distnn-launcher-"
RUNTIME = "runtime"
_NAME = re.compile(rf"{PREFIX}(\d+)-\w+")
_RECORD = "job.json"  # what a sweep needs of a dead launcher's job: its marker and its cgroup


class Workspace:
    """One job's temp folder, runtime dir and cgroup (None where cgroups do not work)."""

    def __init__(self, path, lock_fd, launch_id, cgroup):
        self.path = path
        self.runtime_dir = os.path.join(path, RUNTIME)
        self.launch_id = launch_id
        self.cgroup = cgroup
        self._lock_fd = lock_fd

    @classmethod
    def create(cls, launch_id):
        """The front's workspace: folder, lock, runtime dir and (where cgroups work) the job cgroup."""
        kinds = cgroup_kinds()
        path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")  # mode 0700
        workspace = cls(path, None, launch_id, None)
        try:
            workspace._lock_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:  # the lock is shared with the launcher processes the front forks, and lasts as long as any
                fcntl.flock(workspace._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # no locks on this file system: a sweep still spares it while the front's pid runs
            os.mkdir(workspace.runtime_dir, 0o700)
            if kinds:
                workspace.cgroup = JobCgroup.create(os.path.basename(path), kinds)
            with open(os.path.join(path, _RECORD), "w") as f:
                json.dump({"launch_id": launch_id, "cgroup": workspace.cgroup and workspace.cgroup.path}, f)
        except BaseException:
            workspace.remove()
            raise
        return workspace

    def join_cgroup(self):
        """Move this process (the supervisor, before it starts anything) into the job cgroup;
        where that fails after all, drop the cgroup and rely on the other nets."""
        if self.cgroup is None:
            return
        try:
            self.cgroup.join()
        except OSError:
            self.cgroup.remove()
            self.cgroup = None

    def remove(self):
        """Remove the job cgroup (killing anything still in it) and the folder."""
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def tear_down(self):
        """After a launcher process was killed: SIGKILL whatever of the job is left, by
        its cgroup and by its marker, and remove it all. Returns the pids killed."""
        killed = set(self.cgroup.kill()) if self.cgroup is not None else set()
        rounds = 20 if self.launch_id else 0  # killing a process can orphan children that also carry the marker
        for _ in range(rounds):
            found = process_tree.kill_marked(self.launch_id, signal.SIGKILL)
            if not found:
                break
            killed.update(found)
            time.sleep(0.05)
        self.remove()
        return killed


def cgroup_kinds():
    """The cgroup kinds ``$DISTNN_LAUNCHER_CGROUP`` allows, best first."""
    value = os.environ.get(CGROUP_VAR, "auto")
    if value == "auto":
        return KINDS
    if value == "none":
        return ()
    if value not in KINDS:
        raise ValueError(f"Expect: {CGROUP_VAR} one of auto, {', '.join(KINDS)}, none, Actual: {value!r}")
    return (value,)


def sweep(directory=None):
    """Tear down what launchers that are all gone left in ``directory`` (default: the
    temp folder): folders of this user, named after a front pid that no longer
    runs, whose lock nobody holds. Returns the names of those swept."""
    directory = directory or tempfile.gettempdir()
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    swept = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None or process_tree.is_running(int(match.group(1))):
            continue
        stale = _claim(os.path.join(directory, name))
        if stale is not None:
            stale.tear_down()
            swept.append(name)
    return swept


def _claim(path):
    """The workspace at ``path`` with its lock taken, if it is this user's and no
    launcher process holds it; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError("not a folder this user's launcher made")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while any launcher process of it lives
        with open(os.open(_RECORD, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)) as f:
            record = json.load(f)
    except FileNotFoundError:
        record = {}  # killed before it wrote its record: nothing of the job ran yet
    except (OSError, ValueError):
        os.close(fd)
        return None
    if not isinstance(record, dict):
        record = {}
    cgroup = None
    if isinstance(record.get("cgroup"), str) and os.path.basename(record["cgroup"]) == os.path.basename(path):
        cgroup = JobCgroup.open(record["cgroup"])
    launch_id = record.get("launch_id")
    return Workspace(path, fd, launch_id if isinstance(launch_id, str) and launch_id else None, cgroup)
