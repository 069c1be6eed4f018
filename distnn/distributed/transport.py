"""Point-to-point messaging between ranks over ZeroMQ.

Each rank binds one PULL socket (``ipc://`` for peers on the same host, and
``tcp://`` for the others) and connects one PUSH socket to every peer. ZeroMQ
keeps each sender's messages in order, so arriving messages are sorted into
per-(group, sender, channel) queues and a receiver takes the next one from the
peer it expects. Every receive validates the header against what this rank
expects, honours the group timeout, notices same-host peers that died, and
turns an abort notice from any peer into an error here. A peer is "on the same
host" only if its ipc socket file is visible here (``locality``); peers watched
by pid are those of one kernel and pid namespace, the others through their
connection (``liveness``). All sockets belong to the one communication thread.

A connection to the data port is admitted only if it proves the job's secret
(see ``auth``); the ipc socket lives in a fresh 0700 folder of its own.
"""

import os
import re
import tempfile
import time
from collections import deque

import numpy as np
import zmq

from .._process import process_running, process_state
from . import auth, liveness, locality, network, wire
from .errors import DistributedError, DistributedTimeoutError

ZERO_COPY_MIN = 64 * 1024  # below this, copying the payload is cheaper than tracking it
_SOCKET_BUFFER = 4 * 1024 * 1024
_LIVENESS_CHECK_S = 0.5
_ABORT_GRACE_S = 0.3  # how long a dead peer's abort notice may still be on its way
_REMOTE_GRACE_S = 1.0  # the same for a peer on another host, whose notice crosses the network
_HANDSHAKE_MS = 10_000  # a connection that has not authenticated by then is dropped
_IPC_PREFIX = "distnn-ipc-"
_MAX_SOCKET_PATH = 107
_IPC_NAME = re.compile(re.escape(_IPC_PREFIX) + r"(\d+)-[A-Za-z0-9_]+$")


class OutOfOrderMessage(DistributedError):
    """A peer's message belongs to another collective than the one this rank is in."""

    def __init__(self, header, message):
        super().__init__(message)
        self.header = header


def ipc_directory(runtime_dir=None):
    """A fresh private (0700, random name) folder for this rank's ipc socket, under
    ``runtime_dir`` (the launcher's private folder, $DISTNN_RUNTIME_DIR) or the temp
    folder; folders that earlier ranks of this user left behind (killed before they
    could remove them) are swept first. Nothing in its name grants anything: peers
    learn the path from the store and must still prove the job's credential."""
    base = runtime_dir or os.environ.get("DISTNN_RUNTIME_DIR") or tempfile.gettempdir()
    if len(os.path.join(base, f"{_IPC_PREFIX}{os.getpid()}-12345678", "65535.sock")) > _MAX_SOCKET_PATH:
        base = "/tmp"  # a deep TMPDIR: a unix socket's path holds at most 107 bytes
    sweep_ipc_directories(base)
    return tempfile.mkdtemp(prefix=f"{_IPC_PREFIX}{os.getpid()}-", dir=base)


def sweep_ipc_directories(base):
    """Remove this user's ipc folders in ``base`` whose rank (the pid in the name) is gone."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        match = _IPC_NAME.match(name)
        if match is None or process_running(int(match.group(1))):
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            for entry in os.listdir(path):
                os.unlink(os.path.join(path, entry))
            os.rmdir(path)
        except OSError:
            pass  # another rank swept it first, or it is not ours to remove


class Transport:
    def __init__(self, context, rank, world_size, bind_host, runtime_dir=None, local_rank=0):
        self.rank, self.world_size = rank, world_size
        self.tcp_only = network.force_tcp()  # settings first: a bad one leaves no socket behind
        self._watch = liveness.PeerWatch(network.heartbeat_timeout())
        self.job = None  # known once the rendezvous has told this rank the job's secret
        self._password = None
        self._context = context
        self.drops = auth.DropLog(f"rank {rank}: ")
        self._pull = context.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.setsockopt(zmq.RCVHWM, 0)
        self._pull.setsockopt(zmq.RCVBUF, _SOCKET_BUFFER)
        self._pull.setsockopt(zmq.MAXMSGSIZE, wire.MAX_FRAME_BYTES)
        self._pull.setsockopt(zmq.HANDSHAKE_IVL, _HANDSHAKE_MS)
        auth.configure_server(self._pull)
        self._zap = auth.ZapHandler(context, self.drops, self._pull)
        ipc_dir = ipc_directory(runtime_dir)
        self._ipc_path = os.path.join(ipc_dir, f"{rank}.sock")
        self.ipc_endpoint = f"ipc://{self._ipc_path}"
        self._pull.bind(self.ipc_endpoint)
        self._push = {}
        self.routes = {}  # peer -> the endpoint this rank sends to it on
        self._peer_pids = {}
        self._heard = {}  # peer -> messages accepted from it (to tell a departed peer from a dead one)
        try:
            self.tcp_endpoint = network.bind_data_port(self._pull, bind_host, local_rank)
        except BaseException:
            self.close()
            raise
        self._queues = {}
        self._aborted = None
        self._left = set()  # peers whose leave notice arrived

    def authenticate(self, job, secret):
        """Admit peers that prove the job's secret, and prove it to them."""
        self.job = job
        self._password = auth.credential(secret, job)
        self._zap.admit(self._password)

    # --- setup ------------------------------------------------------------------
    def endpoint_info(self):
        return dict(locality.facts(self._ipc_path, self.tcp_only), ipc=self.ipc_endpoint, tcp=self.tcp_endpoint,
                    pid=os.getpid())

    def connect(self, members):
        """Open a PUSH socket to every peer; ``members[r]`` is rank r's ``endpoint_info``.
        A peer is reached over ipc only when its socket file is visible here, else over
        TCP; it is watched by pid where its pid means something here, else through the
        connection (heartbeats)."""
        mine = members[self.rank]
        for peer, info in enumerate(members):
            if peer == self.rank:
                continue
            sock = self._context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.SNDBUF, _SOCKET_BUFFER)
            auth.configure_client(sock, self._password)
            by_pid = locality.same_kernel_pids(mine, info)
            if not by_pid:
                self._watch.configure(sock)
            ipc = locality.ipc_reachable(mine, info, info["ipc"][len("ipc://"):])
            endpoint = info["ipc"] if ipc else info["tcp"]
            if not by_pid:
                self._watch.watch(peer, sock, endpoint, info["host"].split("/")[0])
            sock.connect(endpoint)
            self._push[peer] = sock
            self.routes[peer] = endpoint
            if by_pid:
                self._peer_pids[peer] = info["pid"]

    def close(self, linger=0, gone=()):
        """Close every socket; ``linger`` ms lets queued messages to peers still leave
        (except to the peers in ``gone``, which will never take them)."""
        self._watch.close()
        for peer, sock in self._push.items():
            sock.close(linger=0 if peer in gone else linger)
        self._pull.disable_monitor()
        self._pull.close(linger=0)
        self._zap.close()
        self.drops.flush()
        for remove, path in ((os.unlink, self._ipc_path), (os.rmdir, os.path.dirname(self._ipc_path))):
            try:
                remove(path)
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
        self._notify_all(wire.encode_abort(self.job, self.rank, reason))

    def leave(self, seconds):
        """Tell every peer this rank is closing its world, after every message it sent them
        (a peer still waiting for more from it is told so at once), then wait at most
        ``seconds`` for the peers' own notices. Returns the peers that left or died: they
        need nothing more from this rank, and their sockets may be closed without
        lingering (a notice queued to a peer that has closed would hold ``close`` for the
        whole linger). Ranks that close together thus finish at once."""
        self._announce_leaving()
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.drain()
            except DistributedError:  # an abort notice: its sender has gone too
                pass
            gone = {peer for peer in self._push if peer in self._left or self._dead(peer)}
            if len(gone) == len(self._push) or time.monotonic() >= deadline:
                return gone
            self._poll(max(min(deadline - time.monotonic(), 0.05), 0) * 1000)

    def _announce_leaving(self):
        self._notify_all(wire.encode_abort(self.job, self.rank, "left", op=wire.LEAVE_OP))

    def _dead(self, peer):
        pid = self._peer_pids.get(peer)
        return (pid is not None and not process_running(pid)) or self._watch.lost(peer) is not None

    def _notify_all(self, frame):
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
            self._raise_if_left([src], describe)
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
        self._poll(timeout_ms)

    def _poll(self, timeout_ms):
        """Whether a message is ready to receive, waiting at most ``timeout_ms``."""
        return self._pull.poll(timeout_ms)

    def _receive(self):
        """The frames of the next message (header, payload), once ``_poll`` said one is ready."""
        return self._pull.recv_multipart(copy=False)

    def drain(self):
        """Sort every message that has already arrived into its queue, without waiting."""
        if self._aborted:
            raise DistributedError(self._aborted)
        while self._poll(0):
            self._accept(self._receive())

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
                    f"rank(s) {sorted(waiting_for)}{self.stopped_peers()}")
            if self._poll(min(remaining, _LIVENESS_CHECK_S) * 1000):
                if self._accept(self._receive()):
                    return
            else:
                self.check_alive(waiting_for, describe)
                if watch is not None:
                    watch()

    def _accept(self, frames):
        if len(frames) != 2:
            self.drops.drop("message(s) with the wrong number of frames on the data port", f"{len(frames)} frames")
            return False
        try:
            header = wire.decode_header(frames[0].bytes, self.job, self.world_size)
        except wire.MalformedMessage as exc:
            self.drops.drop("malformed message(s) on the data port", str(exc))
            return False
        if header["op"] == wire.ABORT_OP:
            self._aborted = f"rank {self.rank}: rank {header['src']} failed: {header['dtype']}"
            raise DistributedError(self._aborted)
        if header["op"] == wire.LEAVE_OP:
            self._left.add(header["src"])
            return True
        self._heard[header["src"]] = self._heard.get(header["src"], 0) + 1
        channel = "p2p" if header["op"] == "send" else "coll"
        key = (header["grp"], header["src"], channel)
        self._queues.setdefault(key, deque()).append((header, frames[1].buffer))
        return True

    def check_alive(self, ranks, describe):
        """Raise if a peer among ``ranks`` is gone: a same-host one that exited (a zombie
        counts as exited), or one elsewhere whose connection broke or never came up. A peer
        that failed sends its abort notice before it exits: that, when it arrives within a
        moment, is the better error. A peer elsewhere whose messages still arrive in that
        moment is not failed yet: it may have finished normally after sending them."""
        self._raise_if_left(ranks, describe)
        for r in ranks:
            pid = self._peer_pids.get(r)
            if pid is not None and not process_running(pid):
                self._await_notice(_ABORT_GRACE_S)
                self._aborted = (f"rank {self.rank}: rank {r} (pid {pid}) exited while this rank was "
                                 f"waiting for it in {describe}")
                raise DistributedError(self._aborted)
            why = self._watch.lost(r)
            if why is not None:
                heard = self._heard.get(r, 0)
                self._await_notice(_REMOTE_GRACE_S)
                if self._heard.get(r, 0) != heard:
                    return
                self._aborted = (f"rank {self.rank}: rank {r} is dead or unreachable while this rank was "
                                 f"waiting for it in {describe}: {why}")
                raise DistributedError(self._aborted)

    def _raise_if_left(self, ranks, describe):
        """A peer that closed its world (its leave notice came after all it ever sent) will
        send nothing more: waiting for it would last until the timeout."""
        gone = sorted(set(ranks) & self._left)
        if gone:
            raise DistributedError(f"rank {self.rank}: rank {gone[0]} left the process group (destroy_process_group "
                                   f"or exit) while this rank was waiting for it in {describe}")

    def _await_notice(self, seconds):
        """Sort what arrives within ``seconds`` (an abort notice raises)."""
        deadline = time.monotonic() + seconds
        while self._poll(max(deadline - time.monotonic(), 0) * 1000):
            self.drain()

    def stopped_peers(self):
        """'; rank 2 (pid N) is stopped (state T)' for same-host peers that a signal stopped:
        the rank everyone ends up waiting for, whichever neighbour a rank waits on."""
        stopped = [f"rank {r} (pid {pid}) is stopped (state {state}) and makes no progress"
                   for r, pid in sorted(self._peer_pids.items()) if (state := process_state(pid)) in ("T", "t")]
        return "; " + "; ".join(stopped) if stopped else ""
