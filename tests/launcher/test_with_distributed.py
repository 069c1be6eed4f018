"""Workers that really use distnn.distributed under the launcher: 4 workers on
one node, and 2 x 2 across two network namespaces joined by a veth pair
(standing in for two hosts; skipped where namespaces cannot be made)."""

import os
import shutil
import subprocess
import uuid

import pytest

from multiproc import free_port

ALL_REDUCE = "tests/launcher/workers/all_reduce.py"


def test_four_workers_all_reduce(launch):
    result = launch.run("--workers", 4, "--timeout", 30, ALL_REDUCE, timeout=60)
    assert result.returncode == 0, result
    for rank in range(4):
        assert f"[rank {rank}] all_reduce ok: rank {rank} of 4 got 10" in result.stdout, result


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: (prefix to run in host 0, in host 1, host 0's address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    names = [f"dnn{tag}a", f"dnn{tag}b"]
    veth = [f"dv{tag}a", f"dv{tag}b"]
    addresses = ["10.231.0.1", "10.231.0.2"]
    steps = [["ip", "netns", "add", names[0]], ["ip", "netns", "add", names[1]],
             ["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]]]
    for name, dev, address in zip(names, veth, addresses):
        steps += [["ip", "link", "set", dev, "netns", name],
                  ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", dev],
                  ["ip", "-n", name, "link", "set", dev, "up"], ["ip", "-n", name, "link", "set", "lo", "up"]]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=10)
            if done.returncode != 0:
                pytest.skip(f"cannot make network namespaces here: {' '.join(step)}: {done.stderr.strip()}")
        yield [["ip", "netns", "exec", n] for n in names], addresses[0]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_two_hosts_of_two_workers_all_reduce(launch, two_hosts):
    prefixes, master = two_hosts
    port = free_port()
    procs = [launch.start("--nnodes", 2, "--node-rank", node, "--workers", 2, "--master-addr", master,
                          "--master-port", port, "--timeout", 30, ALL_REDUCE, prefix=prefixes[node])
             for node in (0, 1)]
    results = [launch.finish(p, timeout=60) for p in procs]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    for rank in range(4):
        assert f"[rank {rank}] all_reduce ok: rank {rank} of 4 got 10" in results[rank // 2].stdout
