"""A bad rendezvous address fails at once, naming the setting to fix: an unresolvable
or implausible MASTER_ADDR (or init_method host), an address not on rank 0's host,
and a port already taken (distnn/distributed/env.py, store.py, process_group.py)."""

import json
import socket
import sys

import pytest
import zmq

from distnn.distributed import DistributedError
from distnn.distributed import env, network
from distnn.distributed.store import StoreServer
from multiproc import collect, format_results, free_port, rank_env, start

NOT_HERE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): routable on most hosts, never an address of this one
FAIL_FAST_S = 2.0  # a bound on a hang (the bug was a 5 s wait), not a benchmark


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _routable(address):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))
        return True
    except OSError:
        return False


def _binds_here(host):
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family) as s:
            s.bind(sockaddr)
        return True
    except OSError:
        return False


THIS_HOST = socket.gethostname()
needs_this_host = pytest.mark.skipif(not _binds_here(THIS_HOST),
                                     reason=f"this host's name {THIS_HOST!r} is not an address of this host")
needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
needs_route = pytest.mark.skipif(not _routable(NOT_HERE), reason=f"this host has no route to {NOT_HERE}")


def _master(host):
    return env.resolve_master(environ={"MASTER_ADDR": host, "MASTER_PORT": "29500"})


def _bind_host(master, spans_hosts=False, environ=None):
    return network.data_host(master, spans_hosts, environ or {})[0]


@pytest.mark.parametrize("master", ["127.0.0.1", "localhost", "127.0.0.2",
                                    pytest.param("::1", marks=needs_ipv6)])
def test_loopback_master_binds_loopback(master):
    assert _bind_host(_master(master)) == "127.0.0.1"


def test_unresolvable_master_is_a_value_error_not_gaierror():
    with pytest.raises(ValueError, match="'no-such-host.invalid' does not resolve") as info:
        _master("no-such-host.invalid")
    assert not isinstance(info.value, socket.gaierror)


def test_bind_host_uses_the_addresses_env_resolved(monkeypatch):
    # A second lookup could disagree with the first (or hang on a slow resolver): there is none.
    def no_lookup(*args, **kwargs):
        raise AssertionError(f"unexpected lookup: getaddrinfo{args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    loopback = env.Master("localhost", 29500, ((socket.AF_INET, ("127.0.0.1", 29500)),))
    assert _bind_host(loopback) == "127.0.0.1"
    remote = env.Master("node7", 29500, ((socket.AF_INET, ("127.0.0.1", 29500)),))  # loopback by accident
    assert _bind_host(remote) in {address for _, address in network.interfaces.addresses(socket.AF_INET)} | {
        "127.0.0.1"}


@needs_ipv6
def test_ipv6_master_probes_with_an_ipv6_socket(monkeypatch):
    # Loopback short-circuits the probe, so pretend ::1 is remote to reach the IPv6 route lookup
    # (an AF_INET probe cannot even resolve an IPv6 literal).
    monkeypatch.setattr(network, "is_loopback", lambda master: False)
    assert _bind_host(_master("::1")) == "[::1]"  # bracketed, as a tcp:// endpoint needs


@needs_route
def test_remote_master_binds_an_address_of_this_host():
    local = _bind_host(_master(NOT_HERE))
    with socket.socket() as s:
        s.bind((local, 0))


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


def _bind_error(context, host, port):
    with pytest.raises(DistributedError) as info:
        StoreServer(context, host, port, b"token", world_size=1)
    return str(info.value)


def test_store_port_in_use_suggests_another_job(context):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _bind_error(context, "127.0.0.1", port)
    assert f"is another job using MASTER_PORT {port}?" in message
    assert "not an address of this host" not in message


@needs_route
def test_store_address_not_here_names_master_addr(context):
    message = _bind_error(context, NOT_HERE, free_port())
    assert f"MASTER_ADDR={NOT_HERE} is not an address of this host" in message
    assert "MASTER_PORT" not in message


@needs_ipv6
def test_store_other_bind_errors_carry_no_guess(context):
    # Without ZeroMQ's IPV6 option an IPv6 bind fails with ENODEV: neither the port nor the
    # address-of-this-host hint is the cause, so neither may be suggested.
    message = _bind_error(context, "::1", free_port())
    assert "MASTER_PORT" not in message and "MASTER_ADDR" not in message


# One rank, world_size=1, in a fresh process (a failed rendezvous keeps its sockets for a retry,
# which must not leak into the test process). Prints what init_process_group raised, how fast,
# and each host name it looked up.
_INIT = """
import json, socket, sys, time
import distnn.distributed as dist
lookups, getaddrinfo = [], socket.getaddrinfo
def counting_getaddrinfo(host, *args, **kwargs):
    lookups.append(host)
    return getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = counting_getaddrinfo
init_method = sys.argv[1] or None
start = time.monotonic()
try:
    dist.init_process_group(init_method=init_method, rank=0, world_size=1)
    outcome = {"error": None, "message": ""}
    dist.destroy_process_group()
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(dict(outcome, elapsed=time.monotonic() - start, lookups=lookups)))
"""


def _init_rank0(master_addr, port, init_method=""):
    env = rank_env(0, 1, port, extra={"MASTER_ADDR": master_addr, "DISTNN_TIMEOUT": "10"})
    [result] = collect([start([sys.executable, "-c", _INIT, init_method], env)], timeout=60)
    assert result.returncode == 0, format_results([result])
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("master_addr, init_method, error, names", [
    ("no-such-host.invalid", "", "ValueError", ["MASTER_ADDR='no-such-host.invalid'", "does not resolve"]),
    ("127.0.0.1", "tcp://no-such-host.invalid:{port}", "ValueError",
     ["init_method='tcp://no-such-host.invalid:{port}'", "does not resolve"]),
    ("", "", "ValueError", ["MASTER_ADDR=''"]),
    ("my host", "", "ValueError", ["MASTER_ADDR='my host'"]),
    ("tcp://127.0.0.1", "", "ValueError", ["MASTER_ADDR='tcp://127.0.0.1'"]),
    pytest.param(NOT_HERE, "", "DistributedError", [f"MASTER_ADDR={NOT_HERE} is not an address of this host"],
                 marks=needs_route),
])
def test_bad_master_fails_fast_naming_it(master_addr, init_method, error, names):
    port = free_port()
    outcome = _init_rank0(master_addr, port, init_method.format(port=port))
    assert outcome["error"] == error, outcome
    for name in names:
        assert name.format(port=port) in outcome["message"], outcome
    assert "MASTER_PORT" not in outcome["message"], outcome  # the port is fine: no guess about it
    assert outcome["elapsed"] < FAIL_FAST_S, outcome


def test_master_port_in_use_fails_fast_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = _init_rank0("127.0.0.1", port)
    assert outcome["error"] == "DistributedError", outcome
    assert f"is another job using MASTER_PORT {port}?" in outcome["message"], outcome
    assert outcome["elapsed"] < FAIL_FAST_S, outcome


@pytest.mark.parametrize("master_addr", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_master_on_loopback_joins(master_addr):
    outcome = _init_rank0(master_addr, free_port())
    assert outcome["error"] is None, outcome


@pytest.mark.parametrize("master_addr, lookups", [
    ("localhost", 1),
    pytest.param(THIS_HOST, 1, marks=needs_this_host),  # a name that is not the "localhost" shortcut
    ("127.0.0.1", 0),  # a literal address needs no lookup at all
])
def test_master_addr_is_looked_up_once(master_addr, lookups):
    # env checks the name and hands its addresses on: the process group's loopback test and
    # bind-interface choice look nothing up again, so they cannot disagree with env's answer.
    outcome = _init_rank0(master_addr, free_port())
    assert outcome["lookups"] == [master_addr] * lookups, outcome
    assert outcome["error"] is None, outcome


def test_a_store_that_never_answers_is_named_as_unreachable():
    # Rank 1 of 2 with nobody at MASTER_ADDR:MASTER_PORT: not "ranks [0, 1] missing", which
    # would blame the other ranks, but the store itself, and what to check.
    code = ("import datetime, distnn.distributed as dist\n"
            "try:\n"
            "    dist.init_process_group(rank=1, world_size=2, timeout=datetime.timedelta(seconds=2))\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    port = free_port()
    [result] = collect([start([sys.executable, "-c", code], rank_env(1, 2, port))], timeout=60)
    assert result.returncode == 0, format_results([result])
    assert "DistributedTimeoutError" in result.stdout, result.stdout
    assert f"this rank never reached the store at tcp://127.0.0.1:{port}" in result.stdout, result.stdout
    assert "MASTER_PORT open in its firewall" in result.stdout, result.stdout
