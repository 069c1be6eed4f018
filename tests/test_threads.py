"""Intra-op threads: torch's set_num_threads/get_num_threads, OpenBLAS's idle spin
set at import, map_chunks (order, errors, nesting, the BLAS held to one thread
while chunks run side by side), and convolutions, batch norm and softmax by
blocks giving bit-identical results at any thread count."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import distnn
import distnn.nn.functional as F
from distnn import threads
from distnn.ops import layer_norm_rows, softmaxes


@pytest.fixture
def two_threads():
    """Two intra-op threads for the test, whatever the machine's default."""
    before = distnn.get_num_threads()
    distnn.set_num_threads(2)
    yield
    distnn.set_num_threads(before)


needs_openblas = pytest.mark.skipif(threads._openblas().set_global is None,
                                    reason="numpy's BLAS is not an OpenBLAS whose threads can be set")


@pytest.fixture(params=["pool", "openmp"])
def runner(request, two_threads, monkeypatch):
    """Two threads for map_chunks: this module's pool, or oneDNN's OpenMP team."""
    team = None
    if request.param == "openmp":
        from distnn.ops import onednn
        lib = onednn.library()
        if lib is None:
            pytest.skip("oneDNN's library, and with it GNU OpenMP, is not installed")
        team = threads._OpenMPTeam(lib.gomp)
    monkeypatch.setattr(threads, "_openmp_team", team)
    return request.param


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects_what_torch_rejects(bad):
    with pytest.raises(ValueError, match="positive integer"):
        distnn.set_num_threads(bad)


@needs_openblas
def test_set_num_threads_sets_the_blas_count_too(two_threads):
    distnn.set_num_threads(1)
    assert distnn.get_num_threads() == 1
    assert threads._openblas().get_global() == 1
    distnn.set_num_threads(2)
    assert distnn.get_num_threads() == 2
    assert threads._openblas().get_global() == 2


_SPIN_PROBE = """
import os, sys
{first}
from distnn import threads
lib = threads._OpenBLAS._load()
print(lib.openblas_thread_timeout(), os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
"""


@pytest.mark.skipif(getattr(threads._OpenBLAS._load(), "openblas_thread_timeout", None) is None,
                    reason="numpy's BLAS does not report its idle spin")
@pytest.mark.parametrize("first,env,expected", [
    ("import distnn", {}, "20 None"),  # set for the load, then removed from the environment
    ("import numpy, distnn", {}, "0 None"),  # numpy loaded first: OpenBLAS's default stands
    ("import distnn", {"OPENBLAS_THREAD_TIMEOUT": "7"}, "7 7"),  # the user's own setting stands
])
def test_import_shortens_openblas_idle_spin(first, env, expected):
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    proc = subprocess.run([sys.executable, "-c", _SPIN_PROBE.format(first=first)], env={**base, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == expected.split()


@needs_openblas
def test_chunks_run_on_two_threads_in_order_with_single_threaded_blas(runner):
    blas = threads._openblas()
    seen = []

    def fn(chunk):
        seen.append((chunk, threading.get_ident(), threading.current_thread().name, blas.get_global()))
        time.sleep(0.02)  # long enough for the worker to wake and take chunks too
        return chunk * 10

    assert threads.map_chunks(np, fn, list(range(7))) == [0, 10, 20, 30, 40, 50, 60]
    idents = {ident for _, ident, _, _ in seen}
    assert len(idents) == 2 and threading.get_ident() in idents
    if runner == "pool":
        assert {name for _, _, name, _ in seen} == {"MainThread", "distnn-intra-op_0"}
    assert {count for _, _, _, count in seen} == {1}
    assert blas.get_global() == 2  # given back after the last chunk


def test_one_thread_runs_the_chunks_here_in_order():
    before = distnn.get_num_threads()
    distnn.set_num_threads(1)
    try:
        names = threads.map_chunks(np, lambda c: (c, threading.current_thread().name), [3, 1, 2])
    finally:
        distnn.set_num_threads(before)
    assert names == [(3, "MainThread"), (1, "MainThread"), (2, "MainThread")]


@needs_openblas
def test_a_failing_chunk_raises_after_every_chunk_has_finished(runner):
    finished = []

    def fn(chunk):
        if chunk == 3:
            raise KeyError("chunk 3")
        finished.append(chunk)

    with pytest.raises(KeyError, match="chunk 3"):
        threads.map_chunks(np, fn, list(range(6)))
    assert sorted(finished) == [0, 1, 2, 4, 5]
    assert threads._openblas().held == 0
    assert threads._openblas().get_global() == 2


@needs_openblas
def test_nested_calls_in_a_worker_run_there(runner):
    def inner(chunk):
        return threading.get_ident()

    def outer(chunk):
        time.sleep(0.02)  # each thread takes one
        return threading.get_ident(), threads.map_chunks(np, inner, [0, 1])

    results = threads.map_chunks(np, outer, [0, 1])
    assert len({ident for ident, _ in results}) == 2
    for ident, inner_idents in results:  # no thread waited on its own pool or team
        assert inner_idents == [ident, ident]


@needs_openblas
def test_other_threads_than_the_main_one_use_the_pool(runner):
    """A thread's OpenMP team ends with it, and the states its threads keep would
    outlive them: only the main thread's chunks go to the team."""
    names = []

    def fn(chunk):
        time.sleep(0.02)
        names.append(threading.current_thread().name)

    caller = threading.Thread(target=threads.map_chunks, args=(np, fn, [0, 1, 2, 3]), name="caller")
    caller.start()
    caller.join(timeout=60)
    assert set(names) == {"caller", "distnn-intra-op_0"}


@needs_openblas
def test_each_thread_keeps_its_thread_locals_from_call_to_call(runner):
    """The team's threads are OpenMP's, not Python's: their state (im2col's scratch
    buffers) must outlive one call."""
    local = threading.local()

    def fn(chunk):
        time.sleep(0.02)
        if not hasattr(local, "token"):
            local.token = object()
        return threading.get_ident(), id(local.token)

    rounds = [dict(threads.map_chunks(np, fn, [0, 1, 2, 3])) for _ in range(3)]
    assert len(rounds[0]) == 2
    assert rounds[1] == rounds[0] and rounds[2] == rounds[0]


@needs_openblas
def test_concurrent_callers_leave_the_blas_count_as_it_was(runner):
    barrier = threading.Barrier(3)

    def caller():
        barrier.wait()
        for _ in range(20):
            threads.map_chunks(np, lambda c: c, list(range(4)))

    callers = [threading.Thread(target=caller) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=60)
    assert threads._openblas().held == 0
    assert threads._openblas().get_global() == 2


def _same_at_one_and_two_threads(run):
    """``run()`` (a list of arrays) at 1 and at 2 threads: bit-identical."""
    before = distnn.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            distnn.set_num_threads(n)
            results.append(run())
    finally:
        distnn.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("shape,kwargs", [
    ((8, 16, 32, 32), {"padding": 1}),  # the flat grid
    ((8, 16, 32, 32), {"padding": 1, "stride": 2}),  # phase grids
    ((8, 16, 12, 12), {"padding": 1, "stride": 2}),  # im2col's working layouts
    ((8, 16, 8, 8), {"padding": 1}),
])
def test_convolutions_are_bit_identical_at_one_and_two_threads(monkeypatch, shape, kwargs):
    """distnn's own paths; oneDNN's weight gradients, as PyTorch's, may differ in the
    last bits between thread counts."""
    monkeypatch.setattr(distnn.backends.mkldnn, "enabled", False)
    monkeypatch.setattr("distnn.ops.im2col._CHUNK_BYTES", 1 << 16)  # many chunks
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape, dtype=np.float32)
    w_np = rng.standard_normal((24, shape[1], 3, 3), dtype=np.float32)

    def run():
        x = distnn.tensor(x_np, requires_grad=True)
        w = distnn.tensor(w_np, requires_grad=True)
        y = F.conv2d(x, w, **kwargs)
        (y * y).sum().backward()
        return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy()]
    _same_at_one_and_two_threads(run)


def test_batch_norm_by_sample_blocks_is_bit_identical_at_one_and_two_threads(monkeypatch):
    """distnn's own path; oneDNN's (onednn_norm.py) splits its sums by thread count."""
    monkeypatch.setattr(distnn.backends.mkldnn, "enabled", False)
    monkeypatch.setattr("distnn.ops.normalization._BN_BLOCKED_MIN_BYTES", 0)
    monkeypatch.setattr("distnn.ops.normalization._BN_BLOCK_BYTES", 1)  # a block per sample
    rng = np.random.default_rng(2)
    x_np = rng.standard_normal((9, 6, 5, 5), dtype=np.float32) + 3
    g_np = rng.standard_normal(x_np.shape, dtype=np.float32)

    def run():
        x = distnn.tensor(x_np, requires_grad=True)
        w = distnn.ones(6, requires_grad=True)
        y = F.batch_norm(x, None, None, w, None, training=True)
        y.backward(distnn.tensor(g_np))
        return [y.detach().numpy(), x.grad.numpy(), w.grad.numpy()]
    _same_at_one_and_two_threads(run)


def _whole_and_by_blocks(monkeypatch, threshold, fn, x_np, g_np):
    """``fn``'s output and input gradient with the blocks' ``threshold`` (a dotted name)
    past the input, then at 0 at one thread and at two: each pair bit-identical to the first."""
    before = distnn.get_num_threads()
    results = []
    try:
        for n, value in ((1, float("inf")), (1, 0), (2, 0)):
            monkeypatch.setattr(threshold, value)
            distnn.set_num_threads(n)
            x = distnn.tensor(x_np, requires_grad=True)
            y = fn(x)
            y.backward(distnn.tensor(g_np))
            results.append([y.detach().numpy(), x.grad.numpy()])
    finally:
        distnn.set_num_threads(before)
    for whole, *by_blocks in zip(*results):
        for b in by_blocks:
            assert whole.tobytes() == b.tobytes()  # NaN payloads and signed zeros too


@pytest.mark.parametrize("norm,shape,affine", [
    ("layer", (3, 11, 7), True), ("layer", (3, 11, 5, 7), True), ("layer", (3, 11, 7), False),
    ("group", (9, 6, 4, 3), True), ("group", (9, 6, 4, 3), False), ("instance", (9, 6, 4, 3), True)])
def test_norms_by_row_blocks_are_bit_identical_at_one_and_two_threads(monkeypatch, norm, shape, affine):
    """Layer and group norm rows a block at a time over threads: the same output and
    gradients at either count, and within rounding of the whole-array formulas (float64)."""
    monkeypatch.setattr("distnn.ops.layer_norm_rows._BLOCK_BYTES", 64)  # a few rows a block
    blocks = []
    real_map = layer_norm_rows.map_chunks
    monkeypatch.setattr("distnn.ops.layer_norm_rows.map_chunks",
                        lambda xp, fn, parts: blocks.append(len(parts)) or real_map(xp, fn, parts))
    rng = np.random.default_rng(4)
    x_np = rng.standard_normal(shape) * 3 + 5
    g_np = rng.standard_normal(shape)
    params = shape[2:] if norm == "layer" else shape[1:2]
    w_np, b_np = rng.standard_normal(params), rng.standard_normal(params)
    call = {"layer": lambda x, w, b: F.layer_norm(x, params, w, b), "group": lambda x, w, b: F.group_norm(x, 3, w, b),
            "instance": lambda x, w, b: F.instance_norm(x, weight=w, bias=b)}[norm]

    def run():
        x = distnn.tensor(x_np, requires_grad=True)
        w, b = (distnn.tensor(v, requires_grad=True) if affine else None for v in (w_np, b_np))
        y = call(x, w, b)
        y.backward(distnn.tensor(g_np))
        return [y.detach().numpy(), x.grad.numpy()] + ([w.grad.numpy(), b.grad.numpy()] if affine else [])
    _same_at_one_and_two_threads(run)
    assert blocks and min(blocks) > 1  # it did go by blocks
    by_blocks = run()
    monkeypatch.setattr("distnn.ops.layer_norm_rows.applies", lambda *a: False)  # the whole-array formulas
    for ours, whole in zip(by_blocks, run()):
        np.testing.assert_allclose(ours, whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,kwargs", [
    ("AdamW", {"weight_decay": 0.1}), ("Adam", {"weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"maximize": True}), ("SGD", {"momentum": 0.9, "weight_decay": 5e-4}),
    ("SGD", {"momentum": 0.9, "nesterov": True}), ("SGD", {"momentum": 0.5, "dampening": 0.3, "maximize": True}),
    ("RMSprop", {"weight_decay": 0.1}), ("RMSprop", {"centered": True, "momentum": 0.9, "maximize": True}),
    ("RMSprop", {"momentum": 0.5}), ("Adagrad", {"lr_decay": 0.1, "weight_decay": 0.1}),
    ("Adamax", {"weight_decay": 0.1, "maximize": True}), ("NAdam", {"weight_decay": 0.1}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}), ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}), ("Adadelta", {"weight_decay": 0.1}),
    ("ASGD", {"t0": 0, "weight_decay": 0.1}), ("Rprop", {"maximize": True})])
def test_optimizers_by_flat_blocks_are_bit_identical_to_the_whole_update(monkeypatch, name, kwargs):
    """Three steps (RAdam eight: its rectified step starts at the sixth) on a parameter
    big enough to go by blocks (a short last one), at one thread and at two, and
    whole: the same parameters and state, bit for bit."""
    import importlib
    # SGD and Adam have block sizes of their own, the rest the optimizer module's
    own = {"SGD": "sgd", "Adam": "adam", "AdamW": "adam"}
    module = importlib.import_module("distnn.optim." + own.get(name, "optimizer"))
    rng = np.random.default_rng(5)
    p_np = rng.standard_normal((37, 53))
    grads = [rng.standard_normal(p_np.shape) for _ in range(8 if name == "RAdam" else 3)]
    calls = []
    real_map = threads.map_chunks
    monkeypatch.setattr("distnn.threads.map_chunks",
                        lambda xp, fn, parts: calls.append(len(parts)) or real_map(xp, fn, parts))
    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 100)
    before = distnn.get_num_threads()
    results = []
    try:
        for n, threshold in ((1, float("inf")), (1, 0), (2, 0)):
            monkeypatch.setattr(module, "_BLOCKED_MIN_ELEMENTS", threshold)
            distnn.set_num_threads(n)
            w = distnn.nn.Parameter(distnn.tensor(p_np))
            opt = getattr(distnn.optim, name)([w], lr=0.01, **kwargs)
            for g in grads:
                w.grad = distnn.tensor(g)
                opt.step()
            state = opt.state[w]
            results.append([w.detach().numpy()] + [state[k].numpy() for k in sorted(state) if k != "step"])
            assert len(results[-1]) > 1  # the state is compared too
    finally:
        distnn.set_num_threads(before)
    steps_by_blocks = len(grads) - (name == "SGD")  # SGD's first step makes its momentum buffer whole
    assert calls == [20] * (2 * steps_by_blocks)  # 1961 elements: 20 blocks, in each of the two runs by blocks
    for whole, *by_blocks in zip(*results):
        for b in by_blocks:
            assert whole.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(300, 70), (3, 50, 70)])
def test_softmax_by_row_blocks_is_bit_identical_to_the_whole_array(monkeypatch, name, shape):
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal(shape, dtype=np.float32) * 4
    g_np = rng.standard_normal(shape, dtype=np.float32)
    blocks = []
    monkeypatch.setattr("distnn.ops.softmaxes._by_rows",
                        lambda *a, fn=softmaxes._by_rows: blocks.append(a[1]) or fn(*a))
    monkeypatch.setattr("distnn.threads._ROW_BLOCK_BYTES", 4096)  # several blocks
    _whole_and_by_blocks(monkeypatch, "distnn.ops.softmaxes._ROWWISE_BYTES",
                         lambda x: getattr(F, name)(x, dim=-1), x_np, g_np)
    assert len(blocks) == 4  # forward and backward, in the two runs by blocks


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 3, "stride": 2, "padding": 1},  # ResNet's stem: overlapping windows
    {"kernel_size": 2, "stride": 1, "dilation": 2, "ceil_mode": True},
])
def test_max_pooling_by_sample_chunks_is_bit_identical_to_the_whole_batch(monkeypatch, kwargs):
    """Ties (first maximum), NaN (the last wins) and -inf, chunk by chunk as whole."""
    rng = np.random.default_rng(3)
    x_np = rng.integers(-3, 3, (5, 4, 9, 9)).astype(np.float32)
    x_np[1, 2, 4, 4], x_np[3, 0, 0, 1], x_np[3, 0, 0, 2], x_np[4, 1] = np.nan, np.nan, np.nan, -np.inf
    out_hw = distnn.nn.functional.max_pool2d(distnn.tensor(x_np), **kwargs).shape[2:]
    g_np = rng.standard_normal((5, 4) + tuple(out_hw), dtype=np.float32)
    chunks = []
    monkeypatch.setattr("distnn.ops.pool.map_chunks",
                        lambda xp, fn, parts, run=threads.map_chunks: chunks.append(len(parts)) or run(xp, fn, parts))
    _whole_and_by_blocks(monkeypatch, "distnn.ops.pool._CHUNK_BYTES",
                         lambda x: F.max_pool2d(x, **kwargs), x_np, g_np)
    # forward by chunks at one thread and at two; backward whole at one, a part per thread at two
    assert chunks == [5, 5, 2]


@pytest.mark.parametrize("name,kwargs", [
    ("gelu", {}), ("elu", {}), ("selu", {}), ("celu", {"alpha": 0.5}), ("softplus", {"beta": 2.0}), ("mish", {})])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_by_blocks_are_bit_identical_to_the_whole_array(monkeypatch, name, kwargs, dtype):
    """Forward and backward a flat block at a time, at one thread and at two, give the
    bits the whole array does: NaN, infinities and signed zeros included, and a short
    last block."""
    rng = np.random.default_rng(3)
    x_np = (rng.standard_normal((37, 211)) * 4).astype(dtype)
    x_np.reshape(-1)[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, -40]
    g_np = rng.standard_normal(x_np.shape).astype(dtype)
    calls = []
    real_map = threads.map_chunks
    monkeypatch.setattr("distnn.threads.map_chunks",
                        lambda xp, fn, parts: calls.append(len(parts)) or real_map(xp, fn, parts))
    monkeypatch.setattr("distnn.ops.activation._BLOCK_ELEMENTS", 1000)
    _whole_and_by_blocks(monkeypatch, "distnn.ops.activation._BLOCKED_MIN_ELEMENTS",
                         lambda x: getattr(F, name)(x, **kwargs), x_np, g_np)
    assert len(calls) >= 4 and all(c == 7 for c in calls)  # 7807 elements: 8 blocks, the first run here


def _chunks_in_child(queue):
    queue.put((threads._openmp_team, threads.map_chunks(np, lambda c: c + 1, [0, 1, 2, 3])))


@needs_openblas
def test_a_forked_child_makes_its_own_pool(runner):
    """Neither the pool's threads nor OpenMP's survive a fork: the child makes a pool."""
    import multiprocessing
    threads.map_chunks(np, lambda c: time.sleep(0.01), [0, 1])  # the parent's threads exist before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_chunks_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == (None, [1, 2, 3, 4])
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0


def test_flat_blocks_only_for_plain_contiguous_numpy_arrays_of_one_shape():
    from distnn.autograd.graph_xp import GraphArray
    a = np.zeros((4, 5))
    assert threads.flat_blocks(np, [a, a + 1], 6, 0) == [slice(0, 6), slice(6, 12), slice(12, 18), slice(18, 24)]
    assert threads.flat_blocks(np, [a], 6, 21) is None  # below the size
    assert threads.flat_blocks(np, [a, a.T.copy()], 6, 0) is None  # shapes differ
    assert threads.flat_blocks(np, [a, np.zeros((5, 4)).T], 6, 0) is None  # not C-contiguous
    recorded = GraphArray(distnn.tensor(a, requires_grad=True) * 2)
    assert threads.flat_blocks(np, [recorded], 6, 0) is None  # being recorded: the graph's own ops
