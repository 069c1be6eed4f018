"""How another thread wakes a service thread (the store's, the ZAP handler's) that
sleeps in ``poll()`` until a socket is readable: a message on an inproc pair. A
timed poll instead would wake it, and take the GIL from training, many times a
second for the whole job."""

import threading

import zmq


class Wakeup:
    """An inproc PAIR: the service thread polls ``receiver``; any thread may ``send``."""

    def __init__(self, context, name):
        address = f"inproc://distnn-{name}-{id(self)}"
        self.receiver = context.socket(zmq.PAIR)
        self.receiver.bind(address)
        self._sender = context.socket(zmq.PAIR)
        self._sender.setsockopt(zmq.LINGER, 0)
        self._sender.connect(address)
        self._lock = threading.Lock()

    def send(self, message=b""):
        with self._lock:
            self._sender.send(message)

    def close(self, thread):
        """Close the sender, and the receiver once the service ``thread`` has returned
        (a socket must never be closed under a thread still polling it)."""
        with self._lock:
            self._sender.close(linger=0)
        if not thread.is_alive():
            self.receiver.close(linger=0)
