"""The DDP tutorial's program (ddp_spawn.py: ``multiprocessing.spawn``, MASTER_ADDR and
MASTER_PORT set by the program, ``init_process_group("gloo", rank, world_size)``, a
ToyModel in DistributedDataParallel, one SGD step) run as a user runs it on distnn
(the same source runs on PyTorch). Each rank's averaged gradients, and its parameters
after the step, equal those of one process on the whole batch, in distnn and in PyTorch.
The run has a timeout, its whole process tree is killed at the end, and it leaves
nothing in its private TMPDIR or in /dev/shm."""

import json
import os
import sys
import uuid

import numpy as np
import pytest

import distnn
from multiproc import REPO, collect, format_results, free_port, job_id, processes_with_env, start
from programs import ddp_spawn
from programs.program_check import torch

TOKEN = "programs-ddp-spawn"


def single_process_step(lib):
    """One process, the whole batch: (gradients, parameters after the SGD step)."""
    state, inputs, labels = ddp_spawn.job()
    model = ddp_spawn.toy_model(lib.nn)
    model.load_state_dict({name: lib.from_numpy(value) for name, value in state.items()})
    optimizer = lib.optim.SGD(model.parameters(), lr=ddp_spawn.LR)
    optimizer.zero_grad()
    lib.nn.MSELoss()(model(lib.from_numpy(inputs)), lib.from_numpy(labels)).backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    optimizer.step()
    return grads, {name: p.detach().numpy().copy() for name, p in model.named_parameters()}


def job_shm_files(port):
    names = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    prefixes = tuple(f"distnn-{job_id(TOKEN, port, host)}-" for host in ("localhost", "127.0.0.1"))
    return [name for name in names if name.startswith(prefixes)]


def assert_equal_values(ranks, expected, key, rtol, atol, who):
    for record in ranks:
        assert sorted(record[key]) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(np.array(record[key][name], dtype=np.float32), value, rtol=rtol, atol=atol,
                                       err_msg=f"{who} rank {record['rank']}: {key} of {name}")


@pytest.mark.timeout(180)
def test_spawned_ddp_equals_one_process_on_the_whole_batch(tmp_path):
    # Only distnn runs the spawned job: torch's own DDP needs no testing here (and its gloo can
    # abort a rank at teardown); torch's one-process step below is the oracle.
    libs = ["distnn"]
    tag = uuid.uuid4().hex
    ports, procs, tmpdirs = {}, [], {}
    for lib in libs:
        ports[lib], tmpdirs[lib] = free_port(), tmp_path / f"tmp-{lib}"
        tmpdirs[lib].mkdir()
        env = dict(os.environ, TMPDIR=str(tmpdirs[lib]), DISTNN_JOB_TOKEN=TOKEN, DISTNN_PROGRAM_TEST=tag,
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)  # the program sets its own, as the tutorial's does
        procs.append(start([sys.executable, str(REPO / "tests" / "programs" / "ddp_spawn.py"), lib,
                            str(ports[lib])], env))
    results = dict(zip(libs, collect(procs, timeout=150)))

    assert all(r.returncode == 0 for r in results.values()), format_results(list(results.values()))
    assert not processes_with_env("DISTNN_PROGRAM_TEST", tag), "a rank outlived the program"
    for lib in libs:
        assert not os.listdir(tmpdirs[lib]), f"{lib} left in TMPDIR: {os.listdir(tmpdirs[lib])}"
    assert not job_shm_files(ports["distnn"]), f"left in /dev/shm: {job_shm_files(ports['distnn'])}"

    ranks = {lib: [json.loads(line) for line in results[lib].stdout.splitlines() if line.startswith("{")]
             for lib in libs}
    assert [r["rank"] for r in ranks["distnn"]] == list(range(ddp_spawn.WORLD_SIZE))
    assert ranks["distnn"][0]["grads"] == ranks["distnn"][1]["grads"]  # the same all-reduced values
    assert ranks["distnn"][0]["params"] == ranks["distnn"][1]["params"]  # rank 1 got rank 0's start
    grads, params = single_process_step(distnn)
    assert_equal_values(ranks["distnn"], grads, "grads", rtol=1e-5, atol=1e-7, who="distnn")
    assert_equal_values(ranks["distnn"], params, "params", rtol=1e-6, atol=1e-8, who="distnn")
    if torch is not None:
        their_grads, their_params = single_process_step(torch)
        assert_equal_values(ranks["distnn"], their_grads, "grads", rtol=1e-5, atol=1e-7, who="distnn vs torch")
        assert_equal_values(ranks["distnn"], their_params, "params", rtol=1e-6, atol=1e-8, who="distnn vs torch")
