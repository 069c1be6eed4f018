"""Shared-memory staging for collectives among ranks on one host.

Sockets copy every byte into the kernel and out again, which caps a ring at the
speed of one stream. Ranks that share a host can instead read each other's data
directly: each rank owns, per process group, one region in /dev/shm (two halves,
used alternately by successive steps) that its peers map read-only in spirit. The
bulk data moves by memcpy and the reduction reads peers' halves in place, while
ZeroMQ still carries the small signals that order the steps, so mismatched
collectives, timeouts and dead peers are caught exactly as on the socket path.

The region files are created 0600 by their owner and checked for owner and mode by
every peer. The owner unlinks its file as soon as every peer has mapped it (after
the first collective that used it) or the group fails, so only a process killed
in that short window leaves a file behind; the next region created on the host
removes such files once their owner (the pid in the name) is gone.
"""

import errno
import mmap
import os
import re

import numpy as np

from .._process import process_running
from .errors import DistributedError

SHM_DIR = "/dev/shm"
HALF_BYTES = 4 << 20  # one step stages at most this much per rank; a region holds two


def available():
    """Whether this process can use shared memory (``DISTNN_SHM=0`` turns it off)."""
    if os.environ.get("DISTNN_SHM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


class _Region:
    """One rank's region mapped into this process."""

    def __init__(self, path, create):
        self.path = path
        nbytes = 2 * HALF_BYTES
        if create:
            fd = _create_exclusive(path)
        else:
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except OSError as exc:
                raise DistributedError(f"cannot open peer's shared memory {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if create:
                _reserve(fd, path, nbytes)
            elif info.st_uid != os.getuid() or info.st_mode & 0o077 or info.st_size != nbytes:
                raise DistributedError(f"shared memory {path} is not a peer's region: owner uid {info.st_uid}, "
                                       f"mode {oct(info.st_mode & 0o777)}, {info.st_size} bytes; expected uid "
                                       f"{os.getuid()}, mode 0o600, {nbytes} bytes")
            self._map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.bytes = np.frombuffer(self._map, np.uint8)

    def half(self, parity, dtype, count):
        start = parity * HALF_BYTES
        return self.bytes[start:start + count * dtype.itemsize].view(dtype)

    def close(self):
        self.bytes = None
        try:
            self._map.close()
        except BufferError:  # a view is still alive somewhere: the mapping goes with it
            pass


_NAME = re.compile(r"distnn-[0-9a-f]{16}-\d+-\d+-\d+-(\d+)$")


def remove_orphans():
    """Unlink this user's region files whose owner process no longer runs."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return
    for name in names:
        match = _NAME.match(name)
        if match and not process_running(int(match.group(1))):
            path = os.path.join(SHM_DIR, name)
            try:
                if os.stat(path, follow_symlinks=False).st_uid == os.getuid():
                    os.unlink(path)
            except OSError:
                pass


def _create_exclusive(path):
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:  # left by a killed process of an earlier job with the same name
        try:
            os.unlink(path)
            return os.open(path, flags, 0o600)
        except OSError as exc:
            raise DistributedError(f"shared memory {path} exists and cannot be replaced: {exc.strerror}; "
                                   "set DISTNN_SHM=0 to use sockets only") from None


def _reserve(fd, path, nbytes):
    """Claim the pages now: a tmpfs that fills up later would kill us with SIGBUS."""
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        os.unlink(path)
        hint = (f"{SHM_DIR} has no room for {nbytes} more bytes" if exc.errno == errno.ENOSPC
                else f"cannot size {path}: {exc.strerror}")
        raise DistributedError(f"shared memory: {hint}; enlarge it or set DISTNN_SHM=0 to use sockets "
                               "only") from None


class SharedMemoryGroup:
    """The regions of one process group's members, mapped lazily, alternating halves."""

    def __init__(self, job_hex, generation, group_id, members, rank):
        """``members``: (global rank, pid) of each group member, in group-rank order."""
        self.rank = rank
        self.paths = [os.path.join(SHM_DIR, f"distnn-{job_hex}-{generation}-{group_id}-{g}-{pid}")
                      for g, pid in members]
        self._regions = [None] * len(members)
        self._parity = 0
        self._own_linked = False
        self.steps_done = 0  # staging steps completed; peers have mapped our region after the first

    def half_elems(self, itemsize):
        return HALF_BYTES // itemsize

    def next_parity(self):
        """Successive steps alternate halves: a peer announcing step k+1 has finished
        reading step k, so the half of step k+2 (the same as k's) is free to write."""
        self._parity ^= 1
        return self._parity

    def own(self, parity, dtype, count):
        if self._regions[self.rank] is None:
            remove_orphans()
            self._regions[self.rank] = _Region(self.paths[self.rank], create=True)
            self._own_linked = True
        return self._regions[self.rank].half(parity, dtype, count)

    def peer(self, member, parity, dtype, count):
        if self._regions[member] is None:
            self._regions[member] = _Region(self.paths[member], create=False)
        return self._regions[member].half(parity, dtype, count)

    def unlink(self):
        """Remove our region's name: every peer has mapped it, or the group failed."""
        if self._own_linked:
            self._own_linked = False
            _unlink(self.paths[self.rank])

    def close(self):
        self.unlink()
        for region in self._regions:
            if region is not None:
                region.close()
        self._regions = [None] * len(self._regions)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
