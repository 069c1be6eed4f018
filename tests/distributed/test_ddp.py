"""DistributedDataParallel is exact: N workers on B/N each end with the same
parameters as one process on the whole batch B (to float32 round-off)."""

import sys

import numpy as np
import pytest

import distnn
from multiproc import REPO, format_results, run_ranks

WORKER = "tests/distributed/workers/ddp_train.py"
STEPS, BATCH = 20, 24


def _train(tmp_path, world_size, *flags):
    out = tmp_path / f"params-{world_size}-{'-'.join(f.strip('-') for f in flags) or 'base'}.dt"
    if "--plain" in flags:
        import subprocess
        proc = subprocess.run([sys.executable, str(REPO / WORKER), str(out), str(STEPS), str(BATCH), *flags],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
    else:
        results = run_ranks(WORKER, world_size, args=[out, STEPS, BATCH, *flags], timeout=300)
        assert all(r.returncode == 0 for r in results), format_results(results)
    return distnn.load(out)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("flags", [(), ("--no-sync",), ("--unused",), ("--buckets",), ("--buckets", "--unused")],
                         ids=["plain", "no_sync", "unused", "buckets", "buckets_unused"])
def test_ddp_matches_single_process(tmp_path, flags):
    reference = _train(tmp_path, 1, "--plain", *flags)
    for world_size in (2, 3, 4):
        ours = _train(tmp_path, world_size, *flags)
        assert set(ours) == set(reference)
        for name in reference:
            diff = np.abs(ours[name].numpy() - reference[name].numpy()).max()
            assert diff <= 1e-5, f"{name}: max abs diff {diff} with {world_size} workers"


@pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.timeout(300)
def test_ddp_on_gpu_matches_single_process_on_cpu(tmp_path):
    """Gradients in CuPy buckets go through host copies; the result is still the
    one-process result (to GPU-versus-CPU float32 round-off)."""
    reference = _train(tmp_path, 1, "--plain")
    ours = _train(tmp_path, 2, "--cuda", "--buckets")
    assert set(ours) == set(reference)
    for name in reference:
        diff = np.abs(ours[name].numpy() - reference[name].numpy()).max()
        assert diff <= 1e-4, f"{name}: max abs diff {diff}"


@pytest.mark.timeout(120)
def test_buffers_follow_rank_0_at_every_forward(tmp_path):
    """BatchNorm running statistics: each rank updates its own, and DDP's forward hands
    every rank rank 0's first (broadcast_buffers=True, as in PyTorch)."""
    results = run_ranks(WORKER, 3, args=[tmp_path / "bn.dt", 3, 24, "--batchnorm"], timeout=100)
    assert all(r.returncode == 0 for r in results), format_results(results)
