"""launcher/worker_env.py and launcher/output.py, without starting workers:
the environment contract, BLAS thread caps, port reservations, and whole
prefixed lines."""

import os
import re
import socket
import threading

import pytest

from launcher import output
from launcher.cli import parse_args
from launcher.worker_env import PortReservation, new_token, threads_per_worker, worker_env
from multiproc import REPO

SCRIPT = str(REPO / "tests" / "launcher" / "workers" / "probe.py")


def env_for(argv, local_rank, base=None, **kwargs):
    cfg = parse_args([*argv, SCRIPT])
    args = dict(restart_count=0, master_port=1234, token="t" * 64, error_file="/tmp/e.json", launch_id="L",
                launcher_pid=99, run_id="R", runtime_dir="/tmp/distnn-launcher-1-x/runtime")
    args.update(kwargs)
    return worker_env(base or {}, cfg, local_rank, **args)


@pytest.mark.parametrize("argv, local_rank, expected", [
    (["--workers", "4"], 2, dict(RANK="2", LOCAL_RANK="2", WORLD_SIZE="4", LOCAL_WORLD_SIZE="4", GROUP_RANK="0",
                                 GROUP_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="1234")),
    (["--workers", "2", "--nnodes", "3", "--node-rank", "2", "--master-port", "29500", "--master-addr", "10.0.0.1"],
     1, dict(RANK="5", LOCAL_RANK="1", WORLD_SIZE="6", LOCAL_WORLD_SIZE="2", GROUP_RANK="2", GROUP_WORLD_SIZE="3",
             MASTER_ADDR="10.0.0.1")),
    (["--max-restarts", "3", "--timeout", "12.5"], 0,
     dict(DISTNN_MAX_RESTARTS="3", DISTNN_TIMEOUT="12.5", DISTNN_RESTART_COUNT="0", DISTNN_JOB_TOKEN="t" * 64,
          DISTNN_ERROR_FILE="/tmp/e.json", DISTNN_LAUNCH_ID="L", DISTNN_LAUNCHER_PID="99", DISTNN_RUN_ID="R",
          DISTNN_RUNTIME_DIR="/tmp/distnn-launcher-1-x/runtime", PYTHONUNBUFFERED="1")),
])
def test_worker_environment(argv, local_rank, expected):
    env = env_for(argv, local_rank)
    assert {k: env[k] for k in expected} == expected


@pytest.mark.parametrize("workers, cores, expected", [(4, 2, 1), (2, 8, 4), (3, 8, 2), (1, 16, 16), (16, 4, 1)])
def test_threads_per_worker(workers, cores, expected):
    assert threads_per_worker(workers, cores) == expected


def test_blas_threads_capped_unless_the_user_set_them():
    env = env_for(["--workers", "4"], 0)
    assert {env[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} == \
        {str(threads_per_worker(4))}
    env = env_for(["--workers", "4"], 0, base={"OMP_NUM_THREADS": "7", "PYTHONUNBUFFERED": "0", "HOME": "/h"})
    assert (env["OMP_NUM_THREADS"], env["PYTHONUNBUFFERED"], env["HOME"]) == ("7", "0", "/h")
    assert env["MKL_NUM_THREADS"] == str(threads_per_worker(4))


def test_blas_idle_spin_is_short_unless_the_user_set_it():
    assert env_for(["--workers", "2"], 0)["OPENBLAS_THREAD_TIMEOUT"] == "20"
    assert env_for(["--workers", "2"], 0, base={"OPENBLAS_THREAD_TIMEOUT": "28"})["OPENBLAS_THREAD_TIMEOUT"] == "28"


def test_tokens_are_32_random_bytes_in_hex():
    tokens = {new_token() for _ in range(4)}
    assert len(tokens) == 4
    assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in tokens)


def test_reserved_port_is_never_handed_out_but_rank_0_can_listen_on_it():
    reservation = PortReservation()
    try:
        others = []
        for _ in range(50):  # nobody asking the kernel for a free port gets ours
            s = socket.socket()
            s.bind(("", 0))
            others.append(s)
        assert reservation.port not in {s.getsockname()[1] for s in others}
        for s in others:
            s.close()
        with socket.socket() as server:  # what ZeroMQ does on rank 0
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", reservation.port))
            server.listen()
            with pytest.raises(OSError):  # a fixed --master-port somebody listens on is refused up front
                PortReservation(reservation.port).release()
    finally:
        reservation.release()


def pump_lines(echo_lines, capfd):
    """Feed pipes through an OutputPump; what reached stdout and stderr."""
    pump = output.OutputPump(echo=True)
    pipes = []
    for rank, (data_out, data_err) in enumerate(echo_lines):
        for name, data in (("stdout", data_out), ("stderr", data_err)):
            read_end, write_end = os.pipe()
            pump.add(rank, os.fdopen(read_end, "rb"), name)
            pipes.append((write_end, data))
    writers = [threading.Thread(target=lambda w=w, d=d: (os.write(w, d), os.close(w))) for w, d in pipes]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    pump.wait_closed(range(len(echo_lines)), timeout=5)
    tails = [pump.tail(rank) for rank in range(len(echo_lines))]
    pump.close()
    captured = capfd.readouterr()
    return captured.out.split("\n")[:-1], captured.err.split("\n")[:-1], tails


def test_pump_prefixes_whole_lines_and_keeps_streams_apart(capfd):
    long = b"x" * 200_000  # longer than one read and than the line cap: comes out in whole pieces
    out, err, tails = pump_lines([(b"a\nb\npartial", b"e1\n"), (long + b"\n", b"e2\r\nlast")], capfd)
    assert sorted(out)[:3] == ["[rank 0] a", "[rank 0] b", "[rank 0] partial"]
    assert "".join(line[len("[rank 1] "):] for line in out if line.startswith("[rank 1]")) == "x" * 200_000
    assert all(line.startswith("[rank 1] x") for line in out if "x" in line)
    assert sorted(err) == ["[rank 0] e1", "[rank 1] e2\r", "[rank 1] last"]
    assert tails == [["e1"], ["e2", "last"]]


def test_launcher_messages_are_tagged(capfd):
    output.log("two\nlines", node_rank=1)
    output.log("one")
    assert capfd.readouterr().err == "[launcher node 1] two\n[launcher node 1] lines\n[launcher] one\n"
