"""Rendezvous: a small key-value store that rank 0 serves over ZeroMQ (ROUTER),
and the client every rank uses (DEALER).

Ranks publish their data endpoints here and wait until every rank has done
so. Every request carries the job token; a request with a wrong token is
refused and counted, so two jobs on one host can never merge. Requests are
msgpack maps; garbage is counted and dropped (logged at a bounded rate),
never trusted.

A job started without a token (by hand, srun, mpirun) still gets a secret:
rank 0 draws one, and the store hands it to each rank in its join reply. Then
only ``join`` (and ``missing``, which names the ranks not yet joined) is open
to requests without the secret, a rank's slot goes to
its first claimant (a second claim is refused, naming the first, so a stranger
who races a rank makes the job fail loudly, never join it), and every other
request must carry the secret.
"""

import hmac
import itertools
import secrets
import threading
import time

import msgpack
import zmq

from .auth import DropLog
from .errors import DistributedError, DistributedTimeoutError
from .network import bracket, explain_bind_error
from .wakeup import Wakeup

_RESEND_S = 1.0
_MAX_REQUEST = 1 << 20


class StoreServer:
    """The store itself: a thread in rank 0 answering set/get/add/wait requests."""

    def __init__(self, context, host, port, token, world_size):
        self._secret = token or secrets.token_bytes(32)
        self._open_join = not token
        self._world_size = world_size
        self.drops = DropLog("store: ")
        self._data = {}
        self._waiters = []  # (identity, request id, keys)
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, _MAX_REQUEST)
        self.address = f"tcp://{bracket(host)}:{port}"
        try:
            self._socket.bind(self.address)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise DistributedError(explain_bind_error(exc, self.address, "rank 0's rendezvous store",
                                                      port_var="MASTER_PORT", addr_var="MASTER_ADDR")) from None
        self._stop = Wakeup(context, "store-stop")  # the thread sleeps until a request or close()
        self._thread = threading.Thread(target=self._serve, name="distnn-store", daemon=True)
        self._thread.start()

    def close(self):
        if self._thread.is_alive():
            self._stop.send()
            self._thread.join(timeout=5)
        self._stop.close(self._thread)
        self.drops.flush()

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._stop.receiver, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self._stop.receiver in ready:
                    return
                if self._socket in ready:
                    self._handle(self._socket.recv_multipart(copy=True))
        finally:
            self._socket.close(linger=0)

    def _handle(self, frames):
        if len(frames) != 2:
            self.drops.drop("malformed request(s)", f"{len(frames)} frames")
            return
        identity, payload = frames
        try:
            request = msgpack.unpackb(payload, raw=False, max_str_len=_MAX_REQUEST)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("not a request map")
        except Exception as exc:  # garbage on the port: never trusted, never fatal
            self.drops.drop("undecodable request(s)", type(exc).__name__)
            return
        rid = request.get("id")
        token = request.get("token", b"")
        op, key = request["op"], request.get("key")
        authorized = isinstance(token, bytes) and hmac.compare_digest(token, self._secret)
        if not authorized and not (self._open_join and op in ("join", "missing") and token == b""):
            self.drops.drop("request(s) with a wrong job token (another job on the same MASTER_PORT?)",
                            repr(op))
            self._reply(identity, rid, error="refused: wrong job token for this rendezvous")
            return
        if op == "set" and isinstance(key, str):
            self._data[key] = request.get("value")
            self._reply(identity, rid, value=True)
            self._wake_waiters()
        elif op == "add" and isinstance(key, str) and isinstance(request.get("value"), int):
            self._data[key] = self._data.get(key, 0) + request["value"]
            self._reply(identity, rid, value=self._data[key])
            self._wake_waiters()
        elif op == "wait" and isinstance(key, list) and all(isinstance(k, str) for k in key):
            self._waiters.append((identity, rid, key))
            self._wake_waiters()
        elif op == "join" and isinstance(key, list) and len(key) == 2 and isinstance(key[0], str) \
                and isinstance(key[1], list) and all(isinstance(k, str) for k in key[1]):
            # Register and wait in one request, so a retry after a store restart redoes both.
            claimed = self._data.get(key[0])
            if self._open_join and claimed is not None and claimed != request.get("value"):
                self.drops.drop("second claim(s) of a rank", key[0])
                self._reply(identity, rid, error=f"refused: {key[0]} was already claimed by "
                                                 f"{_claimant(claimed)}: check RANK of every worker")
                return
            self._data[key[0]] = request.get("value")
            self._waiters.append((identity, rid, key[1]))
            self._wake_waiters()
        elif op == "missing" and isinstance(key, list):
            self._reply(identity, rid, value=[k for k in key if k not in self._data])
        else:
            self._reply(identity, rid, error=f"bad request {op!r}")

    def _wake_waiters(self):
        pending = []
        for identity, rid, keys in self._waiters:
            if all(k in self._data for k in keys):
                # A job without a token learns its secret here (a token job already has it).
                self._reply(identity, rid, value=[self._data[k] for k in keys],
                            secret=self._secret if self._open_join else None)
            else:
                pending.append((identity, rid, keys))
        self._waiters = pending

    def _reply(self, identity, rid, value=None, error=None, secret=None):
        reply = {"id": rid, "value": value, "error": error}
        if secret is not None:
            reply["secret"] = secret
        self._socket.send_multipart([identity, msgpack.packb(reply, use_bin_type=True)])


def _claimant(value):
    if isinstance(value, dict):
        return f"pid {value.get('pid')} on host {value.get('host')}"
    return "another process"


class StoreClient:
    """One rank's connection to the store; used only from the thread that made it."""

    _ids = itertools.count(1)

    def __init__(self, context, address, token, timeout):
        self.address = address
        self.secret = token  # empty for a job without a token, until its join reply brings one
        self.timeout = timeout
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # Whether a connection to the store ever came up: a join is answered only once every
        # rank has joined, so silence alone does not tell an unreachable store from a waiting one.
        self._connected = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._socket.connect(address)

    def close(self):
        self._socket.disable_monitor()
        self._connected.close(linger=0)
        self._socket.close(linger=0)

    def _request(self, op, key, value=None, timeout=None, describe_wait=None):
        """Send one request and wait for its answer. Idempotent requests are resent every
        second: a request that reached a store which then shut down (rank 0 re-initialising
        on the same port) would otherwise never be answered."""
        rid = next(self._ids)
        message = msgpack.packb({"op": op, "key": key, "value": value, "token": self.secret, "id": rid},
                                use_bin_type=True)
        self._socket.send(message)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        resend_at = time.monotonic() + _RESEND_S
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise DistributedTimeoutError(describe_wait() if describe_wait else
                                              f"rendezvous store at {self.address} did not answer "
                                              f"within {self.timeout:.1f}s (is rank 0 running?)")
            if op != "add" and now >= resend_at:
                self._socket.send(message)
                resend_at = now + _RESEND_S
            if not self._socket.poll(min(remaining, 0.25) * 1000):
                continue
            reply = msgpack.unpackb(self._socket.recv(), raw=False)
            if reply.get("id") != rid:
                continue  # a late answer to an earlier, timed-out request
            if reply.get("error"):
                raise DistributedError(f"rendezvous at {self.address} {reply['error']}")
            if not self.secret and isinstance(reply.get("secret"), bytes):
                self.secret = reply["secret"]
            return reply["value"]

    def set(self, key, value):
        self._request("set", key, value)

    def add(self, key, amount):
        return self._request("add", key, amount)

    def wait(self, keys, timeout=None, what="keys"):
        """Block until every key is set; returns their values. On timeout the error
        lists the keys (e.g. the ranks) still missing."""
        return self._request("wait", list(keys), timeout=timeout,
                             describe_wait=self._describe_missing(keys, timeout, what))

    def join(self, key, value, keys, timeout=None, what="keys"):
        """Set ``key`` and wait for every one of ``keys``, as one retryable request."""
        return self._request("join", [key, list(keys)], value, timeout=timeout,
                             describe_wait=self._describe_missing(keys, timeout, what))

    def _describe_missing(self, keys, timeout, what):
        def describe():
            waited = self.timeout if timeout is None else timeout
            if not self._connected.poll(0):
                return (f"rendezvous timed out after {waited:.1f}s: this rank never reached the store at "
                        f"{self.address} (is rank 0 running? is MASTER_ADDR the address by which this host "
                        "reaches rank 0's host, and is MASTER_PORT open in its firewall?)")
            try:
                missing = self._request("missing", list(keys), timeout=2.0)
            except DistributedError:
                missing = list(keys)
            return (f"rendezvous timed out after {self.timeout if timeout is None else timeout:.1f}s "
                    f"at {self.address} waiting for {what}: {missing}")
        return describe

