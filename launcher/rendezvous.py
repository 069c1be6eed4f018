"""The launchers' own meeting for multi-node jobs (standard library only).

Node 0's launcher listens on ``--master-port`` at ``--master-addr``; every
other launcher connects, proves it belongs to the job, and keeps the
connection as the control channel for the whole job: one JSON object per
line, ``{"type": ..., ...}``.

Handshake: node 0 sends ``hello`` (a nonce), the joiner answers ``join``
(its node rank, --nnodes, --workers, and, when ``DISTNN_JOB_TOKEN`` is fixed
on every node, an HMAC of the nonce under it, so the token never crosses the
wire); node 0 answers ``accepted`` or ``reject``. Node 0 handshakes with every
connection at once, so a stranger can neither stall nor end the meeting: a
join that fails the token check is refused and node 0 keeps waiting; only a
proven node that disagrees about the job (--nnodes, --workers, a duplicate
--node-rank) ends it. Without a fixed token nobody can be proven, so every bad
join is refused and named if node 0 then times out. When all nodes are in,
node 0 drives the attempts (see ``launcher.job``). Without a fixed token,
node 0 makes one per attempt and sends it in ``start``: anyone who can reach
the port during the meeting could join, so export the same DISTNN_JOB_TOKEN on
every node on networks you do not trust.
"""

import collections
import hashlib
import hmac
import ipaddress
import json
import secrets
import selectors
import socket
import time

from .output import log

_MAX_MESSAGE = 1 << 22
_MAX_JOIN = 4096  # bytes a connection may send before its join (a join is ~300)
_HANDSHAKE = 5.0  # seconds a connection gets to send its join
_MAX_PENDING = 32  # connections in their handshake at once; a new one beyond this drops the oldest
_LOGGED_REFUSALS = 10
_RETRY = 0.2  # seconds between attempts to reach node 0
HEARTBEAT = 2.0  # seconds between node 0's ``alive`` messages while an attempt runs
ANSWER_SLACK = 5.0  # seconds beyond --grace-period within which node 0 answers a node's report


class NodeRendezvousError(RuntimeError):
    """The nodes could not meet, or disagree about the job."""


class ChannelClosed(ConnectionError):
    """The launcher at the other end of a control channel is gone."""


class Interrupted(Exception):
    """A signal arrived while waiting for the other nodes."""


def _proof(token, nonce, node_rank):
    return hmac.new(token.encode(), f"{nonce}/{node_rank}".encode(), hashlib.sha256).hexdigest()


def _shown(value):
    """A value a stranger sent, safe for one log line: JSON-escaped and cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def user_timeout(timeout):
    """Seconds sent data may stay unacknowledged before the control channel counts as broken.
    At least 10 s, so a slow link is not taken for a dead one; at most 25 s, what keepalive alone
    would take to declare an idle peer dead (this setting also replaces keepalive's verdict)."""
    return min(max(timeout, 10.0), 25.0)


class Channel:
    """One launcher-to-launcher connection carrying JSON lines. ``timeout`` (--timeout) bounds
    how long a partitioned link may go unnoticed."""

    def __init__(self, sock, node_rank=None, timeout=None):
        self.sock = sock
        self.node_rank = node_rank
        self.limit = _MAX_MESSAGE  # bytes buffered without a newline before the peer is cut off
        self._buffer = b""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):  # a powered-off peer sends no FIN; notice it within ~25 s
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        if timeout is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            # keepalive is silent while sent data is unacknowledged (a partition): without this
            # the kernel retransmits for ~15 minutes before the socket reports an error
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(1000 * user_timeout(timeout)))

    def fileno(self):
        return self.sock.fileno()

    def send(self, message, timeout=10.0):
        try:
            self.sock.settimeout(timeout)
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
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise ChannelClosed(f"node {self.node_rank} sent something that is not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ChannelClosed(f"node {self.node_rank} sent a message without a type")
        return message

    def fill(self):
        """Read what the socket has (call when it is readable); raises ChannelClosed at end of file."""
        try:
            self.sock.settimeout(0)
            data = self.sock.recv(max(1, min(65536, self.limit + 1 - len(self._buffer))))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            raise ChannelClosed(f"node {self.node_rank}: {e}") from None
        if not data:
            raise ChannelClosed(f"node {self.node_rank}'s launcher closed the connection")
        self._buffer += data
        if len(self._buffer) > self.limit:
            raise ChannelClosed(f"node {self.node_rank} sent a message over {self.limit} bytes")

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


def meeting_addresses(master_addr, port):
    """``([(family, sockaddr), ...], why)``: the addresses node 0 listens on, those of
    ``master_addr`` that belong to this host; an empty list means every interface, and
    ``why`` says why (a NAT or virtual address, or a name this host resolves differently)."""
    try:
        infos = socket.getaddrinfo(master_addr, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return [], f"--master-addr {master_addr} does not resolve on this host ({e.strerror})"
    resolved, local = [], []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6) or (family, sockaddr) in resolved:
            continue
        resolved.append((family, sockaddr))
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:  # only this host's addresses can be bound (port 0: any free one, closed at once)
                probe.bind((sockaddr[0], 0, *sockaddr[2:]))
                local.append((family, sockaddr))
            except OSError:
                pass
    shown = ", ".join(sockaddr[0] for _, sockaddr in resolved)
    if not local:
        return [], f"--master-addr {master_addr} ({shown}) is not an address of this host (NAT or a virtual IP?)"
    named = master_addr != "localhost" and not _is_ip(master_addr)
    if named and all(ipaddress.ip_address(sockaddr[0].split("%")[0]).is_loopback for _, sockaddr in local):
        # e.g. Debian's "127.0.1.1 hostname" line: the other hosts know the name by another address
        return [], f"--master-addr {master_addr} is loopback ({shown}) on this host only"
    return local, None


def _is_ip(text):
    try:
        ipaddress.ip_address(text.split("%")[0])
        return True
    except ValueError:
        return False


def _listen(master_addr, port):
    """Node 0's listening sockets, non-blocking."""
    addresses, why = meeting_addresses(master_addr, port)
    if why:
        log(f"listening on every interface: {why}", 0)
    listeners = []
    try:
        if addresses:
            for family, sockaddr in addresses:
                listeners.append(socket.create_server(sockaddr, family=family))
        elif socket.has_dualstack_ipv6():
            listeners.append(socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True))
        else:
            listeners.append(socket.create_server(("", port)))
    except OSError as e:
        for listener in listeners:
            listener.close()
        raise NodeRendezvousError(f"node 0 cannot listen on --master-port {port} for the other nodes' "
                                  f"launchers: {e.strerror}") from None
    for listener in listeners:
        listener.setblocking(False)
    return listeners


class _Meeting:
    """Node 0's side: the listeners, the connections in their handshake, the nodes admitted so
    far, and the joins refused (for the error if the meeting times out)."""

    def __init__(self, cfg, token):
        self.cfg = cfg
        self.token = token
        self.joined = {}  # node rank -> Channel
        self.pending = {}  # Channel -> (nonce, deadline, peer host), oldest first
        self.refused = collections.Counter()  # reason -> joins refused for it (a few reasons kept)
        self.refusals = 0
        self.strays = 0  # connections dropped before a join: silent, garbage, too long
        self.listeners = _listen(cfg.master_addr, cfg.master_port)
        self.selector = selectors.DefaultSelector()
        for listener in self.listeners:
            self.selector.register(listener, selectors.EVENT_READ, None)

    def run(self, interrupted, on_join):
        deadline = time.monotonic() + self.cfg.timeout
        while len(self.joined) < self.cfg.nnodes - 1:
            if interrupted():
                raise Interrupted()
            now = time.monotonic()
            if now > deadline:
                raise NodeRendezvousError(self._timeout_message())
            for channel in [c for c, (_, expires, _) in self.pending.items() if expires <= now]:
                self._drop(channel)
            for key, _ in self.selector.select(0.1):
                if key.data is None:
                    self._accept(key.fileobj)
                elif key.data in self.pending:
                    self._handshake(key.data, on_join)
        return self.joined

    def _accept(self, listener):
        for _ in range(_MAX_PENDING):
            try:
                sock, address = listener.accept()
            except OSError:  # nothing more to accept (BlockingIOError), or the peer already left
                return
            if len(self.pending) >= _MAX_PENDING:  # a genuine node answers at once: drop the stalest
                self._drop(next(iter(self.pending)))
            channel = Channel(sock, timeout=self.cfg.timeout)
            channel.limit = _MAX_JOIN
            nonce = secrets.token_hex(16)
            try:
                channel.send({"type": "hello", "nonce": nonce}, timeout=1.0)
            except ChannelClosed:
                channel.close()
                continue
            self.pending[channel] = (nonce, time.monotonic() + _HANDSHAKE, address[0])
            self.selector.register(channel.sock, selectors.EVENT_READ, channel)

    def _drop(self, channel):
        self.pending.pop(channel, None)
        self.selector.unregister(channel.sock)
        channel.close()
        self.strays += 1

    def _handshake(self, channel, on_join):
        try:
            channel.fill()
            join = channel.pending()
        except ChannelClosed:
            self._drop(channel)
            return
        if join is None:
            return
        if join["type"] != "join":
            self._drop(channel)
            return
        nonce, _, host = self.pending.pop(channel)
        self.selector.unregister(channel.sock)
        problem, proven = self._check(join, nonce)
        if problem is None:
            channel.node_rank = join["node_rank"]
            channel.limit = _MAX_MESSAGE
            try:
                channel.send({"type": "accepted"}, timeout=1.0)
            except ChannelClosed:  # it left; a real node tries again
                channel.close()
                return
            self.joined[channel.node_rank] = channel
            if on_join is not None:
                on_join(channel.node_rank)
            return
        try:  # so a misconfigured node fails with the reason on its side too
            channel.send({"type": "reject", "reason": problem}, timeout=1.0)
        except ChannelClosed:
            pass
        channel.close()
        if proven:
            raise NodeRendezvousError(problem)
        self._refuse(problem, host)

    def _check(self, join, nonce):
        """(why ``join`` cannot be admitted or None, whether it provably comes from this job's
        launchers: only such a join may end the job; without a fixed token none can)."""
        cfg, token = self.cfg, self.token
        node_rank = join.get("node_rank")
        if bool(join.get("token_fixed")) != (token is not None):
            on, off = (0, _shown(node_rank)) if token is not None else (_shown(node_rank), 0)
            return (f"DISTNN_JOB_TOKEN is set on node {on} but not on node {off}: set the same value on "
                    "every node, or on none"), False
        if token is not None and not hmac.compare_digest(  # bytes: compare_digest refuses non-ASCII str
                str(join.get("proof")).encode(), _proof(token, nonce, node_rank).encode()):
            return f"node {_shown(node_rank)}'s DISTNN_JOB_TOKEN differs from node 0's", False
        proven = token is not None
        if join.get("nnodes") != cfg.nnodes or join.get("workers") != cfg.workers:
            return (f"node {_shown(node_rank)} was started with --nnodes {_shown(join.get('nnodes'))} "
                    f"--workers {_shown(join.get('workers'))}, node 0 with --nnodes {cfg.nnodes} "
                    f"--workers {cfg.workers}"), proven
        if type(node_rank) is not int or not 1 <= node_rank < cfg.nnodes:  # not bool: True == 1
            return (f"Expect: a joining node's --node-rank in 1..{cfg.nnodes - 1}, "
                    f"Actual: {_shown(node_rank)}"), proven
        if node_rank in self.joined:
            return f"two launchers were started with --node-rank {node_rank}", proven
        return None, False

    def _refuse(self, problem, host):
        self.refusals += 1
        if problem in self.refused or len(self.refused) < 3:
            self.refused[problem] += 1
        if self.refusals <= _LOGGED_REFUSALS:
            more = "; further refusals are not logged" if self.refusals == _LOGGED_REFUSALS else ""
            log(f"refused a join from {host}: {problem}{more}", 0)

    def _timeout_message(self):
        missing = sorted(set(range(1, self.cfg.nnodes)) - set(self.joined))
        text = (f"node rank{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} did not join "
                f"within --timeout {self.cfg.timeout:g}s (node 0 waited at port {self.cfg.master_port})")
        if self.refusals:
            reasons = "; ".join(r if n == 1 else f"{r} ({n} times)" for r, n in self.refused.most_common())
            text += f"; refused {self.refusals} join{'s' if self.refusals > 1 else ''}: {reasons}"
        if self.strays:
            text += f"; {self.strays} other connection{'s' if self.strays > 1 else ''} sent no join"
        return text

    def close(self):
        for channel in list(self.pending):
            self._drop(channel)
        for listener in self.listeners:
            listener.close()
        self.selector.close()


def serve(cfg, token, interrupted, on_join=None):
    """Node 0: wait up to ``cfg.timeout`` for every other node; their channels by node rank."""
    meeting = _Meeting(cfg, token)
    try:
        return meeting.run(interrupted, on_join)
    except BaseException as e:
        for channel in meeting.joined.values():
            try:
                channel.send({"type": "abort", "reason": str(e) or "node 0 was interrupted"})
            except ChannelClosed:
                pass
            channel.close()
        raise
    finally:
        meeting.close()


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
        channel = Channel(sock, node_rank=0, timeout=cfg.timeout)
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
