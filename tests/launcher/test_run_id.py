"""DISTNN_RUN_ID: new for each launch, the same in every worker of every
attempt on every node (node 0 hands its own to the others)."""

import json

import pytest

from multiproc import free_port

BEHAVE = "tests/launcher/workers/behave.py"


def run_ids(*dirs):
    """{env file name: the DISTNN_RUN_ID in it} for the environments behave.py dumped."""
    return {p.name: json.loads(p.read_text())["DISTNN_RUN_ID"] for d in dirs for p in d.glob("env_*.json")}


@pytest.mark.timeout(60)
def test_one_run_id_for_every_attempt_and_a_new_one_per_launch(launch, tmp_path):
    per_launch = []
    for n in range(2):
        pid_dir = tmp_path / f"launch{n}"
        pid_dir.mkdir()
        result = launch.run("--workers", 2, "--max-restarts", 1, BEHAVE, "--pid-dir", pid_dir, "--fail-first-attempt")
        assert result.returncode == 0, result
        found = run_ids(pid_dir)
        assert sorted(found) == ["env_0_0.json", "env_0_1.json", "env_1_0.json", "env_1_1.json"]
        assert len(set(found.values())) == 1, found
        per_launch.append(found["env_0_0.json"])
    assert per_launch[0] != per_launch[1]


@pytest.mark.timeout(60)
def test_every_node_gets_node_0s_run_id(launch, tmp_path):
    port = free_port()
    dirs = [tmp_path / f"node{n}" for n in (0, 1)]
    for d in dirs:
        d.mkdir()
    procs = [launch.start("--nnodes", 2, "--node-rank", n, "--workers", 2, "--master-port", port, "--max-restarts", 1,
                          BEHAVE, "--pid-dir", dirs[n], "--fail-first-attempt") for n in (0, 1)]
    results = [launch.finish(p) for p in procs]
    assert [r.returncode for r in results] == [0, 0], "\n".join(map(str, results))
    found = run_ids(*dirs)
    assert len(found) == 8, sorted(found)  # 4 ranks x 2 attempts
    assert len(set(found.values())) == 1, found
