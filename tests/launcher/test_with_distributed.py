"""Workers that really use distnn.distributed under the launcher: 4 workers on
one node, and 2 x 2 across two network namespaces joined by a veth pair
(standing in for two hosts, the second with its own hostname, /tmp and
/dev/shm; skipped where namespaces cannot be made)."""

import pytest

import netns
from multiproc import free_port

ALL_REDUCE = "tests/launcher/workers/all_reduce.py"


def test_four_workers_all_reduce(launch):
    result = launch.run("--workers", 4, "--timeout", 30, ALL_REDUCE, timeout=60)
    assert result.returncode == 0, result
    for rank in range(4):
        assert f"[rank {rank}] all_reduce ok: rank {rank} of 4 got 10" in result.stdout, result


@pytest.fixture
def two_hosts():
    """Two hosts of tests/netns.py: (prefix to run on host 0, on host 1), host 0's address. Host 1
    has its own hostname, /tmp and /dev/shm, so nothing but TCP joins the two."""
    with netns.two_hosts() as hosts:
        yield [hosts.prefix(0), hosts.prefix(1, private=True, hostname="hostb")], hosts.address(0)


@pytest.mark.parametrize("hierarchical", ["1", "0"], ids=["hierarchical", "flat"])
def test_two_hosts_of_two_workers_all_reduce(launch, two_hosts, hierarchical):
    """Two ranks per host: the all-reduce reduces within each host through shared memory
    and across hosts between lanes, unless any rank sets DISTNN_HIERARCHICAL=0."""
    prefixes, master = two_hosts
    port = free_port()
    procs = [launch.start("--nnodes", 2, "--node-rank", node, "--workers", 2, "--master-addr", master,
                          "--master-port", port, "--timeout", 30, ALL_REDUCE, prefix=prefixes[node],
                          env={"DISTNN_HIERARCHICAL": hierarchical if node == 1 else "1"})
             for node in (0, 1)]
    results = [launch.finish(p, timeout=60) for p in procs]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    kind = "hierarchical" if hierarchical == "1" else "flat"
    for rank in range(4):
        assert (f"[rank {rank}] all_reduce ok: rank {rank} of 4 got 10; large ok; {kind}"
                in results[rank // 2].stdout), results[rank // 2]
