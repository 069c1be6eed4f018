"""Shared-memory regions of the ranks of one host: one file per rank and process
group in /dev/shm, holding two staging halves (used alternately by successive
steps) and a signal word with two slots, written by its owner and read by peers.
A signal is a count, the collective's sequence number, a fingerprint of its op,
dtype and shape, and its full message header for error reports; posting one
wakes sleepers with a futex. ``shm.py`` says how collectives use them.

The signal relies on x86's memory model (stores become visible to other cores
in program order) and Linux futexes; elsewhere the socket messages order the
steps. Spinning needs a core per rank, so groups larger than this process's
cores never spin.

The region files are created 0600 by their owner and checked for owner and mode by
every peer. The owner unlinks its file as soon as every peer has mapped it (after
the first collective that used it) or the group fails, so only a process killed
in that short window leaves a file behind; the next region created on the host
removes such files once their owner (the pid in the name) is gone.
"""

import ctypes
import errno
import functools
import mmap
import os
import platform
import re
import time

import numpy as np

from .._process import process_running
from .errors import DistributedError

SHM_DIR = "/dev/shm"
HALF_BYTES = 4 << 20  # one step stages at most this much per rank; a region holds two
# After the two halves, the owner's signal: the count of signals posted, then per
# parity of the count a slot of (sequence number, fingerprint, header length, header).
_SLOT_BYTES = 2048
SIGNAL_BYTES = 64 + 2 * _SLOT_BYTES
REGION_BYTES = 2 * HALF_BYTES + SIGNAL_BYTES
DEFAULT_SPIN_US = 1000
WAKE_CHECK_S = 0.05  # a sleeping waiter checks for aborts, dead peers and timeouts this often


def available():
    """Whether this process can use shared memory (``DISTNN_SHM=0`` turns it off)."""
    if os.environ.get("DISTNN_SHM", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK | os.X_OK)


class _Region:
    """One rank's region mapped into this process."""

    def __init__(self, path, create):
        self.path = path
        nbytes = REGION_BYTES
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
        self.signal = self.bytes[2 * HALF_BYTES:].view(np.int64)

    def half(self, parity, dtype, count):
        start = parity * HALF_BYTES
        return self.bytes[start:start + count * dtype.itemsize].view(dtype)

    def close(self):
        self.bytes = self.signal = None
        try:
            self._map.close()
        except BufferError:  # a view is still alive somewhere: the mapping goes with it
            pass


_NAME = re.compile(r"distnn-[0-9a-f]{16}-\d+-\d+-\d+-(\d+)$")


def spin_seconds(ranks):
    """How long a rank spins on a peer's signal before sleeping: ``DISTNN_SHM_SPIN_US``,
    but never when the group has more ranks than this process may use cores (a
    spinning rank would take the core of the peer it waits for)."""
    raw = os.environ.get("DISTNN_SHM_SPIN_US", str(DEFAULT_SPIN_US)).strip()
    try:
        micros = float(raw)
    except ValueError:
        micros = -1
    if not micros >= 0:
        raise DistributedError(f"DISTNN_SHM_SPIN_US must be a number of microseconds >= 0, got {raw!r}")
    return micros / 1e6 if ranks <= len(os.sched_getaffinity(0)) else 0.0


class _Futex:
    """FUTEX_WAIT / FUTEX_WAKE on a 32-bit word of a shared mapping, through libc's syscall()."""

    _SYS_FUTEX = 202  # x86_64
    _WAIT, _WAKE = 0, 1

    class _Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def __init__(self):
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long

    def wait(self, address, expected, seconds):
        """Sleep while the word at ``address`` holds ``expected``, at most ``seconds``."""
        ts = self._Timespec(int(seconds), int(seconds % 1 * 1e9))
        self._syscall(ctypes.c_long(self._SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(self._WAIT),
                      ctypes.c_int(expected), ctypes.byref(ts), None, ctypes.c_int(0))

    def waker(self, address):
        """A call that wakes every sleeper on the word at ``address``, its arguments built once
        (building them took most of a post)."""
        return functools.partial(self._syscall, ctypes.c_long(self._SYS_FUTEX), ctypes.c_void_p(address),
                                 ctypes.c_int(self._WAKE), ctypes.c_int(0x7FFFFFFF), None, None, ctypes.c_int(0))


def _futex():
    """The futex, where signals are safe: Linux on x86-64 (in-order stores); else None.
    ``DISTNN_SHM_SIGNAL=0`` keeps the socket messages."""
    if os.environ.get("DISTNN_SHM_SIGNAL", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        return _Futex()
    except (OSError, AttributeError):
        return None


def signals_available():
    """Whether this process can order shared-memory steps by signals (every rank of a
    group must, or none uses them: the rendezvous compares)."""
    return _futex() is not None


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

    def __init__(self, job_hex, generation, group_id, members, rank, signals):
        """``members``: (global rank, pid) of each group member, in group-rank order;
        ``signals``: whether every member can use signals."""
        self.rank = rank
        self.paths = [os.path.join(SHM_DIR, f"distnn-{job_hex}-{generation}-{group_id}-{g}-{pid}")
                      for g, pid in members]
        self._regions = [None] * len(members)
        self._parity = 0
        self._own_linked = False
        self.steps_done = 0  # staging steps completed; peers have mapped our region after the first
        self._futex = _futex() if signals else None
        self.spin_s = spin_seconds(len(members)) if self._futex else 0.0
        self._posted = 0  # signals written to our region
        self._wake = None  # FUTEX_WAKE on our count word, once our region exists
        self._slot_headers = [None, None]  # the header each slot holds (rewritten only when it changes)
        self.signal_ids = {}  # (op, dtype, shape) -> (fingerprint, header) of this group's signals

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

    @property
    def signals(self):
        """Whether steps are ordered by signals (after the first, which maps every region)."""
        return self._futex is not None and self.steps_done > 0

    def post(self, seq, fingerprint, header):
        """Signal that this rank reached its next step; returns the signal's count. The
        count is written last: a peer that sees it sees the data and slot before it.
        ``header`` (its sequence number aside) is written only when the slot holds another."""
        count = self._posted + 1
        region = self._regions[self.rank]
        words, start = _slot(count)
        signal = region.signal
        signal[words] = seq
        signal[words + 1] = fingerprint
        parity = count & 1
        if header != self._slot_headers[parity]:
            if len(header) > _SLOT_BYTES - 24:
                raise DistributedError(f"a message header of {len(header)} bytes does not fit a "
                                       "shared-memory signal")
            signal[words + 2] = len(header)
            region.bytes[start:start + len(header)] = np.frombuffer(header, np.uint8)
            self._slot_headers[parity] = header
        self._posted = count
        signal[0] = count
        if self._wake is None:
            self._wake = self._futex.waker(signal.ctypes.data)
        self._wake()
        return count

    def reached(self, member, count):
        return self._regions[member].signal[0] >= count

    def latest_signal(self, member, seq):
        """The header of ``member``'s latest signal when it is for collective ``seq`` and
        newer than ours (``member`` staged that collective and waits for us), else None."""
        signal = self._regions[member].signal
        count = int(signal[0])
        if count <= self._posted:
            return None
        words, start = _slot(count)
        if int(signal[words]) != seq:
            return None
        return self._read_header(member, words, start)

    def wait(self, member, count, check):
        """Wait until ``member`` posts signal ``count``; returns its (sequence number,
        fingerprint); ``signal_header`` reads its header. ``check()`` runs after each sleep
        and raises to give up. A peer is at most one signal ahead (it waits for ours
        before its next), so its slot for ``count`` is intact even when its count has moved on."""
        region = self._regions[member]
        signal = region.signal
        if signal[0] < count and self.spin_s:
            clock = time.perf_counter
            deadline = clock() + self.spin_s
            while signal[0] < count and clock() < deadline:
                pass
        while True:
            seen = int(signal[0])
            if seen >= count:
                break
            self._futex.wait(signal.ctypes.data, ctypes.c_int32(seen & 0xFFFFFFFF).value, WAKE_CHECK_S)
            if signal[0] < count:
                check()
        words = _slot(count)[0]
        return int(signal[words]), int(signal[words + 1])

    def signal_header(self, member, count):
        """The header in ``member``'s slot for signal ``count`` (for naming a mismatch)."""
        return self._read_header(member, *_slot(count))

    def _read_header(self, member, words, start):
        region = self._regions[member]
        length = min(max(int(region.signal[words + 2]), 0), _SLOT_BYTES - 24)
        return region.bytes[start:start + length].tobytes()

    def unlink(self):
        """Remove our region's name: every peer has mapped it, or the group failed."""
        if self._own_linked:
            self._own_linked = False
            _unlink(self.paths[self.rank])

    def close(self):
        self.unlink()
        self._wake = None
        for region in self._regions:
            if region is not None:
                region.close()
        self._regions = [None] * len(self._regions)


def _slot(count):
    """(first int64 word, first header byte) of the signal slot for ``count``, in the region."""
    offset = 64 + (count & 1) * _SLOT_BYTES
    return offset // 8, 2 * HALF_BYTES + offset + 24


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
