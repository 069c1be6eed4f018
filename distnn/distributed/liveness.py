"""Noticing peers on other hosts that died or cannot be reached, without a launcher.

A same-host peer is watched by its pid. A peer elsewhere is watched through the
connection to it: a monitor on this rank's PUSH socket to that peer reports when the
connection breaks, which happens at once when the peer's process dies (its kernel
closes the socket), and within ``DISTNN_HEARTBEAT_TIMEOUT`` seconds when its host
is gone or cut off (ZeroMQ heartbeats: a PING every quarter of that, the connection
dropped when nothing comes back). A broken connection is never resumed: ZeroMQ may
have lost the messages in flight, so the peer counts as lost for good.
"""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

# Only events that happen once per connection: a dead peer's endless reconnect attempts
# (EVENT_CONNECT_RETRIED) would pile up in a monitor nobody reads.
_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class PeerWatch:
    """The connection state of this rank's PUSH sockets to peers on other hosts."""

    def __init__(self, timeout):
        self.timeout = timeout
        self._monitors = {}  # peer -> (socket, monitor, endpoint, host)
        self._connected = {}  # peer -> whether its handshake ever succeeded
        self._lost = {}  # peer -> why it counts as lost
        self._since = {}  # peer -> when this rank began to connect to it

    def configure(self, sock):
        """Heartbeats on ``sock``, before it connects."""
        interval = max(100, int(self.timeout * 250))
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.timeout * 1000))

    def watch(self, peer, sock, endpoint, host):
        """Follow the connection of ``sock`` to ``peer`` (at ``endpoint`` on ``host``)."""
        self._monitors[peer] = (sock, sock.get_monitor_socket(_EVENTS), endpoint, host)
        self._connected[peer] = False
        self._since[peer] = time.monotonic()

    def watched(self, peer):
        return peer in self._monitors

    def lost(self, peer):
        """Why ``peer`` counts as dead or unreachable, or None while its connection is fine."""
        if peer not in self._monitors:
            return None
        if peer in self._lost:
            return self._lost[peer]
        _, monitor, endpoint, host = self._monitors[peer]
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected[peer] = True
            elif event == zmq.EVENT_DISCONNECTED and self._connected[peer]:
                self._lost[peer] = (f"its connection ({endpoint} on host {host}) broke: the process died, or "
                                    f"its host did not answer heartbeats for {self.timeout:g}s "
                                    "(DISTNN_HEARTBEAT_TIMEOUT)")
                return self._lost[peer]
        if not self._connected[peer] and time.monotonic() - self._since[peer] > self.timeout:
            return (f"this rank could not connect to it at {endpoint} (host {host}) within {self.timeout:g}s "
                    "(DISTNN_HEARTBEAT_TIMEOUT): is that address reachable from here, and its port open?")
        return None

    def close(self):
        for sock, monitor, _, _ in self._monitors.values():
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(linger=0)
        self._monitors.clear()
