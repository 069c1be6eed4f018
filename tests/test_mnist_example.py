"""examples/mnist.py end to end: single process, under the launcher, under srun and
mpirun (skipped where Slurm or Open MPI is absent), data-parallel accuracy on real
MNIST, bit-identical resume, recovery from a killed worker (--max-restarts with
--save-model), and restarts that never pick up another run's checkpoint."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import distnn
from multiproc import REPO, free_port, kill_tree, processes_with_env, start

DATA = Path(os.environ.get("DISTNN_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist-10k"))
EXAMPLE = str(REPO / "examples" / "mnist.py")
needs_mnist = pytest.mark.skipif(not (DATA / "train-images-idx3-ubyte.gz").exists(),
                                 reason=f"MNIST test data not found at {DATA}")
TAG = "DISTNN_MNIST_TEST_TAG"


def _env(tag, extra=None):
    scrub = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
             "DISTNN_JOB_TOKEN", "DISTNN_RESTART_COUNT", "DISTNN_RUN_ID"}
    env = {k: v for k, v in os.environ.items() if k not in scrub}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1", **{TAG: tag})
    env.update(extra or {})
    return env


def run(cmd, tmp_path, timeout=240, on_start=None, env=None):
    """Run ``cmd`` (with ``env`` added to a scrubbed environment); returns (exit code, stdout,
    stderr). Nothing it started survives."""
    tag = uuid.uuid4().hex
    proc = start(cmd, _env(tag, env), cwd=tmp_path)
    try:
        if on_start is not None:
            on_start(proc, tag)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    finally:
        kill_tree(proc, grace=0.5)
        for pid in processes_with_env(TAG, tag):
            os.kill(pid, signal.SIGKILL)


def accuracy(stdout):
    found = re.findall(r"Test accuracy: ([0-9.]+)%", stdout)
    assert found, f"no final accuracy line in:\n{stdout}"
    return float(found[-1])


def launcher(workers, *args, options=()):
    """``python -m launcher --workers N [options] examples/mnist.py args``."""
    return [sys.executable, "-m", "launcher", "--workers", str(workers), *map(str, options), EXAMPLE,
            *map(str, args)]


@needs_mnist
@pytest.mark.timeout(300)
def test_single_process_and_one_worker_runs(tmp_path):
    for cmd in ([sys.executable, EXAMPLE], launcher(1)):
        code, out, err = run([*cmd, "--data-dir", DATA, "--epochs", "1", "--metrics", tmp_path / "m.jsonl"],
                             tmp_path)
        assert code == 0, err
        assert accuracy(out) > 85.0


@needs_mnist
@pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.timeout(300)
def test_single_process_and_two_workers_train_on_gpu(tmp_path):
    for cmd in ([sys.executable, EXAMPLE], launcher(2)):
        code, out, err = run([*cmd, "--data-dir", DATA, "--epochs", "1", "--device", "cuda"], tmp_path)
        assert code == 0, err
        assert accuracy(out) > 85.0


@needs_mnist
@pytest.mark.skipif(distnn.cuda.is_available(), reason="checks the error on a machine without a GPU")
@pytest.mark.timeout(120)
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    code, _, err = run([sys.executable, EXAMPLE, "--data-dir", DATA, "--device", "cuda", "--dry-run"], tmp_path)
    assert code != 0
    assert "CuPy is not installed" in err or "CuPy sees no GPU" in err, err


@needs_mnist
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_workers_reach_97_percent_in_five_epochs(tmp_path):
    code, out, err = run(launcher(4, "--data-dir", DATA, "--epochs", 5, "--metrics", tmp_path / "m.jsonl"),
                         tmp_path)
    assert code == 0, err
    assert accuracy(out) >= 97.0, out
    assert all(f"[rank {r}]" in out + err or r > 0 for r in range(4))


@needs_mnist
@pytest.mark.timeout(300)
def test_resume_is_bit_identical(tmp_path):
    common = ["--data-dir", DATA, "--save-model", "--metrics", tmp_path / "m.jsonl"]
    code, _, err = run(launcher(2, *common, "--epochs", 2, "--checkpoint", tmp_path / "straight.dt"), tmp_path)
    assert code == 0, err
    code, _, err = run(launcher(2, *common, "--epochs", 1, "--checkpoint", tmp_path / "split.dt"), tmp_path)
    assert code == 0, err
    code, out, err = run(launcher(2, *common, "--epochs", 2, "--checkpoint", tmp_path / "split.dt",
                                  "--resume", tmp_path / "split.dt"), tmp_path)
    assert code == 0, err
    assert "Resumed from" in out
    straight, split = distnn.load(tmp_path / "straight.dt"), distnn.load(tmp_path / "split.dt")
    assert straight["epoch"] == split["epoch"] == 2
    for name, value in straight["model"].items():
        assert np.array_equal(value.numpy(), split["model"][name].numpy()), name


@needs_mnist
@pytest.mark.timeout(300)
def test_killed_worker_restarts_from_last_checkpoint(tmp_path):
    checkpoint = tmp_path / "ck.dt"

    def kill_a_worker_after_first_checkpoint(proc, tag):
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        workers = [pid for pid in processes_with_env(TAG, tag) if _rank_of(pid) == "1"]
        assert workers, "rank 1 not found"
        os.kill(workers[0], signal.SIGKILL)

    code, out, err = run(launcher(2, "--data-dir", DATA, "--epochs", 5, "--save-model", "--checkpoint", checkpoint,
                                  "--metrics", tmp_path / "m.jsonl", options=("--max-restarts", 1)),
                         tmp_path, on_start=kill_a_worker_after_first_checkpoint)
    assert code == 0, out + err
    assert "Resumed from" in out, out
    assert accuracy(out) >= 97.0
    assert distnn.load(checkpoint)["epoch"] == 5


@needs_mnist
@pytest.mark.timeout(300)
def test_restart_ignores_a_checkpoint_from_an_earlier_run(tmp_path):
    checkpoint = tmp_path / "ck.dt"
    code, _, err = run([sys.executable, EXAMPLE, "--data-dir", DATA, "--epochs", "1", "--dry-run", "--save-model",
                        "--checkpoint", checkpoint, "--metrics", tmp_path / "old.jsonl"], tmp_path)
    assert code == 0, err
    earlier = distnn.load(checkpoint)
    code, out, err = run(launcher(2, "--data-dir", DATA, "--epochs", 1, "--save-model", "--checkpoint", checkpoint,
                                  "--metrics", tmp_path / "m.jsonl", "--crash-first-attempt",
                                  options=("--max-restarts", 1)), tmp_path)
    assert code == 0, out + err
    assert "--crash-first-attempt: rank 0 fails" in err, err  # attempt 0 crashed before saving anything
    assert "Resumed from" not in out, out
    assert f"Ignoring checkpoint {checkpoint}: it was written by another run" in out, out
    assert "Epoch 1: test loss" in out, out  # the restart trained its epoch
    assert accuracy(out) > 85.0
    latest = distnn.load(checkpoint)
    assert latest["epoch"] == 1 and latest["run_id"] not in (None, earlier.get("run_id"))


@needs_mnist
@pytest.mark.timeout(120)
def test_a_run_outside_the_launcher_never_resumes_by_itself(tmp_path):
    checkpoint = tmp_path / "ck.dt"
    common = [sys.executable, EXAMPLE, "--data-dir", DATA, "--epochs", "1", "--dry-run", "--save-model",
              "--checkpoint", checkpoint, "--metrics", tmp_path / "m.jsonl"]
    code, _, err = run(common, tmp_path)
    assert code == 0, err
    code, out, err = run(common, tmp_path, env={"DISTNN_RESTART_COUNT": "1"})  # a leftover export
    assert code == 0, err
    assert "Resumed from" not in out and "Epoch 1: test loss" in out, out


def _rank_of(pid):
    """The RANK in a process's environment (None for the launcher itself)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    except OSError:
        return None
    rank = env.get(b"RANK")
    return rank.decode() if rank is not None else None


def cluster_engine(name, tasks):
    """The command that starts ``tasks`` copies of a program under ``name`` (srun, mpirun),
    or a skip where it is not installed or (Slurm) no cluster answers."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    if name == "srun":
        try:
            ready = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"no Slurm cluster answers here: {e}")
        if ready.returncode != 0 or "up" not in ready.stdout:
            pytest.skip(f"no Slurm cluster answers here: {ready.stderr.strip()}")
        return ["srun", "--ntasks", str(tasks), "--kill-on-bad-exit=1", "--immediate=30"]
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpirun", *root, "--oversubscribe", "-np", str(tasks), "-x", "MASTER_ADDR", "-x", "MASTER_PORT",
            "-x", "PYTHONPATH", "-x", TAG]


@needs_mnist
@pytest.mark.timeout(180)
@pytest.mark.parametrize("engine, exported", [("srun", True), ("srun", False), ("mpirun", True)],
                         ids=["srun", "srun-no-exports", "mpirun"])
def test_distributes_under_srun_and_mpirun(tmp_path, engine, exported):
    """Two tasks form one world of two (not two worlds of one), and only rank 0 writes the
    metrics and the checkpoint. Under srun the store's address may be left to the step."""
    cmd = cluster_engine(engine, 2)
    metrics, checkpoint = tmp_path / "m.jsonl", tmp_path / "ck.dt"
    code, out, err = run([*cmd, sys.executable, EXAMPLE, "--data-dir", DATA, "--epochs", "2", "--dry-run",
                          "--metrics", metrics, "--save-model", "--checkpoint", checkpoint], tmp_path, timeout=150,
                         env={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())} if exported else {})
    assert code == 0, out + err
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(r["epoch"], r["world_size"]) for r in records] == [(1, 2), (2, 2)], records
    assert out.count("Test accuracy") == 1, out
    assert distnn.load(checkpoint)["world_size"] == 2
