"""Several launchers, one per node, on loopback: rank layout, the meeting of
the nodes (and its failures), failure propagation and restarts across nodes."""

import json
import os
import re
import signal

import pytest

from multiproc import free_port, read_pid_files, wait_for_files, wait_gone

BEHAVE = "tests/launcher/workers/behave.py"


def worker_envs(dirs, restart=0):
    found = {}
    for d in dirs.values():
        for p in d.glob(f"env_*_{restart}.json"):
            found[int(p.name.split("_")[1])] = json.loads(p.read_text())
    return found


def test_two_nodes_of_two_workers(launch, tmp_path):
    port = free_port()
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--workers", 2], ["--meet"], port=port)
    results = {node: launch.finish(p) for node, p in procs.items()}
    assert [r.returncode for r in results.values()] == [0, 0], "\n".join(map(str, results.values()))
    assert "[rank 0] hello from rank 0" in results[0].stdout and "[rank 1] hello from rank 1" in results[0].stdout
    assert "[rank 2] hello from rank 2" in results[1].stdout and "[rank 3] hello from rank 3" in results[1].stdout
    envs = worker_envs(dirs)
    assert sorted(envs) == [0, 1, 2, 3]
    for rank, env in envs.items():
        assert (env["WORLD_SIZE"], env["LOCAL_RANK"], env["GROUP_RANK"], env["GROUP_WORLD_SIZE"]) == \
            ("4", str(rank % 2), str(rank // 2), "2")
    assert len({(e["MASTER_PORT"], e["DISTNN_JOB_TOKEN"]) for e in envs.values()}) == 1  # agreed by all nodes
    assert envs[0]["MASTER_PORT"] == str(port + 1)  # predictable: a firewall opens --master-port and the next


def test_missing_node_is_named_after_the_timeout(launch, tmp_path):
    procs, _ = launch.start_nodes(tmp_path, 3, ["--timeout", 1], nodes=[0, 1])
    results = {node: launch.finish(p) for node, p in procs.items()}
    for node, result in results.items():
        assert result.returncode == 1, result
        assert result.elapsed < 6, result
        assert "node rank 2 did not join within --timeout 1s" in result.stderr, result
    assert results[1].stderr.startswith("[launcher node 1] error:")


def test_joiner_without_node_0_gives_up(launch, tmp_path):
    port = free_port()
    procs, _ = launch.start_nodes(tmp_path, 2, ["--timeout", 1], nodes=[1], port=port)
    result = launch.finish(procs[1])
    assert result.returncode == 1
    assert f"could not reach node 0's launcher at 127.0.0.1:{port} within --timeout 1s" in result.stderr


@pytest.mark.parametrize("env, message", [
    ({0: {"DISTNN_JOB_TOKEN": "a"}, 1: {"DISTNN_JOB_TOKEN": "b"}}, "node 1's DISTNN_JOB_TOKEN differs from node 0's"),
    ({0: {"DISTNN_JOB_TOKEN": "a"}}, "DISTNN_JOB_TOKEN is set on node 0 but not on node 1"),
])
def test_nodes_that_disagree_on_the_token_do_not_start(launch, tmp_path, env, message):
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--timeout", 5], env=env)
    results = [launch.finish(p) for p in procs.values()]
    for result in results:
        assert result.returncode == 1 and message in result.stderr, result
    assert not list(tmp_path.glob("node*/worker_*"))


def test_nodes_that_disagree_on_workers_do_not_start(launch, tmp_path):
    port = free_port()
    procs = [launch.start("--nnodes", 2, "--node-rank", n, "--master-port", port, "--workers", 1 + n, "--timeout", 5,
                          BEHAVE, "--pid-dir", tmp_path) for n in (0, 1)]
    for result in [launch.finish(p) for p in procs]:
        assert result.returncode == 1
        assert "node 1 was started with --nnodes 2 --workers 2, node 0 with --nnodes 2 --workers 1" in result.stderr


def test_fixed_token_is_used_and_never_sent(launch, tmp_path):
    env = {n: {"DISTNN_JOB_TOKEN": "shared-secret"} for n in (0, 1)}
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--workers", 1], env=env)
    assert [launch.finish(p).returncode for p in procs.values()] == [0, 0]
    assert {e["DISTNN_JOB_TOKEN"] for e in worker_envs(dirs).values()} == {"shared-secret"}


def test_failure_on_one_node_stops_every_node(launch, tmp_path):
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--workers", 2], ["--fail-rank", 3, "--sleep", 60])
    results = {node: launch.finish(p) for node, p in procs.items()}
    for result in results.values():
        assert result.returncode == 1, result
        assert result.elapsed < 6, result
        assert re.search(r"^root cause: rank 3 \(node 1, local rank 1, pid \d+\): exit code 1$", result.stderr, re.M)
        assert "ValueError: boom on rank 3" in result.stderr
        assert "stopped by the launcher: ranks 0, 1, 2" in result.stderr
    pids = [pid for d in dirs.values() for pid in read_pid_files(d, "worker_*.pid")]
    assert len(pids) == 4 and wait_gone(pids, 0.5) == []


def test_restart_across_nodes(launch, tmp_path):
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--workers", 2, "--max-restarts", 1],
                              ["--fail-first-attempt", "--meet"])
    results = {node: launch.finish(p) for node, p in procs.items()}
    assert [r.returncode for r in results.values()] == [0, 0], "\n".join(map(str, results.values()))
    first, second = worker_envs(dirs, 0), worker_envs(dirs, 1)
    assert sorted(second) == [0, 1, 2, 3]
    assert {e["DISTNN_RESTART_COUNT"] for e in second.values()} == {"1"}
    assert len({e["DISTNN_JOB_TOKEN"] for e in second.values()}) == 1
    assert first[2]["DISTNN_JOB_TOKEN"] != second[2]["DISTNN_JOB_TOKEN"]


@pytest.mark.parametrize("victim, reason", [
    ("front", "reason: node 1's launcher was interrupted by SIGKILL (of the launcher's front process)"),
    ("supervisor", "reason: node 1's launcher is gone"),
])
def test_losing_a_nodes_launcher_stops_the_job(launch, tmp_path, victim, reason):
    procs, dirs = launch.start_nodes(tmp_path, 2, ["--workers", 1], ["--sleep", 60])
    wait_for_files(tmp_path, "node*/ready_*", 2)
    supervisor = int(worker_envs(dirs)[1]["DISTNN_LAUNCHER_PID"])
    os.kill(procs[1].pid if victim == "front" else supervisor, signal.SIGKILL)
    result = launch.finish(procs[0])
    assert result.returncode == 1
    assert reason in result.stderr, result
    pids = [pid for d in dirs.values() for pid in read_pid_files(d, "worker_*.pid")]
    assert len(pids) == 2 and wait_gone(pids + [supervisor], 2.0) == []
    if victim == "supervisor":
        lost = launch.finish(procs[1])
        assert lost.returncode == 137
        assert "the launcher's supervisor process was killed by SIGKILL" in lost.stderr
