"""The network settings and their errors, in one process (distnn/distributed/network.py,
interfaces.py, locality.py): DISTNN_PORT_RANGE, DISTNN_SOCKET_IFNAME,
DISTNN_FORCE_TCP, DISTNN_HEARTBEAT_TIMEOUT, what a failed bind says, and the
same-host checks. Multi-host behaviour is in test_multihost.py."""

import socket

import pytest
import zmq

from distnn.distributed import DistributedError, env, interfaces, locality, network


@pytest.fixture
def context():
    ctx = zmq.Context()
    ctx.setsockopt(zmq.IPV6, 1)
    yield ctx
    ctx.term()


def _pull(context):
    sock = context.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    return sock


def _free_range(count):
    """``count`` consecutive ports free on 127.0.0.1 now (first, last)."""
    for first in range(30000, 31900, count + 1):
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first, first + count - 1
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    pytest.skip("no free run of ports found")


def test_data_ports_come_from_the_port_range_until_it_is_used_up(context):
    first, last = _free_range(2)
    environ = {"DISTNN_PORT_RANGE": f"{first}-{last}"}
    socks = [_pull(context) for _ in range(3)]
    try:
        endpoints = [network.bind_data_port(socks[i], "127.0.0.1", local_rank=i, environ=environ) for i in (0, 1)]
        assert sorted(endpoints) == [f"tcp://127.0.0.1:{p}" for p in (first, last)]
        with pytest.raises(DistributedError, match=f"no free port in DISTNN_PORT_RANGE={first}-{last} on "
                                                   "127.0.0.1: all 2 are in use"):
            network.bind_data_port(socks[2], "127.0.0.1", local_rank=2, environ=environ)
    finally:
        for sock in socks:
            sock.close()


def test_without_a_range_the_kernel_picks_and_the_endpoint_is_spelled_as_bound(context):
    sock = _pull(context)
    try:
        endpoint = network.bind_data_port(sock, "127.0.0.1", 0, environ={})
        assert endpoint.startswith("tcp://127.0.0.1:") and int(endpoint.rpartition(":")[2]) > 0
    finally:
        sock.close()


@pytest.mark.parametrize("raw", ["x", "10-5", "0-5", "5-70000", "1-2-3"])
def test_bad_port_range_names_the_variable(raw):
    with pytest.raises(ValueError, match=f"DISTNN_PORT_RANGE 'first-last'.*Actual: '{raw}'"):
        network.port_range({"DISTNN_PORT_RANGE": raw})


def test_port_range_of_one_port():
    assert network.port_range({"DISTNN_PORT_RANGE": " 29600 "}) == (29600, 29600)
    assert network.port_range({}) is None


@pytest.mark.parametrize("raw, expected", [(None, 10.0), ("2.5", 2.5)])
def test_heartbeat_timeout(raw, expected):
    assert network.heartbeat_timeout({} if raw is None else {"DISTNN_HEARTBEAT_TIMEOUT": raw}) == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-1"])
def test_bad_heartbeat_timeout_names_the_variable(raw):
    with pytest.raises(ValueError, match="DISTNN_HEARTBEAT_TIMEOUT"):
        network.heartbeat_timeout({"DISTNN_HEARTBEAT_TIMEOUT": raw})


@pytest.mark.parametrize("raw, expected", [(None, False), ("0", False), ("1", True), ("yes", True), ("off", False)])
def test_force_tcp(raw, expected):
    assert network.force_tcp({} if raw is None else {"DISTNN_FORCE_TCP": raw}) is expected


def test_bad_force_tcp_names_the_variable():
    with pytest.raises(ValueError, match="DISTNN_FORCE_TCP.*'maybe'"):
        network.force_tcp({"DISTNN_FORCE_TCP": "maybe"})


def test_socket_ifname_picks_that_interface():
    master = env.Master("10.0.0.1", 29500, ((socket.AF_INET, ("10.0.0.1", 29500)),))
    assert network.data_host(master, True, {"DISTNN_SOCKET_IFNAME": "nosuch9, lo"}) == ("127.0.0.1", None)
    assert interfaces.choose(["l"], socket.AF_INET, "X") == ("lo", "127.0.0.1")  # a prefix


def test_gloo_socket_ifname_is_honoured_when_ours_is_unset():
    master = env.Master("10.0.0.1", 29500, ((socket.AF_INET, ("10.0.0.1", 29500)),))
    assert network.data_host(master, True, {"GLOO_SOCKET_IFNAME": "lo"}) == ("127.0.0.1", None)
    with pytest.raises(DistributedError, match="Actual: GLOO_SOCKET_IFNAME=nosuch9"):
        network.data_host(master, True, {"GLOO_SOCKET_IFNAME": "nosuch9"})
    assert network.ifnames({"GLOO_SOCKET_IFNAME": "eth1", "DISTNN_SOCKET_IFNAME": "ib0"}) == (
        "DISTNN_SOCKET_IFNAME", ["ib0"])


def test_socket_ifname_that_matches_nothing_names_it_and_what_exists():
    master = env.Master("10.0.0.1", 29500, ((socket.AF_INET, ("10.0.0.1", 29500)),))
    with pytest.raises(DistributedError) as info:
        network.data_host(master, True, {"DISTNN_SOCKET_IFNAME": "nosuch9"})
    assert "Actual: DISTNN_SOCKET_IFNAME=nosuch9" in str(info.value) and "lo: 127.0.0.1" in str(info.value)


def _bind_error(context, endpoint, **names):
    sock = _pull(context)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        return network.explain_bind_error(exc, endpoint, "the store", **names)
    finally:
        sock.close()
    pytest.fail(f"binding {endpoint} worked")


def test_bind_errors_say_what_went_wrong(context):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = _bind_error(context, f"tcp://127.0.0.1:{port}", port_var="MASTER_PORT", addr_var="MASTER_ADDR")
    assert in_use.endswith(f"port {port} is already in use on this host (is another job using MASTER_PORT {port}?)")
    not_here = _bind_error(context, "tcp://198.51.100.7:29500", port_var="MASTER_PORT", addr_var="MASTER_ADDR")
    assert "MASTER_ADDR=198.51.100.7 is not an address of this host" in not_here and "MASTER_PORT" not in not_here
    empty = _bind_error(context, "tcp://:29500", port_var="MASTER_PORT")
    assert empty.endswith("the address is empty") and "MASTER_PORT" not in empty


def test_ipv6_bind_without_ipv6_says_so():
    plain = zmq.Context()  # the IPv6 option off: an IPv6 address cannot be bound
    try:
        message = _bind_error(plain, "tcp://[::1]:29500", port_var="MASTER_PORT", addr_var="MASTER_ADDR")
    finally:
        plain.term()
    assert "cannot bind the IPv6 address ::1" in message and "MASTER_PORT" not in message


FACTS = {"host": "h/boot", "shm": True, "tcp_only": False, "shm_dir": [27, 1], "pid_ns": [4, 4026531836]}


@pytest.mark.parametrize("other, shares", [
    ({}, True),
    ({"host": "other/boot"}, False),            # another host
    ({"shm_dir": [41, 1]}, False),              # a private /dev/shm: same hostname, another container
    ({"pid_ns": [4, 99]}, False),               # another pid namespace
    ({"tcp_only": True}, False),                # DISTNN_FORCE_TCP on that rank
    ({"shm": False}, False),                    # DISTNN_SHM=0 there
])
def test_shared_memory_needs_the_same_host_and_dev_shm(other, shares):
    theirs = dict(FACTS, **other)
    assert (locality.memory_key(FACTS) == locality.memory_key(theirs) is not None) is shares


def test_ipc_is_used_only_when_the_peers_socket_file_is_visible_here(tmp_path):
    path = tmp_path / "0.sock"
    path.write_bytes(b"")
    mine = dict(FACTS, ipc_id=None)
    theirs = dict(FACTS, ipc_id=locality.file_id(str(path)))
    assert locality.ipc_reachable(mine, theirs, str(path))
    assert not locality.ipc_reachable(mine, dict(theirs, ipc_id=[1, 2]), str(path))  # another file of that name
    assert not locality.ipc_reachable(mine, theirs, str(tmp_path / "missing.sock"))  # a private /tmp
    assert not locality.ipc_reachable(dict(mine, tcp_only=True), theirs, str(path))


def test_ipv6_address_on_a_host_without_ipv6_says_so(context, monkeypatch):
    monkeypatch.setattr(interfaces, "all_addresses", lambda: [("lo", socket.AF_INET, "127.0.0.1")])
    message = _bind_error(context, "tcp://[2001:db8::7]:29500", port_var="MASTER_PORT", addr_var="MASTER_ADDR")
    assert "MASTER_ADDR=2001:db8::7 is not an address of this host" in message, message
    assert message.endswith("this host has no IPv6 address at all") and "MASTER_PORT" not in message, message
