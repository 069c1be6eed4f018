"""Strangers on the job's ports (distnn/distributed/store.py, transport.py, wire.py):
garbage, forged headers, other jobs' messages and wrong tokens sent to the
rendezvous store and to the ranks' data endpoints must be dropped or refused
while the job still computes correctly; two jobs on one host never mix.
Workers: workers/intruded.py (waits while the test attacks) and collectives.py."""

import hashlib
import json
import os
import socket
import time

import msgpack
import pytest
import zmq

from multiproc import check_cases, collect, format_results, free_port, json_lines, start_rank

INTRUDED = "tests/distributed/workers/intruded.py"
COLLECTIVES = "tests/distributed/workers/collectives.py"
FAULTS = "tests/distributed/workers/faults.py"
TOKEN = "test-token"


def wait_for(predicate, what, timeout=30.0, procs=()):
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"a rank exited while waiting for {what}:\n" + \
            format_results(collect(list(procs), timeout=5))
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def endpoints(directory, world_size, procs):
    files = [directory / f"rank{r}.json" for r in range(world_size)]
    wait_for(lambda: all(f.exists() for f in files), "ranks to publish their endpoints", procs=procs)
    return [json.loads(f.read_text()) for f in files]


def raw_tcp(address, payloads):
    host, port = address.rsplit(":", 1)
    for payload in payloads:
        with socket.create_connection((host.replace("tcp://", ""), int(port)), timeout=2) as s:
            s.sendall(payload)


def header(**fields):
    base = {"job": b"\x00" * 8, "grp": 0, "op": "all_reduce.sum", "seq": 0, "src": 0, "dtype": "float32",
            "shape": [7], "seg": 0, "nbytes": 28}
    base.update(fields)
    return msgpack.packb(base, use_bin_type=True)


def data_port_attacks(job):
    """Multipart messages a stranger might push; none may be trusted."""
    payload = os.urandom(28)
    return [
        [os.urandom(64)],
        [os.urandom(64), os.urandom(28)],
        [header(job=job), payload, payload],                        # three frames
        [header(), payload],                                        # another job's message
        [header(job=job, src=99), payload],                         # a rank outside the world
        [header(job=job, seq="0"), payload],                        # wrong field type
        [header(job=job, dtype="object"), payload],                 # not a wire dtype
        [header(job=job, shape=[-7]), payload],
        [header(op="abort", dtype="forged abort", shape=[], nbytes=0), b""],            # another job's abort
        [header(job=job, op="abort", src=7, dtype="forged", shape=[], nbytes=0), b""],  # abort from no rank
        [msgpack.packb({"job": job}), payload],
    ]


def job_id(port):
    # How World derives the job id from the token and the rendezvous address.
    return hashlib.sha256(TOKEN.encode() + f"127.0.0.1:{port}".encode()).digest()[:8]


@pytest.mark.timeout(90)
def test_garbage_on_data_and_store_ports_while_the_job_runs(tmp_path):
    port, world_size = free_port(), 3
    procs = [start_rank(INTRUDED, r, world_size, port, [tmp_path]) for r in range(world_size)]
    try:
        infos = endpoints(tmp_path, world_size, procs)
        context = zmq.Context()
        try:
            for info in infos:
                for address in (info["tcp"], info["ipc"]):
                    push = context.socket(zmq.PUSH)
                    push.setsockopt(zmq.LINGER, 2000)
                    push.connect(address)
                    for frames in data_port_attacks(job_id(port)):
                        push.send_multipart(frames)
                    push.close()
                raw_tcp(info["tcp"], [os.urandom(2048), b"\xff" + b"\x00" * 8 + b"\x7f" + os.urandom(300)])
            store = context.socket(zmq.DEALER)
            store.setsockopt(zmq.LINGER, 0)
            store.connect(f"tcp://127.0.0.1:{port}")
            store.send(os.urandom(100))
            store.send_multipart([b"a", b"b", b"c"])
            store.send(msgpack.packb({"op": "set", "key": "member/1", "value": {"ipc": "ipc:///evil"},
                                      "token": b"wrong", "id": 1}, use_bin_type=True))
            assert store.poll(5000), "the store must answer a wrong-token request"
            reply = msgpack.unpackb(store.recv(), raw=False)
            assert "refused" in reply["error"], reply
            store.close()
            raw_tcp(f"tcp://127.0.0.1:{port}", [os.urandom(1000)])
        finally:
            context.term()
    finally:
        (tmp_path / "go").touch()
    results = collect(procs, timeout=60)
    check_cases(results, min_cases=7)
    for r in results:
        assert "dropped a malformed message" in r.stderr, f"rank {r.rank} logged nothing dropped:\n{r.stderr}"


@pytest.mark.timeout(90)
def test_wrong_token_cannot_claim_a_rank_before_it_joins(tmp_path):
    port, world_size = free_port(), 3
    (tmp_path / "go").touch()
    procs = [start_rank(INTRUDED, 0, world_size, port, [tmp_path])]
    try:
        context = zmq.Context()
        try:
            def store_answers():
                try:
                    raw_tcp(f"tcp://127.0.0.1:{port}", [b""])
                    return True
                except OSError:
                    return False
            wait_for(store_answers, "rank 0's store", procs=procs)
            store = context.socket(zmq.DEALER)
            store.setsockopt(zmq.LINGER, 0)
            store.connect(f"tcp://127.0.0.1:{port}")
            forged = {"host": "evil", "ipc": "ipc:///evil", "tcp": "tcp://1.2.3.4:1", "pid": 1,
                      "world": world_size, "rank": 1}
            for rid, token in enumerate([b"wrong", b"", TOKEN.encode()[:-1]]):
                store.send(msgpack.packb({"op": "set", "key": "member/1", "id": rid, "token": token,
                                          "value": forged}, use_bin_type=True))
                assert store.poll(5000)
                assert "refused" in msgpack.unpackb(store.recv(), raw=False)["error"]
            store.send(os.urandom(300))
            store.close()
        finally:
            context.term()
        procs += [start_rank(INTRUDED, r, world_size, port, [tmp_path]) for r in range(1, world_size)]
    except BaseException:
        collect(procs, timeout=1)
        raise
    results = collect(procs, timeout=60)
    check_cases(results, min_cases=7)
    assert "wrong job token" in results[0].stderr, results[0].stderr


@pytest.mark.timeout(90)
def test_two_jobs_at_once_on_one_host():
    jobs = [(free_port(), 3, "token-a"), (free_port(), 2, "token-b"), (free_port(), 2, "token-a")]
    started = [[start_rank(COLLECTIVES, r, world, port, ["smoke", 100003], token=token) for r in range(world)]
               for port, world, token in jobs]
    outcomes = [collect(procs, timeout=60) for procs in started]
    for results in outcomes:
        check_cases(results, min_cases=6)


@pytest.mark.timeout(90)
def test_second_job_on_a_taken_port_fails_clearly_and_the_first_is_unaffected(tmp_path):
    port = free_port()
    first = [start_rank(INTRUDED, r, 2, port, [tmp_path]) for r in range(2)]
    try:
        endpoints(tmp_path, 2, first)
        second = [start_rank(FAULTS, r, 2, port, ["join"], token="other-token",
                             env={"DISTNN_TEST_TIMEOUT": "10"}) for r in range(2)]
        intruders = collect(second, timeout=40)
    finally:
        (tmp_path / "go").touch()
    check_cases(collect(first, timeout=60), min_cases=7)
    reports = {r.rank: [rec for rec in json_lines(r.stdout) if "error" in rec or "ok" in rec]
               for r in intruders}
    assert all(reports.values()), format_results(intruders)
    rank0, rank1 = reports[0][-1], reports[1][-1]
    assert rank0.get("is_distributed") and f"MASTER_PORT {port}" in rank0["message"], rank0
    assert rank1.get("is_distributed") and "wrong job token" in rank1["message"], rank1
    assert rank0["elapsed"] < 8 and rank1["elapsed"] < 8, (rank0, rank1)


@pytest.mark.timeout(30)
def test_data_port_refuses_a_frame_over_the_cap(tmp_path, capfd):
    """A stranger's oversized frame is cut off by ZeroMQ (MAXMSGSIZE) before it is
    buffered; a frame at the cap still arrives (and, being garbage, is dropped)."""
    from distnn.distributed import wire
    from distnn.distributed.transport import Transport
    context = zmq.Context()
    transport = Transport(context, 0, 1, b"\x00" * 8, "127.0.0.1", str(tmp_path / "ipc"))
    senders = []  # kept open: a collected socket would drop its unsent frame

    try:
        def push(nbytes):
            sock = context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(transport.tcp_endpoint)
            sock.send(b"\x00" * nbytes)
            senders.append(sock)
        push(wire.MAX_FRAME_BYTES + 1)
        transport.wait_readable(1500)
        transport.drain()
        assert "dropped" not in capfd.readouterr().err, "a frame over the cap was delivered"
        push(wire.MAX_FRAME_BYTES)
        transport.wait_readable(5000)
        transport.drain()
        assert "dropped a message with 1 frames" in capfd.readouterr().err, "a frame at the cap did not arrive"
    finally:
        transport.close()
        context.destroy(linger=0)
