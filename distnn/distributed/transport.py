"""Point-to-point messaging between ranks over ZeroMQ.

Each rank binds one PULL socket (``ipc://`` for peers on the same host, and
``tcp://`` for the others) and connects one PUSH socket to every peer. ZeroMQ
keeps each sender's messages in order, so arriving messages are sorted into
per-(group, sender, channel) queues and a receiver takes the next one from the
peer it expects. Every receive validates the header against what this rank
expects, honours the group timeout, notices same-host peers that died, and
turns an abort notice from any peer into an error here. All sockets belong to
the one communication thread.
"""

import errno
import os
import socket
import sys
import time
from collections import deque

import numpy as np
import zmq

from .._process import process_running
from . import wire
from .errors import DistributedError, DistributedTimeoutError

ZERO_COPY_MIN = 64 * 1024  # below this, copying the payload is cheaper than tracking it
_SOCKET_BUFFER = 4 * 1024 * 1024
_LIVENESS_CHECK_S = 0.5


class OutOfOrderMessage(DistributedError):
    """A peer's message belongs to another collective than the one this rank is in."""

    def __init__(self, header, message):
        super().__init__(message)
        self.header = header


def host_identity():
    """Hostname plus boot id: equal only for processes that can share ipc:// sockets."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _log(message):
    print(f"[distnn] {message}", file=sys.stderr, flush=True)


def private_directory(path):
    """Create (or reuse) a 0700 directory owned by this user for the job's ipc sockets;
    refuse one that another user created first."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise DistributedError(f"{path} belongs to another user or is open to others (owner uid "
                               f"{info.st_uid}, mode {oct(info.st_mode & 0o777)}); set DISTNN_JOB_TOKEN "
                               "to a secret so the job gets a private socket folder")
    return path


class Transport:
    def __init__(self, context, rank, world_size, job, bind_host, ipc_dir):
        self.rank, self.world_size, self.job = rank, world_size, job
        self._context = context
        self._pull = context.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.setsockopt(zmq.RCVBUF, _SOCKET_BUFFER)
        self._pull.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        self.ipc_endpoint = f"ipc://{ipc_dir}/{rank}.sock"
        self._ipc_path = f"{ipc_dir}/{rank}.sock"
        for attempt in range(3):
            try:
                private_directory(ipc_dir)
                self._pull.bind(self.ipc_endpoint)
                break
            except (zmq.ZMQError, FileNotFoundError) as exc:
                # The last rank of a previous world with this job id removes the folder
                # on its way out, and may do so just before we bind: make it again.
                if exc.errno != errno.ENOENT or attempt == 2:
                    raise
        port = self._pull.bind_to_random_port(f"tcp://{bind_host}")
        self.tcp_endpoint = f"tcp://{bind_host}:{port}"
        self._push = {}
        self._peer_pids = {}
        self._queues = {}
        self._aborted = None

    # --- setup ------------------------------------------------------------------
    def endpoint_info(self):
        return {"host": host_identity(), "ipc": self.ipc_endpoint, "tcp": self.tcp_endpoint,
                "pid": os.getpid()}

    def connect(self, members):
        """Open a PUSH socket to every peer; ``members[r]`` is rank r's ``endpoint_info``."""
        mine = host_identity()
        for peer, info in enumerate(members):
            if peer == self.rank:
                continue
            sock = self._context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.SNDBUF, _SOCKET_BUFFER)
            same_host = info["host"] == mine
            sock.connect(info["ipc"] if same_host else info["tcp"])
            self._push[peer] = sock
            if same_host:
                self._peer_pids[peer] = info["pid"]

    def close(self, linger=0):
        """Close every socket; ``linger`` ms lets queued messages to peers still leave."""
        for sock in self._push.values():
            sock.close(linger=linger)
        self._pull.close(linger=0)
        for remove in (os.unlink, os.rmdir):  # the last rank out also removes the job's folder
            try:
                remove(self._ipc_path if remove is os.unlink else os.path.dirname(self._ipc_path))
            except OSError:
                pass

    # --- sending --------------------------------------------------------------------
    def send(self, dst, header, payload):
        """Send header + payload; returns a tracker for a zero-copy payload, else None.
        The caller must not modify ``payload`` until the tracker is done."""
        if payload is None or payload.nbytes < ZERO_COPY_MIN:
            self._push[dst].send_multipart([header, b"" if payload is None else payload.tobytes()],
                                           copy=True)
            return None
        return self._push[dst].send_multipart([header, payload.reshape(-1).view(np.uint8)],
                                              copy=False, track=True)

    def broadcast_abort(self, reason):
        """Best effort: tell every peer this rank failed, without ever blocking."""
        frame = wire.encode_abort(self.job, self.rank, reason)
        for sock in self._push.values():
            try:
                sock.send_multipart([frame, b""], flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    # --- receiving --------------------------------------------------------------------
    def recv(self, group, src, channel, expect, timeout, describe, watch=None):
        """The next message from ``src`` on (group, channel), validated against ``expect``
        (a dict with op, seq, dtype, shape, nbytes, seg). Returns the payload frame.
        ``watch()``, when given, runs whenever the wait finds nothing for a while, and
        raises to end it."""
        if self._aborted:
            raise DistributedError(self._aborted)
        queue = self._queues.get((group, src, channel))
        deadline = time.monotonic() + timeout
        while not queue:
            self._pump(deadline, timeout, describe, [src], watch)
            queue = self._queues.get((group, src, channel))
        header, payload = queue.popleft()
        if header["seq"] != expect["seq"] or header["seg"] != expect["seg"]:
            raise OutOfOrderMessage(
                header, f"rank {self.rank}: out-of-order message from rank {src}: got {header['op']} "
                f"sequence {header['seq']} segment {header['seg']}, expected {expect['op']} sequence "
                f"{expect['seq']} segment {expect['seg']} (ranks called collectives in different orders)")
        wire.check_expected(header, expect, self.rank)
        if len(payload) != expect["nbytes"]:
            raise DistributedError(f"rank {self.rank}: rank {src} announced {expect['nbytes']} bytes but "
                                   f"sent {len(payload)}")
        return payload

    def has_message(self, group, src, channel):
        """Whether a message from ``src`` on (group, channel) has been received."""
        return bool(self._queues.get((group, src, channel)))

    def take(self, group, srcs, channel):
        """(src, header, payload) of a message already received from one of ``srcs``, or None."""
        for src in srcs:
            queue = self._queues.get((group, src, channel))
            if queue:
                header, payload = queue.popleft()
                return src, header, payload
        return None

    def wait_readable(self, timeout_ms):
        """Block until a message arrives or ``timeout_ms`` passes."""
        self._pull.poll(timeout_ms)

    def drain(self):
        """Sort every message that has already arrived into its queue, without waiting."""
        if self._aborted:
            raise DistributedError(self._aborted)
        while self._pull.poll(0):
            self._accept(self._pull.recv_multipart(copy=False))

    def recv_any(self, group, channel, srcs, timeout, describe):
        """(src, header, payload) of the first message on (group, channel) from any of ``srcs``."""
        deadline = time.monotonic() + timeout
        while True:
            for src in srcs:
                queue = self._queues.get((group, src, channel))
                if queue:
                    header, payload = queue.popleft()
                    return src, header, payload
            self._pump(deadline, timeout, describe, srcs)

    def _pump(self, deadline, timeout, describe, waiting_for, watch=None):
        """Receive at least one message (or fail): sort it into its queue."""
        while True:
            if self._aborted:
                raise DistributedError(self._aborted)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DistributedTimeoutError(
                    f"rank {self.rank}: timed out after {timeout:.1f}s in {describe} waiting for "
                    f"rank(s) {sorted(waiting_for)}")
            if self._pull.poll(min(remaining, _LIVENESS_CHECK_S) * 1000):
                frames = self._pull.recv_multipart(copy=False)
                if self._accept(frames):
                    return
            else:
                self.check_alive(waiting_for, describe)
                if watch is not None:
                    watch()

    def _accept(self, frames):
        if len(frames) != 2:
            _log(f"rank {self.rank}: dropped a message with {len(frames)} frames on the data port")
            return False
        try:
            header = wire.decode_header(frames[0].bytes, self.job, self.world_size)
        except wire.MalformedMessage as exc:
            _log(f"rank {self.rank}: dropped a malformed message on the data port: {exc}")
            return False
        if header["op"] == wire.ABORT_OP:
            self._aborted = f"rank {self.rank}: rank {header['src']} failed: {header['dtype']}"
            raise DistributedError(self._aborted)
        channel = "p2p" if header["op"] == "send" else "coll"
        key = (header["grp"], header["src"], channel)
        self._queues.setdefault(key, deque()).append((header, frames[1].buffer))
        return True

    def check_alive(self, ranks, describe):
        """Raise if a same-host peer among ``ranks`` has exited (a zombie counts as exited)."""
        for r in ranks:
            pid = self._peer_pids.get(r)
            if pid is not None and not process_running(pid):
                self._aborted = (f"rank {self.rank}: rank {r} (pid {pid}) exited while this rank was "
                                 f"waiting for it in {describe}")
                raise DistributedError(self._aborted)
