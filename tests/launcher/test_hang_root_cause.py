"""A hang under the launcher: one rank stops itself (SIGSTOP) before a
collective and the others time out waiting for it. The summary must name the
stopped rank as the root cause, on one node and across nodes, and the stopped
worker must go as soon as the launcher stops the group."""

import re

import pytest

from multiproc import free_port, read_pid_files, wait_gone

STOP_SELF = "tests/launcher/workers/stop_self.py"
TIMEOUT = 4  # seconds the healthy ranks wait in the all_reduce
GRACE = 60  # longer than the test may take: a stopped worker must not need it to die


def summary_line(result, head):
    lines = [line for line in result.stderr.splitlines() if line.startswith(head)]
    return lines[0] if lines else None


def check(result, stop_rank):
    assert result.returncode == 1, result
    root = summary_line(result, "root cause: ")
    assert root is not None, result
    assert root.startswith(f"root cause: rank {stop_rank} "), root
    assert "stopped (SIGSTOP or another stop signal, state T) and made no progress" in root, root
    assert re.search(r"; ranks? [0-9, ]+ timed out waiting$", root), root
    stopped = summary_line(result, "stopped by the launcher: ") or ""
    assert str(stop_rank) not in re.findall(r"\d+", stopped), stopped  # named once, as the root cause
    # --grace-period is longer than this: only a SIGCONT after the SIGTERM lets the stopped worker go now
    assert result.elapsed < TIMEOUT + 20, result


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers, stop_rank", [(3, 1), (4, 2)])
def test_stopped_rank_is_named_as_root_cause(launch, tmp_path, workers, stop_rank):
    result = launch.run("--workers", workers, "--timeout", TIMEOUT, "--grace-period", GRACE, STOP_SELF,
                        "--stop-rank", stop_rank, "--pid-dir", tmp_path, timeout=90)
    check(result, stop_rank)
    assert not wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0)


@pytest.mark.timeout(120)
def test_stopped_rank_on_another_node_is_named_as_root_cause(launch, tmp_path):
    port = free_port()
    procs = [launch.start("--nnodes", 2, "--node-rank", node, "--workers", 2, "--master-port", port,
                          "--timeout", TIMEOUT, "--grace-period", GRACE, STOP_SELF, "--stop-rank", 3,
                          "--pid-dir", tmp_path) for node in (0, 1)]
    results = [launch.finish(p, timeout=90) for p in procs]
    check(results[0], 3)
    assert summary_line(results[1], "root cause: ") == summary_line(results[0], "root cause: ")
    assert not wait_gone(read_pid_files(tmp_path, "worker_*.pid"), 0)
