"""Who may talk to a rank: the job's secret, the credential derived from it that
opens a data port, the ZAP handler that checks that credential once per
connection, and a bounded log of what was refused.

Data ports use ZeroMQ's PLAIN mechanism with ZAP: a peer's connection is
admitted only if its handshake carries ``credential(secret, job)``, an HMAC of
the job's secret, so the secret itself never crosses the wire and nothing is
paid per message once a connection is up. Everything else (garbage, forged
headers, another job's messages) is refused by the ZeroMQ I/O thread or here,
before any byte reaches the receive queues. The secret is the launcher's
``DISTNN_JOB_TOKEN`` or, for a job started without one, a random secret that
rank 0's store hands each rank in its join reply.
"""

import hashlib
import hmac
import sys
import threading
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from .wakeup import Wakeup

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP specification (RFC 27)
DATA_DOMAIN = b"distnn-data"
USERNAME = b"distnn"
_LOG_EVERY_S = 10.0
_FLOOD_COUNT_S = 1.0


def credential(secret, job):
    """The password that opens this job's data ports: an HMAC, so that seeing it on
    the wire reveals neither the secret nor another job's credential."""
    return hmac.new(secret, b"distnn data port/" + job, hashlib.sha256).hexdigest().encode()


def configure_server(sock):
    """Make ``sock`` (a rank's PULL) admit only connections the ZAP handler accepts."""
    sock.setsockopt(zmq.PLAIN_SERVER, 1)
    sock.setsockopt(zmq.ZAP_DOMAIN, DATA_DOMAIN)


def configure_client(sock, password):
    """Make ``sock`` (a PUSH to a peer) present the job's credential; call before connect()."""
    sock.setsockopt(zmq.PLAIN_USERNAME, USERNAME)
    sock.setsockopt(zmq.PLAIN_PASSWORD, password)


class DropLog:
    """Counts dropped traffic by reason and logs it at a bounded rate: the first drop of
    a kind at once, then one summary line per ``every`` seconds while drops continue,
    so a flood costs a few lines, never one per message."""

    def __init__(self, prefix, every=_LOG_EVERY_S):
        self._prefix = prefix
        self._every = every
        self._lock = threading.Lock()
        self.counts = {}
        self._unlogged = {}
        self._next_log = 0.0

    def drop(self, reason, detail=""):
        """Count one dropped message or connection; ``detail`` (e.g. the sender) is shown
        for the latest of its kind."""
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            count, _ = self._unlogged.get(reason, (0, ""))
            self._unlogged[reason] = (count + 1, detail[:200])
            now = time.monotonic()
            if self.counts[reason] > 1 and now < self._next_log:
                return
            self._next_log = now + self._every
            line = self._take_summary()
        print(line, file=sys.stderr, flush=True)

    def flush(self):
        """Log what was dropped since the last line (call before the process moves on)."""
        with self._lock:
            line = self._take_summary() if self._unlogged else None
        if line:
            print(line, file=sys.stderr, flush=True)

    def _take_summary(self):
        summary = "; ".join(f"{n} x {r}{f' (latest: {d})' if d else ''}" for r, (n, d) in self._unlogged.items())
        self._unlogged.clear()
        return (f"[distnn] {self._prefix}dropped {summary} (such lines come at most once per "
                f"{self._every:g}s)")

    def total(self):
        with self._lock:
            return sum(self.counts.values())


class ZapHandler:
    """A thread answering ZeroMQ's authentication requests for one context. It sleeps
    until a handshake or a command arrives. Until the credential is known (a rank that
    has not yet heard the job's secret) requests wait here, unanswered, rather than
    being refused, so a peer that connects early is not turned away."""

    _FAILED_HANDSHAKES = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)

    def __init__(self, context, drops, guarded):
        """``guarded``: the socket whose failed handshakes (garbage, no credential, another
        mechanism: refused inside ZeroMQ) are counted too."""
        self._drops = drops
        self._password = None
        self._held = []
        self._socket = context.socket(zmq.ROUTER)  # a ROUTER, to hold requests while we wait
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(ZAP_ENDPOINT)
        self._control = Wakeup(context, "zap-control")
        self._monitor = guarded.get_monitor_socket(self._FAILED_HANDSHAKES)
        self._thread = threading.Thread(target=self._serve, name="distnn-zap", daemon=True)
        self._thread.start()

    def admit(self, password):
        """From now on, admit connections that present ``password``."""
        self._control.send(password)

    def close(self):
        if self._thread.is_alive():
            self._control.send(b"")
            self._thread.join(timeout=5)
        self._control.close(self._thread)

    def _serve(self):
        control = self._control.receiver
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        # Waking for every failed handshake of a flood would take the GIL from training
        # thousands of times a second: after one, the monitor is not watched but read once a
        # second until the flood stops. (It queues a few thousand events: a lower bound.)
        next_count = None
        try:
            while True:
                ready = dict(poller.poll(None if next_count is None else
                                         max(next_count - time.monotonic(), 0) * 1000))
                if control in ready:
                    password = control.recv()
                    if not password:
                        self._count_failed_handshakes()
                        return
                    self._password = password
                    for request in self._held:
                        self._answer(request)
                    self._held.clear()
                if self._monitor in ready:
                    self._count_failed_handshakes()
                    poller.unregister(self._monitor)
                    next_count = time.monotonic() + _FLOOD_COUNT_S
                elif next_count is not None and time.monotonic() >= next_count:
                    if self._count_failed_handshakes():
                        next_count = time.monotonic() + _FLOOD_COUNT_S
                    else:
                        poller.register(self._monitor, zmq.POLLIN)
                        next_count = None
                if self._socket in ready:
                    request = self._socket.recv_multipart()
                    if self._password is None and len(self._held) < 1024:
                        self._held.append(request)
                    else:
                        self._answer(request)
        finally:
            self._socket.close(linger=0)
            self._monitor.close(linger=0)

    def _count_failed_handshakes(self):
        counted = 0
        while self._monitor.poll(0):
            if recv_monitor_message(self._monitor)["event"] != zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._drops.drop("connection(s) that are not distnn peers (failed handshake)")  # AUTH: in _answer
            counted += 1
        return counted

    def _answer(self, request):
        # ROUTER envelope: identity, empty delimiter, then the ZAP frames:
        # version, request id, domain, address, identity, mechanism, credentials...
        envelope, frames = request[:2], request[2:]
        if len(frames) < 6:
            return
        version, request_id, domain, address, _, mechanism = frames[:6]
        if domain != DATA_DOMAIN:
            status = b"200"  # not a data port: this handler guards only those
        elif (mechanism == b"PLAIN" and len(frames) == 8 and frames[6] == USERNAME
              and self._password is not None and hmac.compare_digest(frames[7], self._password)):
            status = b"200"
        else:
            status = b"400"
            self._drops.drop("connection(s) without the job's credential",
                             f"from {address.decode(errors='replace') or 'a local ipc socket'}")
        self._socket.send_multipart(envelope + [version, request_id, status,
                                                b"OK" if status == b"200" else b"refused", b"", b""])
