"""The launchers' meeting (launcher/rendezvous.py) under hostile or broken
peers: strangers that send bad joins, idle or flooding connections, the
address node 0 listens on, and a node 0 that falls silent mid-job."""

import json
import socket
import subprocess
import threading
import time
import uuid

import pytest

import netns
from launcher import rendezvous
from multiproc import free_port, wait_for_files

BEHAVE = "tests/launcher/workers/behave.py"
TOKEN = {"DISTNN_JOB_TOKEN": "shared-secret"}


def connect(port, host="127.0.0.1", timeout=10.0):
    """A connection to node 0's launcher, retried until it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=2.0)
            sock.settimeout(5.0)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_message(sock):
    """The next JSON line from ``sock``; None when it closes first."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def send_join(port, **fields):
    """Join as a stranger would: the answer node 0 gives (None when it just hangs up)."""
    join = {"type": "join", "node_rank": 1, "nnodes": 2, "workers": 1, "token_fixed": False, "proof": ""}
    join.update(fields)
    with connect(port) as sock:
        hello = read_message(sock)
        assert hello["type"] == "hello", hello
        sock.sendall(json.dumps(join).encode() + b"\n")
        return read_message(sock)


def send_raw(port, line):
    """Send ``line`` after the hello; the answer, if any."""
    with connect(port) as sock:
        read_message(sock)
        sock.sendall(line)
        return read_message(sock)


@pytest.mark.timeout(60)
def test_invalid_join_without_token_is_refused_and_the_job_goes_on(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[0], port=port)
    answer = send_join(port, node_rank=7)
    assert answer["type"] == "reject" and "Actual: 7" in answer["reason"], answer
    more, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[1], port=port)
    results = [launch.finish(p) for p in (procs[0], more[1])]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    assert "refused a join from 127.0.0.1" in results[0].stderr


@pytest.mark.timeout(60)
def test_refused_joins_are_named_when_node_0_times_out(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 3], nodes=[0], port=port)
    assert send_join(port, node_rank=7)["type"] == "reject"
    result = launch.finish(procs[0])
    assert result.returncode == 1, result
    assert "node rank 1 did not join within --timeout 3s" in result.stderr, result
    assert "refused 1 join: Expect: a joining node's --node-rank in 1..1, Actual: 7" in result.stderr, result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stranger", [
    {"token_fixed": True, "proof": "00" * 32},
    {"token_fixed": True, "proof": "\u00e9\u00e9"},  # hmac.compare_digest refuses non-ASCII str
    {"token_fixed": False},
    {"token_fixed": True, "node_rank": [1], "proof": None},
    {"token_fixed": True, "node_rank": "1\n[launcher node 0] all nodes joined", "nnodes": 9},
    b"[" * 3000 + b"\n",  # json.loads raises RecursionError, not ValueError
    b"\xff\xfe not json\n",
    b"[1, 2]\n",
    b'{"type": "hello"}\n',
], ids=["wrong-proof", "non-ascii-proof", "no-token", "list-rank", "forged-log-line", "deep-json", "garbage",
        "not-an-object", "not-a-join"])
def test_stranger_is_dropped_when_the_token_is_fixed(launch, tmp_path, stranger):
    port = free_port()
    env = {0: TOKEN, 1: TOKEN}
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[0], port=port, env=env)
    answer = send_raw(port, stranger) if isinstance(stranger, bytes) else send_join(port, **stranger)
    assert answer is None or answer["type"] == "reject", answer
    time.sleep(0.3)
    assert procs[0].poll() is None, "one stranger ended node 0's launcher"
    more, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[1], port=port, env=env)
    results = [launch.finish(p) for p in (procs[0], more[1])]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    forged = [line for line in results[0].stderr.splitlines() if "all nodes joined" in line and "refused" not in line]
    assert not forged, results[0]


@pytest.mark.timeout(60)
def test_refusals_are_logged_a_bounded_number_of_times(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[0], port=port, env={0: TOKEN})
    for _ in range(30):
        assert send_join(port, token_fixed=True, proof="00")["type"] == "reject"
    more, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 20], nodes=[1], port=port, env={1: TOKEN})
    results = [launch.finish(p) for p in (procs[0], more[1])]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    lines = [line for line in results[0].stderr.splitlines() if "refused" in line]
    assert 1 <= len(lines) <= 11, results[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case, message", [
    ("workers", "node 1 was started with --nnodes 2 --workers 2, node 0 with --nnodes 2 --workers 1"),
    ("duplicate", "two launchers were started with --node-rank 1"),
])
def test_proven_misconfiguration_still_ends_the_job_at_once(launch, tmp_path, case, message):
    """With the token fixed a bad join comes from the job itself: fail now, as before."""
    port = free_port()
    if case == "workers":
        procs = [launch.start("--nnodes", 2, "--node-rank", n, "--master-port", port, "--workers", 1 + n,
                              "--timeout", 20, BEHAVE, "--pid-dir", tmp_path, env=TOKEN) for n in (0, 1)]
    else:
        procs = [launch.start("--nnodes", 3, "--node-rank", n, "--master-port", port, "--timeout", 20,
                              BEHAVE, "--pid-dir", tmp_path, env=TOKEN) for n in (0, 1, 1)]
    result = launch.finish(procs[0])
    assert result.returncode == 1 and message in result.stderr, result
    assert result.elapsed < 10, result


@pytest.mark.timeout(60)
def test_idle_connections_do_not_delay_a_node(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 10], nodes=[0], port=port)
    idle = [connect(port) for _ in range(40)]  # more than node 0 keeps in their handshake at once
    try:
        more, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 10], nodes=[1], port=port)
        joiner = launch.finish(more[1])
        assert joiner.returncode == 0 and joiner.elapsed < 5, joiner
        assert launch.finish(procs[0]).returncode == 0
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.timeout(30)
def test_a_connection_that_floods_before_its_join_is_cut_off(launch, tmp_path):
    port = free_port()
    launch.start_nodes(tmp_path, 2, ["--timeout", 10], nodes=[0], port=port)
    with connect(port) as sock:
        assert read_message(sock)["type"] == "hello"
        sock.sendall(b"x" * 65536)  # no newline: node 0 must hang up long before its 4 MiB message limit
        sock.settimeout(1.5)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass


def test_master_addr_resolution():
    port = free_port()
    assert rendezvous.meeting_addresses("127.0.0.1", port) == ([(socket.AF_INET, ("127.0.0.1", port))], None)
    assert rendezvous.meeting_addresses("::1", port)[0] == [(socket.AF_INET6, ("::1", port, 0, 0))]
    families = {family for family, _ in rendezvous.meeting_addresses("localhost", port)[0]}
    assert families and families <= {socket.AF_INET, socket.AF_INET6}
    for addr in ("192.0.2.1", "2001:db8::1", "no-such-host.invalid"):  # documentation ranges: never local
        addresses, why = rendezvous.meeting_addresses(addr, port)
        assert addresses == [] and addr in why, why


@pytest.mark.timeout(30)
def test_node_0_listens_only_on_master_addr(launch, tmp_path):
    port = free_port()
    launch.start_nodes(tmp_path, 2, ["--timeout", 10, "--master-addr", "127.0.0.1"], nodes=[0], port=port)
    connect(port).close()
    for other in ("127.0.0.2", "::1"):  # addresses of this host that 127.0.0.1 is not
        family = socket.AF_INET6 if ":" in other else socket.AF_INET
        with socket.socket(family) as sock, pytest.raises(ConnectionRefusedError):
            sock.settimeout(2.0)
            sock.connect((other, port))


@pytest.mark.timeout(60)
def test_ipv6_master_addr(launch, tmp_path):
    procs, _ = launch.start_nodes(tmp_path, 2, ["--master-addr", "::1", "--timeout", 20])
    results = [launch.finish(p) for p in procs.values()]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))


def test_control_channel_gives_up_on_unacknowledged_data():
    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("no TCP_USER_TIMEOUT on this platform")
    with socket.create_server(("127.0.0.1", 0)) as server:
        for timeout, expected_ms in ((1, 10000), (15, 15000), (300, 25000)):
            with socket.create_connection(server.getsockname()) as sock:
                channel = rendezvous.Channel(sock, node_rank=0, timeout=timeout)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == expected_ms
                channel.close()
                server.accept()[0].close()


class SilentNode0:
    """A node 0 that admits one node, tells it to start, and then neither reads nor answers."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            sock, _ = self.server.accept()
        except OSError:
            return
        self.conns.append(sock)
        sock.sendall(b'{"type": "hello", "nonce": "n"}\n')
        read_message(sock)
        start = {"type": "start", "restart_count": 0, "master_port": free_port(), "token": "ab" * 32,
                 "run_id": uuid.uuid4().hex}
        sock.sendall(b'{"type": "accepted"}\n' + json.dumps(start).encode() + b"\n")

    def close(self):
        self.server.close()
        self.thread.join(5)
        for sock in self.conns:
            sock.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_flags, reported", [(["--fail-rank", 1], "rank 1 failed"),
                                                     ([], "its workers finished")])
def test_follower_gives_up_on_a_silent_node_0(launch, tmp_path, worker_flags, reported):
    """A partition looks like this to the far node (TCP retransmits for ~15 minutes): it must
    leave within the grace period and a few seconds of reporting to node 0."""
    node0 = SilentNode0()
    try:
        proc = launch.start("--nnodes", 2, "--node-rank", 1, "--master-port", node0.port, "--grace-period", 1,
                            "--timeout", 10, BEHAVE, "--pid-dir", tmp_path, *worker_flags)
        result = launch.finish(proc, timeout=30)
    finally:
        node0.close()
    assert result.returncode == 1, result
    assert "lost node 0's launcher" in result.stderr and reported in result.stderr, result
    assert result.elapsed < 1 + rendezvous.ANSWER_SLACK + 8, result  # startup, the grace period, slack


@pytest.mark.timeout(60)
def test_finished_node_waits_for_a_busy_node_0(launch, tmp_path):
    """Node 0's heartbeat keeps a node whose workers are done from mistaking it for a silent one."""
    slow = 1 + rendezvous.ANSWER_SLACK + 2  # node 0's worker outlives the silence a finished node allows
    procs, _ = launch.start_nodes(tmp_path, 2, ["--grace-period", 1],
                        ["--exit-rank", 0, "--exit-code", 0, "--fail-after", slow])
    results = [launch.finish(p) for p in procs.values()]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))


@pytest.mark.timeout(60)
def test_node_0_gives_up_on_a_follower_that_never_reports(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--grace-period", 0, "--timeout", 10], ["--fail-rank", 0],
                        nodes=[0], port=port)
    with connect(port) as sock:
        read_message(sock)
        sock.sendall(b'{"type": "join", "node_rank": 1, "nnodes": 2, "workers": 1, "token_fixed": false}\n')
        result = launch.finish(procs[0], timeout=40)
    assert result.returncode == 1, result
    assert "node 1's launcher did not report back after the stop" in result.stderr, result
    assert result.elapsed < 25, result


@pytest.fixture
def two_hosts():
    """Two hosts of tests/netns.py: the command prefixes that run on each, host 0's address,
    and a function that partitions them (every packet dropped both ways, as a dead switch would)."""
    with netns.two_hosts() as hosts:
        yield [hosts.prefix(0), hosts.prefix(1)], hosts.address(0), hosts.partition


@pytest.mark.timeout(90)
def test_partitioned_nodes_both_exit_soon_after_the_timeout(launch, tmp_path, two_hosts):
    """The far node reports a failure that never gets through: TCP would retransmit it for ~15 minutes."""
    prefixes, master, partition = two_hosts
    port = free_port()
    procs = {}
    for node, prefix in enumerate(prefixes):
        (tmp_path / f"node{node}").mkdir()
        procs[node] = launch.start("--nnodes", 2, "--node-rank", node, "--master-addr", master,
                                   "--master-port", port, "--timeout", 5, "--grace-period", 1, BEHAVE,
                                   "--pid-dir", tmp_path / f"node{node}", "--sleep", 60, "--fail-rank", 1,
                                   "--fail-after", 3, prefix=prefix)
    wait_for_files(tmp_path, "node*/ready_*", 2)
    try:
        partition()
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot drop packets with tc here: {e}")
    cut = time.monotonic()
    results = {node: launch.finish(proc, timeout=60) for node, proc in procs.items()}
    for node, result in results.items():
        after_cut = result.elapsed - (cut - procs[node].started)
        assert result.returncode == 1 and after_cut < 5 + 15, (after_cut, result)  # --timeout and a few seconds
    assert "lost node 0's launcher" in results[1].stderr, results[1]
    assert "node 1's launcher is gone" in results[0].stderr, results[0]
