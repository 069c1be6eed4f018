"""DDP communication hooks (distnn/distributed/algorithms/ddp_comm_hooks, reducer.py's
GradBucket): the bfloat16 packing against torch's rounding, the bfloat16 ring
against torch's bfloat16 arithmetic, the hook interface and its errors on in-process
worlds, and training across real processes: allreduce_hook bit-identical to no hook,
the fp16/bf16 hooks exact at every step against a one-process reduction with the same
roundings, PowerSGD against torch's powerSGD_hook on torch's gloo (same weights,
data and first Q), and PowerSGD training as no hook does. distnn/futures.py's Future
is tested in tests/test_futures.py."""

import functools
import itertools
import sys

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
import distnn.nn as nn
from distnn.distributed.algorithms.ddp_comm_hooks import bfloat16, default_hooks, powerSGD_hook
from distnn.distributed.inprocess import run_threads
from distnn.futures import Future
from multiproc import REPO, format_results, run_ranks

sys.path.insert(0, str(REPO / "tests" / "distributed" / "workers"))
import ddp_spec  # noqa: E402

WORKER = "tests/distributed/workers/comm_hooks.py"
TORCH_WORKER = "tests/distributed/workers/torch_ddp.py"
STEPS = 12  # PowerSGD compresses from step 2 or 3: ~10 compressed steps, before round-off grows chaotic
COMPRESSING = ("fp16", "bf16")


# --- bfloat16 ---------------------------------------------------------------------------------

def torch_bfloat16_bits(x):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def special_values():
    f32 = np.finfo(np.float32)
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x00008000, 0x00018000], np.uint32).view(np.float32)
    return np.concatenate([[0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, f32.max, -f32.max, f32.tiny, f32.tiny / 3,
                            f32.smallest_subnormal, 3.3895314e38, 1e-40], ties]).astype(np.float32)


@pytest.mark.torch
@pytest.mark.parametrize("values", ["normal", "wide", "special"])
def test_bfloat16_rounding_matches_torch(values):
    rng = np.random.default_rng(3)
    x = {"normal": lambda: rng.standard_normal(10_000).astype(np.float32),
         "wide": lambda: (rng.standard_normal(10_000) * 10.0 ** rng.integers(-40, 38, 10_000)).astype(np.float32),
         "special": special_values}[values]()
    np.testing.assert_array_equal(bfloat16.to_bfloat16_bits(x), torch_bfloat16_bits(x))


def test_bfloat16_bits_round_trip_and_nan():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    values = bfloat16.from_bfloat16_bits(bits)
    assert values.dtype == np.float32
    nan = np.isnan(values)
    assert nan.sum() == 2 * 127  # exponent all ones, non-zero mantissa, either sign
    np.testing.assert_array_equal(bfloat16.to_bfloat16_bits(values[~nan]), bits[~nan])
    assert np.isnan(bfloat16.from_bfloat16_bits(bfloat16.to_bfloat16_bits(values[nan]))).all()


def torch_ring_sum(per_rank_bits):
    """bf16_all_reduce's result from torch's bfloat16 arithmetic: chunk c summed around
    the ring from rank c+1 to rank c, every sum a bfloat16."""
    torch = pytest.importorskip("torch")
    n, size = len(per_rank_bits), per_rank_bits[0].size
    m = -(-size // n)
    values = [torch.from_numpy(b.view(np.int16).copy()).view(torch.bfloat16) for b in per_rank_bits]
    out = torch.zeros(n * m, dtype=torch.bfloat16)
    for c in range(n):
        lo, hi = c * m, min((c + 1) * m, size)
        if lo >= hi:
            continue
        acc = values[(c + 1) % n][lo:hi].clone()
        for j in range(2, n + 1):
            acc = values[(c + j) % n][lo:hi] + acc
        out[lo:hi] = acc
    return out[:size].view(torch.int16).numpy().view(np.uint16)


@pytest.mark.torch
@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size, size", [(1, 5), (2, 0), (2, 1), (2, 1001), (3, 2), (3, 1000), (5, 4097)])
def test_bf16_all_reduce_is_a_bfloat16_ring(world_size, size):
    inputs = [bfloat16.to_bfloat16_bits(np.sin(np.arange(size) * 0.37 + r * 1.3).astype(np.float32) * 10 ** r)
              for r in range(world_size)]

    def body(rank):
        bits = inputs[rank].copy()
        work = bfloat16.bf16_all_reduce(bits)
        if work is not None:
            work.wait()
        return bits
    results = run_threads(world_size, body)
    expected = torch_ring_sum(inputs)
    for rank, result in enumerate(results):
        np.testing.assert_array_equal(result, expected, err_msg=f"rank {rank}")


# --- the hook interface, on in-process worlds ---------------------------------------------

def tiny_ddp(bucket_cap_mb=25):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    for i, p in enumerate(model.parameters()):
        p.data = distnn.from_numpy(np.linspace(-1, 1, p.numel(), dtype=np.float32).reshape(p.shape) * (i + 1))
    return model, dist.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)


def rank_input(rank):
    return distnn.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1) - 2)


def test_hooks_get_torchs_grad_bucket(monkeypatch):
    """buffer(): this rank's gradients, undivided, last parameter first; gradients(): views
    of it shaped as the parameters (writes reach the buffer); parameters(), index(),
    is_last(); the value of the hook's Future becomes .grad."""
    from distnn.distributed import reducer
    monkeypatch.setattr(reducer, "FIRST_BUCKET_BYTES", 40)  # the last layer alone fills the first bucket

    def body(rank):
        model, ddp = tiny_ddp(bucket_cap_mb=1e-9)  # then a bucket per parameter
        local, _ = tiny_ddp()  # the same weights without a hook: this rank's own gradients
        seen = []

        def hook(state, bucket):
            assert state == "state"
            grads, buffer = bucket.gradients(), bucket.buffer()
            seen.append((bucket.index(), bucket.is_last(), [id(p) for p in bucket.parameters()],
                         buffer.numpy().copy()))
            for g, p in zip(grads, bucket.parameters()):
                assert g.shape == p.shape
            grads[0].mul_(2)
            assert buffer.numpy()[0] == 2 * seen[-1][3][0]
            future = Future()
            future.set_result(buffer * 10)
            return future
        ddp.register_comm_hook("state", hook)
        ddp(rank_input(rank)).sum().backward()
        local(rank_input(rank)).sum().backward()
        return (seen, [id(p) for p in model.parameters()], [p.grad.numpy() for p in model.parameters()],
                [p.grad.numpy() for p in local.parameters()])
    for seen, ids, grads, local in run_threads(2, body):
        assert [(index, last) for index, last, _, _ in seen] == [(0, False), (1, False), (2, True)]
        assert [owned for _, _, owned, _ in seen] == [[ids[3], ids[2]], [ids[1]], [ids[0]]]
        flat = np.concatenate([b for _, _, _, b in seen])
        np.testing.assert_array_equal(flat, np.concatenate([local[i].ravel() for i in (3, 2, 1, 0)]))
        for i, doubled in ((3, True), (2, False), (1, True), (0, True)):  # each bucket's first gradient
            np.testing.assert_array_equal(grads[i], local[i] * (20 if doubled else 10), err_msg=f"parameter {i}")


def run_one(body):
    return run_threads(1, body)[0]


@pytest.mark.parametrize("case, error, match", [
    ("twice", RuntimeError, "can only be called once"),
    ("after_backward", RuntimeError, "before the first backward"),
    ("not_callable", TypeError, "must be callable"),
    ("no_future", TypeError, "Expect: the comm hook to return a Future.*Actual: ndarray"),
    ("wrong_size", RuntimeError, "Expect: the comm hook's result for bucket 0 to have 26 elements, Actual: 3"),
])
def test_hook_registration_and_result_errors(case, error, match):
    def body(rank):
        _, ddp = tiny_ddp()
        ok = default_hooks.allreduce_hook
        if case == "twice":
            ddp.register_comm_hook(None, ok)
            ddp.register_comm_hook(None, ok)
        elif case == "after_backward":
            ddp(rank_input(rank)).sum().backward()
            ddp.register_comm_hook(None, ok)
        elif case == "not_callable":
            ddp.register_comm_hook(None, "allreduce")
        else:
            def bad(state, bucket):
                if case == "no_future":
                    return np.zeros(3)
                future = Future()
                future.set_result(distnn.zeros(3))
                return future
            ddp.register_comm_hook(None, bad)
            ddp(rank_input(rank)).sum().backward()
    with pytest.raises(error, match=match):
        run_one(body)


def test_fp16_compress_wrapper_is_fp16_compress_hook():
    def body(rank):
        grads = []
        wrapped = default_hooks.fp16_compress_wrapper(default_hooks.allreduce_hook)
        for hook in (default_hooks.fp16_compress_hook, wrapped):
            model, ddp = tiny_ddp()
            ddp.register_comm_hook(None, hook)
            ddp(rank_input(rank) / 3).sum().backward()
            grads.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
        return grads
    for hooked, wrapped in run_threads(2, body):
        np.testing.assert_array_equal(hooked, wrapped)


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_powerSGD_iter=1), "start_powerSGD_iter` > 1"),
    (dict(start_powerSGD_iter=0, use_error_feedback=False), "start_powerSGD_iter` > 1"),
])
def test_powersgd_state_refuses_early_start_with_memory(kwargs, match):
    with pytest.raises(ValueError, match=match):
        powerSGD_hook.PowerSGDState(None, **kwargs)


@pytest.mark.parametrize("shape", [(5, 4, 1), (3, 6, 2), (2, 7, 3), (1, 4, 4)], ids=["gram_schmidt_rank1",
                         "gram_schmidt_rank2", "qr_rank3", "qr_square"])
def test_orthogonalize_gives_orthonormal_columns(shape):
    m = np.random.default_rng(shape[2]).standard_normal(shape).astype(np.float32)
    powerSGD_hook._orthogonalize(m)
    for matrix in m:
        np.testing.assert_allclose(matrix.T @ matrix, np.eye(shape[2]), atol=2e-6)


# --- training across processes -------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _trained(world_size, base):
    """Run the distnn worker (every hook) and, where torch is installed, the torch worker
    (every hook torch's gloo takes: not bf16); {(library, hook, rank): npz arrays}."""
    out = base / f"hooks-{world_size}"
    out.mkdir()
    results = run_ranks(WORKER, world_size, args=[out, STEPS, *ddp_spec.HOOKS], timeout=240)
    assert all(r.returncode == 0 for r in results), format_results(results)
    runs = {("distnn", hook, r): dict(np.load(out / f"{hook}-rank{r}.npz"))
            for hook in ddp_spec.HOOKS for r in range(world_size)}
    try:
        import torch  # noqa: F401
    except ImportError:
        return runs
    torch_hooks = [h for h in ddp_spec.HOOKS if h != "bf16"]
    results = run_ranks(TORCH_WORKER, world_size, args=[out, "hooks", STEPS, *torch_hooks], timeout=240)
    assert all(r.returncode == 0 for r in results), format_results(results)
    runs.update({("torch", hook, 0): dict(np.load(out / f"torch-{hook}-rank0.npz")) for hook in torch_hooks})
    return runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("comm-hooks")
    return lambda world_size: _trained(world_size, base)


def max_diff(a, b):
    assert set(ddp_spec.params(a)) == set(ddp_spec.params(b))
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in ddp_spec.params(a))


WORLDS = [2, 3]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("hook", ddp_spec.HOOKS)
def test_every_rank_ends_with_the_same_model(trained, world_size, hook):
    runs = trained(world_size)
    for r in range(1, world_size):
        for k, v in ddp_spec.params(runs["distnn", hook, 0]).items():
            np.testing.assert_array_equal(runs["distnn", hook, r][k], v, err_msg=f"{hook}: rank {r}'s {k}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("world_size", WORLDS)
def test_allreduce_hook_trains_bit_identically_to_no_hook(trained, world_size):
    runs = trained(world_size)
    hooked, plain = runs["distnn", "allreduce", 0], runs["distnn", "none", 0]
    for k, v in ddp_spec.params(plain).items():
        np.testing.assert_array_equal(hooked[k], v, err_msg=k)
    np.testing.assert_array_equal(hooked["losses"], plain["losses"])


def fp16_sums(parts):
    """Every float16 sum of ``parts`` (float16 arrays) over the orders an all-reduce may
    add them in (for three ranks: (a+b)+c, (a+c)+b, (b+c)+a, every partial a float16)."""
    sums = []
    for order in itertools.permutations(range(len(parts))):
        total = parts[order[0]].copy()
        for i in order[1:]:
            total = (total + parts[i]).astype(np.float16)
        sums.append(total)
    return sums


def expected_fp16(intos, world_size):
    parts = [(x.astype(np.float16) / np.float16(world_size)).astype(np.float16) for x in intos]
    return [s.astype(np.float32) for s in fp16_sums(parts)]


def expected_bf16(intos, world_size):
    parts = [bfloat16.to_bfloat16_bits(bfloat16.round_to_bfloat16(x) / np.float32(world_size)) for x in intos]
    return [bfloat16.from_bfloat16_bits(torch_ring_sum(parts))]


@pytest.mark.torch
@pytest.mark.timeout(600)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("hook", COMPRESSING)
def test_compressing_hooks_are_exact_at_every_step(trained, world_size, hook):
    """At every step, every rank's averaged bucket is a reduction of all ranks' buckets
    with the hook's roundings: cast, divide and every partial sum in float16 (in some
    order: the all-reduce chooses), or in bfloat16 around the ring."""
    runs = trained(world_size)
    into = [runs["distnn", hook, r]["into"] for r in range(world_size)]
    out = [runs["distnn", hook, r]["out"] for r in range(world_size)]
    assert into[0].shape == (STEPS, sum(v.size for v in ddp_spec.params(runs["distnn", hook, 0]).values()))
    expect = expected_fp16 if hook == "fp16" else expected_bf16
    for step in range(STEPS):
        for r in range(1, world_size):
            np.testing.assert_array_equal(out[r][step], out[0][step], err_msg=f"step {step}: rank {r}")
        candidates = expect([x[step] for x in into], world_size)
        matched = np.zeros(out[0][step].shape, bool)
        for c in candidates:
            matched |= out[0][step] == c
        bad = np.flatnonzero(~matched)
        assert bad.size == 0, (f"step {step}: {bad.size} elements are no {hook} reduction of the ranks' buckets; "
                               f"first at {bad[0]}: Expect: one of {[c[bad[0]] for c in candidates]}, "
                               f"Actual: {out[0][step][bad[0]]}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("hook, tolerance", [("fp16", 2e-4), ("bf16", 5e-3)])
def test_compressing_hooks_train_close_to_no_hook(trained, world_size, hook, tolerance):
    runs = trained(world_size)
    diff = max_diff(runs["distnn", hook, 0], runs["distnn", "none", 0])
    assert 0 < diff <= tolerance, f"{hook}: max parameter difference from no hook {diff}, tolerance {tolerance}"


@pytest.mark.torch
@pytest.mark.timeout(600)
@pytest.mark.parametrize("world_size", WORLDS)
@pytest.mark.parametrize("hook", ["none", "allreduce", *ddp_spec.POWERSGD])
def test_matches_torch_ddp_with_the_same_hook(trained, world_size, hook):
    """torch's DDP and hooks on torch's gloo, from the same weights, data and first Q:
    the same parameters and losses to float32 round-off (PowerSGD's Gram-Schmidt and QR
    amplify it a little from step to step)."""
    pytest.importorskip("torch")
    runs = trained(world_size)
    ours, theirs = runs["distnn", hook, 0], runs["torch", hook, 0]
    diff = max_diff(ours, theirs)
    assert diff <= 5e-5, f"{hook}: max parameter difference from torch {diff}"
    np.testing.assert_allclose(ours["losses"], theirs["losses"], atol=2e-5)


@pytest.mark.timeout(300)
def test_powersgd_trains_as_no_hook_does(tmp_path):
    """200 steps on two ranks: PowerSGD at rank 1 brings the loss down nearly as far as
    uncompressed averaging."""
    steps = 200
    results = run_ranks(WORKER, 2, args=[tmp_path, steps, "none", "powersgd_rank1"], timeout=240)
    assert all(r.returncode == 0 for r in results), format_results(results)
    losses = {hook: np.load(tmp_path / f"{hook}-rank0.npz")["losses"] for hook in ("none", "powersgd_rank1")}
    first, last = (losses["powersgd_rank1"][s].mean() for s in (slice(0, 20), slice(-20, None)))
    assert last < first - 0.3, f"PowerSGD: mean loss of the first 20 steps {first:.3f}, of the last 20 {last:.3f}"
    assert last < losses["none"][-20:].mean() + 0.15


def test_powersgd_counts_compression():
    def body(rank):
        state = powerSGD_hook.PowerSGDState(None, start_powerSGD_iter=2, min_compression_rate=1)
        _, ddp = tiny_ddp()
        ddp.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
        for _ in range(3):
            ddp(rank_input(rank)).sum().backward()
        return state.iter, state.compression_stats()
    for it, (rate, before, after) in run_threads(2, body):
        # only the 4 x 3 and 2 x 4 weights compress: (4 + 3) and (2 + 4) elements instead of 12 and 8
        assert it == 3 and before == 26 and after == 4 + 2 + 7 + 6 and rate == pytest.approx(26 / 19)
