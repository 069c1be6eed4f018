"""The job's cgroup: the supervisor joins it before it starts anything, so every
process of the job is in it wherever it went (its own session, an empty
environment, reparented to init), and killing the cgroup kills the whole job
even when the supervisor is gone.

Two kinds, tried in this order, each only where it actually works here (a
child of this process's own cgroup can be made, and has the control file the
kill needs):
- cgroup v2 with ``cgroup.kill`` (Linux 5.14+): one write kills every member;
- the cgroup v1 freezer: freeze (nobody can fork while frozen), SIGKILL every
  member, thaw.
Neither (no cgroups mounted, none writable by this user): ``create`` returns
None and the launcher relies on its other nets (``launcher.process_tree``).
"""

import os
import signal
import time

V2 = "v2"
V1_FREEZER = "v1-freezer"
KINDS = (V2, V1_FREEZER)
_KILL_FILE = {V2: "cgroup.kill", V1_FREEZER: "freezer.state"}
_POLL = 0.01


def _unescape(field):
    """/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field


def _mounts():
    """[(fstype, root inside the hierarchy, mount point, super options)] of every cgroup mount."""
    mounts = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return mounts
    for line in lines:
        fields = line.split()
        try:
            dash = fields.index("-")
            fstype, options = fields[dash + 1], fields[dash + 3]
        except (ValueError, IndexError):
            continue
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fstype, _unescape(fields[3]), _unescape(fields[4]), options.split(",")))
    return mounts


def _memberships():
    """{hierarchy: this process's cgroup path}, from /proc/self/cgroup; "" is the v2 hierarchy."""
    found = {}
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                found[controller] = parts[2]
    return found


def parents():
    """[(kind, folder of this process's own cgroup)] for each kind mounted here, best first."""
    memberships = _memberships()
    found = []
    for kind, fstype, key in ((V2, "cgroup2", ""), (V1_FREEZER, "cgroup", "freezer")):
        path = memberships.get(key)
        if path is None:
            continue
        for mount_fstype, root, mount_point, options in _mounts():
            if mount_fstype != fstype or (key and key not in options):
                continue
            if root != "/" and not (path == root or path.startswith(root + "/")):
                continue  # our cgroup lies outside this mount (another cgroup namespace's view)
            relative = path[len(root):] if root != "/" else path
            found.append((kind, os.path.join(mount_point, relative.lstrip("/"))))
            break
    return found


class JobCgroup:
    """One job's cgroup folder, of kind ``V2`` or ``V1_FREEZER``."""

    def __init__(self, kind, path):
        self.kind = kind
        self.path = path

    def __repr__(self):
        return f"JobCgroup({self.kind!r}, {self.path!r})"

    @classmethod
    def create(cls, name, kinds=KINDS):
        """A new empty cgroup ``name``, a child of this process's own cgroup; None
        where no kind of ``kinds`` works here (the probe: make one, check its files)."""
        for kind, parent in parents():
            if kind not in kinds:
                continue
            path = os.path.join(parent, name)
            try:
                os.mkdir(path)
            except OSError:
                continue
            job = cls(kind, path)
            if all(os.access(os.path.join(folder, "cgroup.procs"), os.W_OK) for folder in (path, parent)) \
                    and os.path.exists(os.path.join(path, _KILL_FILE[kind])):
                return job
            job.remove()
        return None

    @classmethod
    def open(cls, path):
        """The job cgroup recorded at ``path`` (by a launcher that died); None unless it
        still is a cgroup folder of a known kind."""
        for kind in KINDS:
            if os.path.isfile(os.path.join(path, _KILL_FILE[kind])) and \
                    os.path.isfile(os.path.join(path, "cgroup.procs")):
                return cls(kind, path)
        return None

    def _write(self, name, value, folder=None):
        with open(os.path.join(folder or self.path, name), "w") as f:
            f.write(value)

    def join(self):
        """Move this process into the cgroup; its children to come are born in it."""
        self._write("cgroup.procs", str(os.getpid()))

    def pids(self):
        """The processes in the cgroup itself (not in cgroups below it); [] once it is gone."""
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(pid) for pid in f.read().split()]
        except OSError:
            return []

    def _populated(self):
        if self.kind != V2:
            return bool(self.pids())
        try:
            with open(os.path.join(self.path, "cgroup.events")) as f:
                return "populated 1" in f.read().splitlines()
        except OSError:
            return False

    def kill(self, timeout=5.0):
        """SIGKILL every process in the cgroup, and in cgroups below it, and wait up to
        ``timeout`` seconds for them to be gone. This process moves out first if it
        is a member. Returns the pids that were in it."""
        me = os.getpid()
        members = self.pids()
        deadline = time.monotonic() + timeout
        try:
            if me in members:
                self._write("cgroup.procs", str(me), folder=os.path.dirname(self.path))
                members.remove(me)
            if self.kind == V2:
                self._write("cgroup.kill", "1")
            else:
                self._kill_frozen(deadline)
        except OSError:  # gone already, or not ours to kill: the other nets still run
            return members
        while self._populated() and time.monotonic() < deadline:
            time.sleep(_POLL)
        return members

    def _kill_frozen(self, deadline):
        """The v1 way: a frozen process cannot fork, and its pid cannot be reused
        while it is frozen, so every pid read from cgroup.procs is safe to kill."""
        while self.pids() and time.monotonic() < deadline:
            self._write("freezer.state", "FROZEN")
            while self._read_state() == "FREEZING" and time.monotonic() < deadline:
                time.sleep(_POLL)
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._write("freezer.state", "THAWED")  # the SIGKILLs take effect on thawing
            time.sleep(_POLL)

    def _read_state(self):
        try:
            with open(os.path.join(self.path, "freezer.state")) as f:
                return f.read().strip()
        except OSError:
            return None

    def remove(self):
        """Remove the (empty) cgroup and any below it; True once it is gone."""
        for folder, subfolders, _ in os.walk(self.path, topdown=False):
            try:
                os.rmdir(folder)  # cgroupfs removes a cgroup's control files with it
            except OSError:
                pass  # gone already, or still busy (a member the kill could not end): nothing more to do
        return not os.path.exists(self.path)
