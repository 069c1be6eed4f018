"""The launchers' own meeting for multi-node jobs (standard library only).

Node 0's launcher listens on ``--master-port``; every other launcher connects,
proves it belongs to the job, and keeps the connection as the control channel
for the whole job: one JSON object per line, ``{"type": ..., ...}``.

Handshake: node 0 sends ``hello`` (a nonce), the joiner answers ``join``
(its node rank, --nnodes, --workers, and, when ``DISTNN_JOB_TOKEN`` is fixed
on every node, an HMAC of the nonce under it, so the token never crosses the
wire); node 0 answers ``accepted`` or ``reject``. When all nodes are in, node
0 drives the attempts (see ``launcher.job``). Without a fixed token, node 0
makes one per attempt and sends it in ``start``: anyone who can reach the
port during the meeting could join, so export the same DISTNN_JOB_TOKEN on
every node on networks you do not trust.
"""

import hashlib
import hmac
import json
import secrets
import selectors
import socket
import time

_MAX_MESSAGE = 1 << 22
_RETRY = 0.2  # seconds between attempts to reach node 0


class NodeRendezvousError(RuntimeError):
    """The nodes could not meet, or disagree about the job."""


class ChannelClosed(ConnectionError):
    """The launcher at the other end of a control channel is gone."""


class Interrupted(Exception):
    """A signal arrived while waiting for the other nodes."""


def _proof(token, nonce, node_rank):
    return hmac.new(token.encode(), f"{nonce}/{node_rank}".encode(), hashlib.sha256).hexdigest()


class Channel:
    """One launcher-to-launcher connection carrying JSON lines."""

    def __init__(self, sock, node_rank=None):
        self.sock = sock
        self.node_rank = node_rank
        self._buffer = b""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):  # a powered-off peer sends no FIN; notice it within ~25 s
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    def fileno(self):
        return self.sock.fileno()

    def send(self, message):
        try:
            self.sock.settimeout(10.0)
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as e:
            raise ChannelClosed(f"sending to node {self.node_rank}: {e}") from None

    def pending(self):
        """A complete message already buffered, or None (never blocks)."""
        line, sep, rest = self._buffer.partition(b"\n")
        if not sep:
            return None
        self._buffer = rest
        try:
            message = json.loads(line)
        except ValueError:
            raise ChannelClosed(f"node {self.node_rank} sent something that is not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ChannelClosed(f"node {self.node_rank} sent a message without a type")
        return message

    def fill(self):
        """Read what the socket has (call when it is readable); raises ChannelClosed at end of file."""
        try:
            self.sock.settimeout(0)
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            raise ChannelClosed(f"node {self.node_rank}: {e}") from None
        if not data:
            raise ChannelClosed(f"node {self.node_rank}'s launcher closed the connection")
        self._buffer += data
        if len(self._buffer) > _MAX_MESSAGE:
            raise ChannelClosed(f"node {self.node_rank} sent a message over {_MAX_MESSAGE} bytes")

    def receive(self, timeout):
        """The next message, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            while True:
                message = self.pending()
                if message is not None:
                    return message
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return None
                self.fill()

    def close(self):
        self.sock.close()


def receive_any(channels, timeout):
    """``(channel, message)`` pairs from whichever channels have something within ``timeout``;
    a closed channel yields ``(channel, ChannelClosed)``."""
    events = []
    for channel in channels:
        try:
            message = channel.pending()
        except ChannelClosed as e:
            events.append((channel, e))
            continue
        if message is not None:
            events.append((channel, message))
    if events or not channels:
        if not channels:
            time.sleep(timeout)
        return events
    with selectors.DefaultSelector() as selector:
        for channel in channels:
            selector.register(channel.sock, selectors.EVENT_READ, channel)
        for key, _ in selector.select(timeout):
            channel = key.data
            try:
                channel.fill()
                message = channel.pending()
            except ChannelClosed as e:
                events.append((channel, e))
                continue
            if message is not None:
                events.append((channel, message))
    return events


def _listen(port):
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as e:
        raise NodeRendezvousError(f"node 0 cannot listen on --master-port {port} for the other nodes' "
                                  f"launchers: {e.strerror}") from None


def _admit(sock, cfg, token, joined):
    """Handshake with one connecting launcher: its node rank, or None for a stray connection."""
    channel = Channel(sock)
    nonce = secrets.token_hex(16)
    try:
        channel.send({"type": "hello", "nonce": nonce})
        join = channel.receive(timeout=5.0)
    except ChannelClosed:
        channel.close()
        return None
    if join is None or join.get("type") != "join":
        channel.close()
        return None
    node_rank = join.get("node_rank")
    problem = None
    if join.get("nnodes") != cfg.nnodes or join.get("workers") != cfg.workers:
        problem = (f"node {node_rank} was started with --nnodes {join.get('nnodes')} --workers "
                   f"{join.get('workers')}, node 0 with --nnodes {cfg.nnodes} --workers {cfg.workers}")
    elif not isinstance(node_rank, int) or not 1 <= node_rank < cfg.nnodes:
        problem = f"Expect: a joining node's --node-rank in 1..{cfg.nnodes - 1}, Actual: {node_rank}"
    elif node_rank in joined:
        problem = f"two launchers were started with --node-rank {node_rank}"
    elif bool(join.get("token_fixed")) != (token is not None):
        problem = (f"DISTNN_JOB_TOKEN is set on node {0 if token else node_rank} but not on node "
                   f"{node_rank if token else 0}: set the same value on every node, or on none")
    elif token is not None and not hmac.compare_digest(str(join.get("proof")), _proof(token, nonce, node_rank)):
        problem = f"node {node_rank}'s DISTNN_JOB_TOKEN differs from node 0's"
    if problem:
        try:
            channel.send({"type": "reject", "reason": problem})
        except ChannelClosed:
            pass
        channel.close()
        raise NodeRendezvousError(problem)
    channel.node_rank = node_rank
    channel.send({"type": "accepted"})
    joined[node_rank] = channel
    return node_rank


def serve(cfg, token, interrupted, on_join=None):
    """Node 0: wait up to ``cfg.timeout`` for every other node; their channels by node rank."""
    joined = {}
    deadline = time.monotonic() + cfg.timeout
    with _listen(cfg.master_port) as listener:
        listener.settimeout(0.1)
        try:
            while len(joined) < cfg.nnodes - 1:
                if interrupted():
                    raise Interrupted()
                if time.monotonic() > deadline:
                    missing = sorted(set(range(1, cfg.nnodes)) - set(joined))
                    raise NodeRendezvousError(
                        f"node rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} did not "
                        f"join within --timeout {cfg.timeout:g}s (node 0 waited at port {cfg.master_port})")
                try:
                    sock, _ = listener.accept()
                except socket.timeout:
                    continue
                node_rank = _admit(sock, cfg, token, joined)
                if node_rank is not None and on_join is not None:
                    on_join(node_rank)
        except BaseException as e:
            for channel in joined.values():
                try:
                    channel.send({"type": "abort", "reason": str(e) or "node 0 was interrupted"})
                except ChannelClosed:
                    pass
                channel.close()
            raise
    return joined


def join(cfg, token, interrupted):
    """Nodes 1..M-1: reach node 0 within ``cfg.timeout`` and be admitted; the control channel."""
    deadline = time.monotonic() + cfg.timeout
    address = (cfg.master_addr, cfg.master_port)
    last_error = None
    while True:
        if interrupted():
            raise Interrupted()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NodeRendezvousError(f"could not reach node 0's launcher at {cfg.master_addr}:{cfg.master_port} "
                                      f"within --timeout {cfg.timeout:g}s (last error: {last_error})")
        try:
            sock = socket.create_connection(address, timeout=min(remaining, 2.0))
        except OSError as e:
            last_error = e.strerror or str(e)
            time.sleep(min(_RETRY, max(remaining, 0)))
            continue
        channel = Channel(sock, node_rank=0)
        try:
            hello = channel.receive(timeout=max(remaining, 1.0))
            if hello is None or hello.get("type") != "hello":
                raise ChannelClosed("no hello from node 0")
            channel.send({"type": "join", "node_rank": cfg.node_rank, "nnodes": cfg.nnodes,
                          "workers": cfg.workers, "token_fixed": token is not None,
                          "proof": _proof(token, hello.get("nonce", ""), cfg.node_rank) if token else ""})
            answer = channel.receive(timeout=10.0)
        except ChannelClosed as e:
            channel.close()
            last_error = str(e)
            time.sleep(_RETRY)
            continue
        if answer is not None and answer.get("type") == "accepted":
            return channel
        channel.close()
        reason = answer.get("reason") if answer else "no answer to the join request"
        raise NodeRendezvousError(f"node 0 refused this node: {reason}")
