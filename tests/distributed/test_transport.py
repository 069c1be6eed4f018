"""The data port's own guards (distnn/distributed/transport.py, auth.py): the
credential that opens it, the private ipc folder of each rank and the sweep of
folders that killed ranks left behind, and the bounded log of dropped traffic."""

import os
import stat
import subprocess
import sys
import time

import pytest
import zmq

from distnn.distributed import auth
from distnn.distributed.transport import Transport, ipc_directory


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ipc_folder_is_private_and_leftovers_of_dead_ranks_are_swept(tmp_path):
    dead = tmp_path / f"distnn-ipc-{dead_pid()}-abc123"
    alive = tmp_path / f"distnn-ipc-{os.getpid()}-def456"
    unrelated = tmp_path / "distnn-ipc-notapid-x"
    for folder in (dead, alive, unrelated):
        folder.mkdir(mode=0o700)
        (folder / "0.sock").write_bytes(b"")
    made = ipc_directory(str(tmp_path))
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    assert os.path.basename(made).startswith(f"distnn-ipc-{os.getpid()}-")
    assert not dead.exists(), "a dead rank's ipc folder was not swept"
    assert alive.exists() and unrelated.exists(), "a live rank's (or a foreign) folder was removed"


def test_ipc_folder_falls_back_to_tmp_where_the_socket_path_would_be_too_long(tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    made = ipc_directory(str(deep))
    try:
        assert os.path.dirname(made) == "/tmp" and len(os.path.join(made, "65535.sock")) <= 107, made
    finally:
        os.rmdir(made)


@pytest.mark.timeout(30)
def test_only_the_jobs_credential_opens_the_data_port(tmp_path):
    context = zmq.Context()
    transport = Transport(context, 0, 2, "127.0.0.1", str(tmp_path))
    job = b"\x01" * 8
    transport.authenticate(job, b"the secret")
    senders = []
    try:
        for password in (auth.credential(b"another secret", job), b"guess", None):
            sock = context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            if password is not None:
                auth.configure_client(sock, password)
            sock.connect(transport.tcp_endpoint)
            sock.send_multipart([b"forged", b""])
            senders.append(sock)
        deadline = time.monotonic() + 5
        while transport.drops.total() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        transport.drain()
        assert not transport._queues and transport.drops.total() >= 3, transport.drops.counts
        # The right credential is admitted: its (malformed) message reaches the header checks.
        good = context.socket(zmq.PUSH)
        good.setsockopt(zmq.LINGER, 0)
        auth.configure_client(good, auth.credential(b"the secret", job))
        good.connect(transport.tcp_endpoint)
        good.send_multipart([b"not a header", b""])
        senders.append(good)
        transport.wait_readable(5000)
        transport.drain()
        assert transport.drops.counts.get("malformed message(s) on the data port") == 1, transport.drops.counts
    finally:
        for sock in senders:
            sock.close(linger=0)
        transport.close()
        context.destroy(linger=0)


def test_drop_log_is_bounded(capfd):
    drops = auth.DropLog("rank 0: ", every=60)
    for i in range(10000):
        drops.drop("malformed message(s)", f"sender {i}")
    drops.drop("connection(s) without the job's credential", "from 10.0.0.1")
    drops.flush()
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines  # the first of each kind at once, with what was held back
    assert "9999 x malformed message(s) (latest: sender 9999)" in lines[-1], lines
    assert "1 x connection(s) without the job's credential (latest: from 10.0.0.1)" in lines[-1], lines
    assert drops.total() == 10001
