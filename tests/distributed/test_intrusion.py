"""Strangers on the job's ports (distnn/distributed/store.py, transport.py, wire.py):
garbage, forged headers, other jobs' messages and wrong tokens sent to the
rendezvous store and to the ranks' data endpoints must be dropped or refused
while the job still computes correctly; two jobs on one host never mix.
Workers: workers/intruded.py (waits while the test attacks) and collectives.py."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

from multiproc import check_cases, collect, format_results, free_port, json_lines, start_rank

INTRUDED = "tests/distributed/workers/intruded.py"
STRANGER = "tests/distributed/workers/stranger.py"
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


def job_id(port, token=TOKEN):
    # How World derives the job id from the token and the rendezvous address (a job without
    # a token derives it from a random secret instead: this is what a stranger would guess).
    return hashlib.sha256(token.encode() + f"127.0.0.1:{port}".encode()).digest()[:8]


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def can_run_as_another_user():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import json, socket, struct"], capture_output=True)
    return probe.returncode == 0


def run_stranger(info, job, world_size, as_other_user):
    cmd = [sys.executable, STRANGER, info["tcp"], info["ipc"], job.hex(), str(world_size)]
    done = subprocess.run([*NOBODY, *cmd] if as_other_user else cmd, capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("token,as_other_user", [(TOKEN, False), (TOKEN, True), ("", False), ("", True)],
                         ids=["token", "token-other-user", "no-token", "no-token-other-user"])
def test_a_stranger_who_knows_the_job_id_cannot_abort_a_job_or_change_a_sum(tmp_path, token, as_other_user):
    """The tester's attack: a process with the standard library only pushes a forged abort
    notice and a forged first all-reduce segment (right job id, op, dtype, shape) into every
    rank's data port, without authentication and with guessed passwords. Every connection
    is refused at the handshake, the job computes exactly, and another user can neither
    list nor connect to the ranks' ipc sockets."""
    if as_other_user and not can_run_as_another_user():
        pytest.skip("needs root and setpriv to act as another user")
    port, world_size = free_port(), 2
    procs = [start_rank(INTRUDED, r, world_size, port, [tmp_path], token=token) for r in range(world_size)]
    reports = []
    try:
        for info in endpoints(tmp_path, world_size, procs):
            reports.append(run_stranger(info, job_id(port, token), world_size, as_other_user))
            folder = os.path.dirname(info["ipc"][len("ipc://"):])
            assert os.stat(folder).st_mode & 0o077 == 0, f"ipc folder {folder} is open to others"
    finally:
        (tmp_path / "go").touch()
    results = collect(procs, timeout=60)
    check_cases(results, min_cases=7)
    for report in reports:
        for attack in ("null", "plain_job_id", "plain_empty"):
            assert report[attack]["closed"], f"the data port kept a stranger's connection: {report}"
        if as_other_user:
            assert report["ipc_folder"] == "PermissionError" and report["ipc_connect"] == "PermissionError", report
    for r in results:
        assert "dropped" in r.stderr and ("not distnn peers" in r.stderr or "credential" in r.stderr), r.stderr


@pytest.mark.timeout(90)
def test_without_a_token_a_rank_goes_to_its_first_claimant(tmp_path):
    """A job without a token hands its secret out at the rendezvous: a stranger who races
    a rank to its slot makes the job fail loudly (the real rank is told who holds its
    slot), never joins it silently."""
    port = free_port()
    env = {"DISTNN_TEST_TIMEOUT": "8"}
    procs = [start_rank(FAULTS, 0, 2, port, ["join"], token="", env=env)]
    try:
        context = zmq.Context()
        try:
            store = context.socket(zmq.DEALER)
            store.setsockopt(zmq.LINGER, 0)
            store.connect(f"tcp://127.0.0.1:{port}")
            forged = {"host": "evil", "ipc": "ipc:///evil", "tcp": "tcp://127.0.0.1:9", "pid": 1, "world": 2,
                      "rank": 1, "shm": False, "shm_signals": False}
            keys = ["gen1/member/0", "gen1/member/1"]
            store.send(msgpack.packb({"op": "join", "key": ["gen1/member/1", keys], "value": forged, "token": b"",
                                      "id": 1}, use_bin_type=True))
            wait_for(lambda: store.poll(0), "the store to answer the stranger's join", procs=procs)
            reply = msgpack.unpackb(store.recv(), raw=False)
            assert reply["error"] is None and len(reply["secret"]) == 32, reply
            store.close()
        finally:
            context.destroy(linger=0)  # closes what an error left open: term() would wait on it forever
        procs.append(start_rank(FAULTS, 1, 2, port, ["join"], token="", env=env))
    except BaseException:
        collect(procs, timeout=1)
        raise
    results = collect(procs, timeout=60)
    rank1 = [rec for rec in json_lines(results[1].stdout) if "error" in rec]
    assert rank1 and "already claimed by pid 1 on host evil" in rank1[-1]["message"], format_results(results)
    assert results[0].returncode != 0 or any("error" in rec for rec in json_lines(results[0].stdout)), \
        format_results(results)


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
            context.destroy(linger=0)  # closes what an error left open: term() would wait on it forever
    finally:
        (tmp_path / "go").touch()
    results = collect(procs, timeout=60)
    check_cases(results, min_cases=7)
    for r in results:
        assert "not distnn peers (failed handshake)" in r.stderr, f"rank {r.rank} counted nothing dropped:\n{r.stderr}"
        # Counted, and logged at a bounded rate: a line per kind and summary, not one per message.
        assert r.stderr.count("[distnn]") <= 10, r.stderr


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
            context.destroy(linger=0)  # closes what an error left open: term() would wait on it forever
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
    from distnn.distributed import auth, wire
    from distnn.distributed.transport import Transport
    context = zmq.Context()
    transport = Transport(context, 0, 1, "127.0.0.1", str(tmp_path))
    transport.authenticate(b"\x00" * 8, b"secret")
    senders = []  # kept open: a collected socket would drop its unsent frame

    try:
        def push(nbytes):
            sock = context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            auth.configure_client(sock, auth.credential(b"secret", b"\x00" * 8))
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
    finally:
        transport.close()
        context.destroy(linger=0)
    assert "wrong number of frames" in capfd.readouterr().err, "a frame at the cap did not arrive"
