"""The rendezvous store (distnn/distributed/store.py) in one process: a server
thread, real ZeroMQ sockets on loopback, and clients good, wrong and hostile."""

import os
import socket
import time

import msgpack
import pytest
import zmq

from distnn.distributed import DistributedError, DistributedTimeoutError
from distnn.distributed.store import StoreClient, StoreServer
from multiproc import free_port

TOKEN = b"job-token"


@pytest.fixture
def store():
    context = zmq.Context()
    port = free_port()
    server = StoreServer(context, "127.0.0.1", port, TOKEN, world_size=2)
    clients = []

    def client(token=TOKEN, timeout=5.0):
        c = StoreClient(context, server.address, token, timeout)
        clients.append(c)
        return c
    yield server, port, client, context
    for c in clients:
        c.close()
    server.close()
    context.term()


def raw_dealer(context, address):
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return sock


def test_set_add_wait(store):
    _, _, client, _ = store
    a, b = client(), client()
    a.set("member/0", {"ipc": "ipc:///x", "pid": 1})
    assert a.add("count", 2) == 2 and b.add("count", 3) == 5
    b.set("member/1", [1, "two"])
    assert b.wait(["member/0", "member/1"]) == [{"ipc": "ipc:///x", "pid": 1}, [1, "two"]]


@pytest.mark.timeout(20)
def test_wait_blocks_until_another_client_sets(store):
    import threading
    _, _, client, _ = store
    waiter, setter = client(), client()
    timer = threading.Timer(0.3, setter.set, ("late", 7))
    timer.start()
    start = time.monotonic()
    assert waiter.wait(["late"]) == [7]
    assert time.monotonic() - start >= 0.25
    timer.join()


@pytest.mark.timeout(20)
def test_wait_timeout_names_missing_keys(store):
    _, _, client, _ = store
    c = client(timeout=1.0)
    c.set("member/0", 1)
    start = time.monotonic()
    with pytest.raises(DistributedTimeoutError) as info:
        c.wait(["member/0", "member/1", "member/2"], what="ranks to join")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "member/1" in message and "member/2" in message and "member/0'" not in message
    assert "ranks to join" in message and "1.0s" in message


@pytest.mark.parametrize("token", [b"other-token", b"", b"job-token\x00", TOKEN[:-1]])
def test_wrong_token_is_refused_and_changes_nothing(store, token):
    _, _, client, _ = store
    intruder, member = client(token=token), client()
    with pytest.raises(DistributedError, match="wrong job token"):
        intruder.set("member/1", {"ipc": "ipc:///evil"})
    with pytest.raises(DistributedError, match="wrong job token"):
        intruder.wait(["member/1"])
    member.set("member/1", "real")
    assert member.wait(["member/1"]) == ["real"]


def request(**fields):
    base = {"op": "set", "key": "k", "value": 1, "token": TOKEN, "id": 1}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not ...}, use_bin_type=True)


HOSTILE = [
    [os.urandom(100)],
    [b""],
    [b"\xc1"],
    [msgpack.packb([1, 2, 3])],
    [msgpack.packb({"op": 5, "token": TOKEN})],
    [request(), request()],                          # two frames
    [request(token="job-token")],                    # token as str, not bytes
    [request(token=...)],                            # no token at all
    [request(op="set", key=["k"])],                  # key of the wrong type
    [request(op="add", value="x")],
    [request(op="drop_table")],
    [request(op="wait", key="not-a-list")],
]


@pytest.mark.timeout(20)
def test_hostile_requests_are_dropped_or_refused_and_the_store_keeps_serving(store):
    server, _, client, context = store
    sock = raw_dealer(context, server.address)
    for frames in HOSTILE:
        sock.send_multipart(frames)
    sock.send(b"x" * (2 << 20))  # over the store's message-size cap: the connection is dropped
    time.sleep(0.3)
    c = client()
    c.set("k", 42)
    assert c.wait(["k"]) == [42]
    sock.close()


@pytest.mark.timeout(20)
def test_wrong_token_request_gets_an_answer_not_silence(store):
    server, _, _, context = store
    sock = raw_dealer(context, server.address)
    sock.send(request(token=b"nope", id=99))
    assert sock.poll(5000), "a refused request must be answered, not left to time out"
    reply = msgpack.unpackb(sock.recv(), raw=False)
    assert reply["id"] == 99 and "refused" in reply["error"]
    sock.close()


@pytest.mark.timeout(20)
def test_raw_tcp_garbage_does_not_stop_the_store(store):
    _, port, client, _ = store
    zmtp_greeting_then_junk = b"\xff" + b"\x00" * 8 + b"\x7f" + os.urandom(200)
    for payload in (os.urandom(4096), zmtp_greeting_then_junk, b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(payload)
    c = client()
    c.set("still", "alive")
    assert c.wait(["still"]) == ["alive"]


@pytest.mark.timeout(20)
def test_client_without_server_times_out_naming_rank_0():
    context = zmq.Context()
    c = StoreClient(context, f"tcp://127.0.0.1:{free_port()}", TOKEN, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(DistributedTimeoutError, match="rank 0"):
        c.set("member/1", 1)
    assert time.monotonic() - start < 5
    c.close()
    context.term()


def test_port_in_use_names_master_port(store):
    _, port, _, context = store
    with pytest.raises(DistributedError, match=f"MASTER_PORT {port}"):
        StoreServer(context, "127.0.0.1", port, TOKEN, world_size=2)
