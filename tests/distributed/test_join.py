"""Uneven inputs (distnn/distributed/algorithms/join.py, DistributedDataParallel.join):
ranks with 3, 5 (and 7) batches train a model with BatchNorm under model.join() and
end with the model a one-process simulation and torch's DDP join on torch's gloo give,
for both divide_by_initial_world_size settings; throw_on_early_termination raises on
every rank; without join, the rank that ran out is named (within seconds when it exits
or calls another collective). The generic Join runs custom Joinables on in-process
worlds."""

import functools
import re
import subprocess
import sys

import numpy as np
import pytest

import distnn.distributed as dist
from distnn.distributed.algorithms import Join, Joinable, JoinHook
from distnn.distributed.inprocess import run_threads
from multiproc import REPO, format_results, json_lines, rank_env, run_ranks

WORKER = "tests/distributed/workers/join.py"
TORCH_WORKER = "tests/distributed/workers/torch_ddp.py"
DIVIDES = ("initial", "active")
WORLDS = [2, 3]
sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
import ddp_spec  # noqa: E402


@functools.lru_cache(maxsize=None)
def _trained(world_size, base):
    """{(source, divide, rank): npz arrays}: distnn's DDP on every rank, the one-process
    reference (rank 0), and torch's DDP (rank 0) where torch is installed."""
    out = base / f"join-{world_size}"
    out.mkdir()
    results = run_ranks(WORKER, world_size, args=[out, *ddp_spec.JOIN_RUNS], timeout=120)
    assert all(r.returncode == 0 for r in results), format_results(results)
    proc = subprocess.run([sys.executable, str(REPO / WORKER), str(out), "reference", str(world_size), *DIVIDES],
                          env=rank_env(0, 1, 0), capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    runs = {("distnn", run, r): dict(np.load(out / f"join-{run}-rank{r}.npz"))
            for run in ddp_spec.JOIN_RUNS for r in range(world_size)}
    runs.update({("reference", d, 0): dict(np.load(out / f"reference{world_size}-{d}-rank0.npz")) for d in DIVIDES})
    try:
        import torch  # noqa: F401
    except ImportError:
        return runs
    results = run_ranks(TORCH_WORKER, world_size, args=[out, "join", *ddp_spec.JOIN_RUNS], timeout=120)
    assert all(r.returncode == 0 for r in results), format_results(results)
    runs.update({("torch", run, 0): dict(np.load(out / f"torch-join-{run}-rank0.npz")) for run in ddp_spec.JOIN_RUNS})
    return runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("join")
    return lambda world_size: _trained(world_size, base)


def assert_close(ours, theirs, atol, what):
    assert set(ddp_spec.params(ours)) == set(ddp_spec.params(theirs)), what
    for k, v in ddp_spec.params(theirs).items():
        np.testing.assert_allclose(ours[k], v, rtol=0, atol=atol, err_msg=f"{what}: {k}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("divide", DIVIDES)
def test_joined_training_matches_one_process(trained, world_size, divide):
    """Every rank ends with the last joiner's parameters and buffers, which are what
    one process computes: each step sums the gradients of the ranks with a batch left,
    divided by the world size ("initial") or by their number ("active")."""
    runs = trained(world_size)
    for r in range(world_size):
        for k, v in ddp_spec.params(runs["distnn", divide, world_size - 1]).items():
            np.testing.assert_array_equal(runs["distnn", divide, r][k], v, err_msg=f"rank {r}: {k}")
    assert_close(runs["distnn", divide, 0], runs["reference", divide, 0], 1e-6, f"{divide}, {world_size} ranks")
    other = runs["distnn", "active" if divide == "initial" else "initial", 0]
    ours = ddp_spec.params(runs["distnn", divide, 0])
    assert any(not np.array_equal(v, other[k]) for k, v in ours.items() if "weight" in k)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world_size", WORLDS)
def test_joined_ranks_shadow_through_the_comm_hook(trained, world_size):
    """A joined rank runs the hook on zeros: allreduce_hook trains bit-identically to no
    hook under join too."""
    runs = trained(world_size)
    for r in range(world_size):
        for k, v in ddp_spec.params(runs["distnn", "initial", r]).items():
            np.testing.assert_array_equal(runs["distnn", "allreduce_hook", r][k], v, err_msg=f"rank {r}: {k}")


@pytest.mark.torch
@pytest.mark.timeout(300)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("run", list(ddp_spec.JOIN_RUNS))
def test_joined_training_matches_torch(trained, world_size, run):
    """torch's DDP join on torch's gloo, from the same weights and data (PowerSGD: the
    same first Q), with the same divide setting and hook."""
    pytest.importorskip("torch")
    runs = trained(world_size)
    assert_close(runs["distnn", run, 0], runs["torch", run, 0], 1e-5, f"{run}, {world_size} ranks vs torch")


def run_worker(world_size, *args, env=None, timeout=60):
    results = run_ranks(WORKER, world_size, args=["-", *args], timeout=timeout, env=env)
    assert all(r.returncode == 0 for r in results), format_results(results)
    reports = {rec["rank"]: rec for r in results for rec in json_lines(r.stdout)}
    assert sorted(reports) == list(range(world_size)), format_results(results)
    return reports, {r.rank: r.elapsed for r in results}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size", WORLDS)
def test_throw_on_early_termination_raises_on_every_rank(world_size):
    reports, _ = run_worker(world_size, "throw")
    assert reports[0] == {"rank": 0, "reached": 3, "error": "RuntimeError: Rank 0 exhausted all inputs."}
    for r in range(1, world_size):
        assert reports[r] == {"rank": r, "reached": 3, "error": "RuntimeError: Detected at least one rank that "
                              "exhausted inputs. Throwing across all ranks."}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("how, first_collective, names", [
    pytest.param("exit", "grads", r"rank 0 left the process group \(destroy_process_group or exit\) while this "
                 "rank was waiting for it in all_reduce", id="exit-grads"),
    pytest.param("exit", "buffers", r"rank 0 left the process group \(destroy_process_group or exit\) while this "
                 "rank was waiting for it in broadcast", id="exit-buffers"),
    pytest.param("barrier", "grads", "rank 0 has 'barrier'", id="barrier-grads"),
])
def test_uneven_inputs_without_join_name_the_rank_that_stopped(world_size, how, first_collective, names):
    """Rank 0 runs out of batches first and exits or calls a barrier: every other rank
    fails within seconds (not the 60 s timeout), naming rank 0 and pointing to join()."""
    reports, elapsed = run_worker(world_size, "uneven", how, first_collective, env={"DISTNN_TIMEOUT": "60"})
    for r in range(1, world_size):
        error = reports[r]["error"] or ""
        assert reports[r]["reached"] == 3 and error.startswith("DistributedError: DistributedDataParallel: ")
        assert "with model.join():" in error
        assert re.search(names, error), error
        assert elapsed[r] < 20, f"rank {r} took {elapsed[r]:.1f}s to fail"


@pytest.mark.timeout(120)
def test_a_rank_that_left_the_group_is_named_before_the_timeout():
    """destroy_process_group tells every peer, after all it sent them: a peer still waiting
    for it fails at once, naming it, long before the group timeout."""
    reports, elapsed = run_worker(2, "uneven", "linger", "grads", 6, env={"DISTNN_TIMEOUT": "5"})
    assert "rank 0 left the process group" in reports[1]["error"], reports[1]
    assert elapsed[1] < 3, f"rank 1 took {elapsed[1]:.1f}s to fail"


# --- the generic Join, on in-process worlds ------------------------------------------------

class SummingJoinable(Joinable):
    """Each iteration all-reduces this rank's value; a joined rank contributes 0 and, once
    all have joined, every rank takes the total of the last joiner."""

    def __init__(self):
        super().__init__()
        self.total = 0.0

    def step(self, value):
        Join.notify_join_context(self)
        x = np.array([value], np.float32)
        dist.all_reduce(x)
        self.total += float(x[0])

    def join_hook(self, **kwargs):
        joinable, scale = self, kwargs.get("scale", 1)

        class Hook(JoinHook):
            def main_hook(self):
                dist.all_reduce(np.zeros(1, np.float32))

            def post_hook(self, is_last_joiner):
                best = np.array([dist.get_rank() if is_last_joiner else -1], np.int64)
                dist.all_reduce(best, op=dist.ReduceOp.MAX)
                total = np.array([joinable.total * scale], np.float32)
                dist.broadcast(total, int(best[0]))
                joinable.total = float(total[0])
        return Hook()

    @property
    def join_device(self):
        return "cpu"

    @property
    def join_process_group(self):
        return None


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_join_runs_custom_joinables(world_size):
    def body(rank):
        joinable = SummingJoinable()
        with Join([joinable], scale=2):
            for i in range(rank + 1):  # rank r steps r + 1 times
                joinable.step(rank + 1)
        return joinable.total
    # step i sums (r + 1) over the ranks with r >= i; the last joiner's total, doubled
    expected = 2 * sum(sum(r + 1 for r in range(i, world_size)) for i in range(world_size))
    assert run_threads(world_size, body) == [expected] * world_size


def test_join_enable_false_does_nothing():
    def body(rank):
        joinable = SummingJoinable()
        with Join([joinable], enable=False):
            joinable.step(rank + 1)
        return joinable.total, joinable._join_config.enable
    assert run_threads(2, body) == [(3.0, False), (3.0, False)]


@pytest.mark.parametrize("joinables, error, match", [
    ([], ValueError, "at least one joinable"),
    ("two_groups", ValueError, "one process group among the joinables"),
])
def test_join_refuses(joinables, error, match):
    def body(rank):
        if joinables == "two_groups":
            other = SummingJoinable()
            other.__class__ = type("OtherGroup", (SummingJoinable,), {"join_process_group": property(
                lambda self: dist.new_group([0]))})
            Join([SummingJoinable(), other])
        else:
            Join(joinables)
    with pytest.raises(error, match=match):
        run_threads(1, body)


def test_notify_join_context_needs_the_joinable_constructor():
    class Forgetful(SummingJoinable):
        def __init__(self):
            pass
    with pytest.raises(AssertionError, match="Forgetful constructor calls the ``Joinable`` constructor"):
        Join.notify_join_context(Forgetful())

