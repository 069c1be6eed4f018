"""Jobs that span hosts, without the launcher: ranks started by hand on two network
namespaces (tests/netns.py; skipped where they cannot be made), some with their
own hostname, /tmp and /dev/shm, as separate machines or containers would be.

DDP trains exactly across them; a rank SIGKILLed on the other host, or a host cut
off, is named by every survivor within seconds (and by a recv() waiting for it); IPv6 addresses and names work;
DISTNN_SOCKET_IFNAME picks the network; hosts with one hostname but private /tmp
and /dev/shm talk over TCP; and a MASTER_ADDR that is loopback on rank 0's host
only (Debian's "127.0.1.1 hostname" line) still reaches the other hosts."""

import subprocess
import sys
import time

import numpy as np
import pytest

import distnn
from multiproc import REPO, collect, format_results, free_port, json_lines, reports, run_ranks, start_rank
from netns import two_hosts

HOSTS = "tests/distributed/workers/hosts.py"
FAULTS = "tests/distributed/workers/faults.py"
DDP = "tests/distributed/workers/ddp_train.py"


def one_rank_per_host(world_size):
    """LOCAL_RANK/LOCAL_WORLD_SIZE of a job with one rank on each host."""
    return {r: {"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"} for r in range(world_size)}


def run_hosts(prefixes, env, per_rank_env=None, timeout=60):
    results = run_ranks(HOSTS, len(prefixes), timeout=timeout, env=dict({"DISTNN_TEST_TIMEOUT": "20"}, **env),
                        per_rank_env=per_rank_env, prefixes=prefixes)
    assert all(r.returncode == 0 for r in results), format_results(results)
    return results, reports(results)


@pytest.mark.timeout(120)
def test_two_hosts_train_exactly(tmp_path):
    """Rank 1 runs on a host of its own (hostname, /tmp, /dev/shm): every byte crosses TCP."""
    steps, batch = 6, 24
    reference = tmp_path / "plain.dt"
    done = subprocess.run([sys.executable, str(REPO / DDP), str(reference), str(steps), str(batch), "--plain"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    with two_hosts() as hosts:
        ours = tmp_path / "two_hosts.dt"  # rank 0 saves it, on the host that shares this /tmp
        results = run_ranks(DDP, 2, args=[ours, steps, batch], timeout=100,
                            env={"MASTER_ADDR": hosts.address(0)}, per_rank_env=one_rank_per_host(2),
                            prefixes=[hosts.prefix(0), hosts.prefix(1, private=True, hostname="hostb")])
    assert all(r.returncode == 0 for r in results), format_results(results)
    expected, got = distnn.load(reference), distnn.load(ours)
    for name in expected:
        diff = np.abs(got[name].numpy() - expected[name].numpy()).max()
        assert diff <= 1e-5, f"{name}: max abs diff {diff} across two hosts"


def _elsewhere(hosts):
    """Ranks 0, 1 on host 0; ranks 2, 3 each in a container of its own on host 1."""
    return [hosts.prefix(0), hosts.prefix(0), hosts.prefix(1, private=True, hostname="hostb"),
            hosts.prefix(1, private=True, hostname="hostb")]


@pytest.mark.timeout(90)
def test_rank_killed_on_another_host_is_named_within_seconds():
    """Rank 3 SIGKILLs itself mid-loop; the group timeout is 60 s, yet every survivor,
    on either host, fails within seconds naming rank 3."""
    victim = 3
    with two_hosts() as hosts:
        port = free_port()
        env = {"DISTNN_TEST_TIMEOUT": "60", "DISTNN_TEST_FAST_EXIT": "1", "MASTER_ADDR": hosts.address(0)}
        procs = [start_rank(FAULTS, r, 4, port, ["kill", victim, "all_reduce", 1000], env=env, prefix=prefix)
                 for r, prefix in enumerate(_elsewhere(hosts))]
        results = collect(procs, timeout=60)
    by_rank = {r.rank: r for r in results}
    killed_at = next((rec["killing_at"] for rec in json_lines(by_rank[victim].stdout) if "killing_at" in rec), None)
    assert killed_at is not None, format_results(results)
    for rank, rep in reports([by_rank[r] for r in (0, 1, 2)]).items():
        context = f"rank {rank}: {rep}\n{format_results(results)}"
        assert rep.get("is_distributed") and not rep.get("is_timeout"), context
        assert f"rank {victim}" in rep["message"], context
        assert rep["at"] - killed_at < 8, context


@pytest.mark.timeout(60)
@pytest.mark.parametrize("elsewhere", [False, True], ids=["same_host", "other_host"])
def test_recv_from_a_rank_that_died_is_named(elsewhere):
    """A blocking recv() names its dead sender within seconds, rather than waiting out the 60 s."""
    with two_hosts() as hosts:
        prefixes = [hosts.prefix(0), hosts.prefix(1, private=True, hostname="hostb") if elsewhere else hosts.prefix(0)]
        env = {"DISTNN_TEST_TIMEOUT": "60", "DISTNN_TEST_FAST_EXIT": "1", "MASTER_ADDR": hosts.address(0)}
        results = run_ranks(HOSTS, 2, ["recv"], timeout=50, env=env, prefixes=prefixes)
    killed_at = next((rec["killing_at"] for rec in json_lines(results[1].stdout) if "killing_at" in rec), None)
    rep = reports(results[:1])[0]
    assert killed_at is not None and rep.get("is_distributed") and not rep.get("is_timeout"), format_results(results)
    assert "rank 1" in rep["message"] and rep["at"] - killed_at < 8, rep


@pytest.mark.timeout(90)
def test_host_cut_off_is_named_within_the_heartbeat_timeout():
    """Every packet between the hosts dropped (a dead switch, a powered-off host): no
    connection closes, yet with DISTNN_HEARTBEAT_TIMEOUT=2 every rank names a peer on
    the other host within seconds, far inside the 60 s group timeout."""
    with two_hosts() as hosts:
        port = free_port()
        env = {"DISTNN_TEST_TIMEOUT": "60", "DISTNN_TEST_FAST_EXIT": "1", "MASTER_ADDR": hosts.address(0),
               "DISTNN_HEARTBEAT_TIMEOUT": "2"}
        procs = [start_rank(HOSTS, r, 4, port, ["loop"], env=env, prefix=prefix)
                 for r, prefix in enumerate(_elsewhere(hosts))]
        for proc in procs:  # every rank is in its all-reduce loop once it says so (or it died)
            proc.stdout.readline()
        try:
            hosts.partition()
        except Exception as e:  # tc missing or not permitted
            collect(procs, timeout=0.1)  # kills them
            pytest.skip(f"cannot drop packets here: {e}")
        cut = time.time()
        results = collect(procs, timeout=60)
    for rank, rep in reports(results).items():
        context = f"rank {rank}: {rep}\n{format_results(results)}"
        assert rep.get("is_distributed") and not rep.get("is_timeout"), context
        others = (2, 3) if rank < 2 else (0, 1)
        assert any(f"rank {r} is dead or unreachable" in rep["message"] or f"rank {r} failed" in rep["message"]
                   for r in others), context
        assert rep["at"] - cut < 2 + 8, context


@pytest.mark.timeout(60)
@pytest.mark.parametrize("by_name", [False, True], ids=["address", "name"])
def test_ipv6_master(by_name):
    with two_hosts() as hosts:
        master = hosts.address(0, ipv6=True)
        for host in (0, 1):
            hosts.hosts_file(host, f"127.0.0.1 localhost\n{master} v6master\n")
        _, got = run_hosts([hosts.prefix(0), hosts.prefix(1, hostname="hostb")],
                           {"MASTER_ADDR": "v6master" if by_name else master}, one_rank_per_host(2))
    assert got[0]["tcp"].startswith(f"tcp://[{master}]:"), got
    assert got[1]["routes"]["0"] == got[0]["tcp"] and got[0]["routes"]["1"] == got[1]["tcp"], got


@pytest.mark.timeout(60)
def test_socket_ifname_chooses_the_network():
    """MASTER_ADDR is on the first link; DISTNN_SOCKET_IFNAME names the second link's
    interface of each host (one list for both), so the data goes there."""
    with two_hosts(links=2) as hosts:
        names = f"nosuch0,{hosts.interface(0, link=1)},{hosts.interface(1, link=1)}"
        _, got = run_hosts([hosts.prefix(0), hosts.prefix(1, hostname="hostb")],
                           {"MASTER_ADDR": hosts.address(0), "DISTNN_SOCKET_IFNAME": names},
                           one_rank_per_host(2))
        for rank in (0, 1):
            assert got[rank]["tcp"].startswith(f"tcp://{hosts.address(rank, link=1)}:"), got
        bad = run_ranks(HOSTS, 1, timeout=30, env={"MASTER_ADDR": hosts.address(0), "DISTNN_SOCKET_IFNAME": "nosuch0"},
                        prefixes=[hosts.prefix(0)])
    assert bad[0].returncode != 0
    assert "DISTNN_SOCKET_IFNAME=nosuch0" in bad[0].stderr and hosts.interface(0) in bad[0].stderr, bad[0].stderr


@pytest.mark.timeout(60)
def test_same_hostname_with_private_tmp_uses_tcp():
    """Rank 2 shares the hostname and the kernel of ranks 0 and 1, but not their /tmp or
    /dev/shm (a container): its ipc socket and shared memory are out of their reach, so it
    is reached over TCP, while ranks 0 and 1 still use ipc."""
    with two_hosts() as hosts:
        _, got = run_hosts([hosts.prefix(0), hosts.prefix(0), hosts.prefix(1, private=True)],
                           {"MASTER_ADDR": hosts.address(0)})
    assert got[0]["routes"]["1"].startswith("ipc://") and got[1]["routes"]["0"].startswith("ipc://"), got
    for rank in (0, 1):
        assert got[rank]["routes"]["2"].startswith("tcp://") and got[2]["routes"][str(rank)].startswith("tcp://"), got
    assert not any(rep["shm"] for rep in got.values()), got


@pytest.mark.timeout(60)
@pytest.mark.parametrize("local_world_size", ["1", None], ids=["local_world_size", "by_hand"])
def test_master_name_on_a_loopback_line(local_world_size):
    """Host 0's /etc/hosts maps its own name to 127.0.1.1 (Debian); host 1 knows the name
    by host 0's real address. Rank 0 serves the store on every interface and binds its
    data port to its outward address, and says so when it knows the job spans hosts."""
    with two_hosts() as hosts:
        hosts.hosts_file(0, "127.0.0.1 localhost\n127.0.1.1 hosta\n")
        hosts.hosts_file(1, f"127.0.0.1 localhost\n{hosts.address(0)} hosta\n")
        per_rank = one_rank_per_host(2) if local_world_size else None
        results, got = run_hosts([hosts.prefix(0), hosts.prefix(1, hostname="hostb")], {"MASTER_ADDR": "hosta"},
                                 per_rank)
    assert got[0]["tcp"].startswith(f"tcp://{hosts.address(0)}:"), got
    if local_world_size:
        assert "MASTER_ADDR=hosta resolves to 127.0.1.1, a loopback address" in results[0].stderr, results[0].stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("force", [False, True], ids=["ipc", "forced_tcp"])
def test_force_tcp_on_one_host(force):
    env = {"DISTNN_FORCE_TCP": "1"} if force else {}
    _, got = run_hosts([(), ()], env)
    scheme = "tcp://" if force else "ipc://"
    assert got[0]["routes"]["1"].startswith(scheme) and got[1]["routes"]["0"].startswith(scheme), got
    assert got[0]["shm"] is (not force) and got[1]["shm"] is (not force), got
