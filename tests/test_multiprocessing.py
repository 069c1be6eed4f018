"""distnn.multiprocessing and shared-memory tensors (``share_memory_``, ``is_shared``,
``Module.share_memory``), checked against torch.multiprocessing where it has an answer.

The multiprocess scenarios live in multiprocessing_workers.py; each runs in its own
session through tests/multiproc.py (timeout, everything killed at the end), with a
private TMPDIR that must be empty afterwards, and must leave nothing in /dev/shm.
"""

import gc
import multiprocessing
import os
import pickle
import re
import sys
import time
import warnings

import numpy as np
import pytest

import distnn
import distnn.multiprocessing as mp
from distnn import nn
from distnn._tensor_shared import storage_of
from multiproc import REPO, collect, format_results, json_lines, start
from op_check import requires_torch, torch

WORKERS = REPO / "tests" / "multiprocessing_workers.py"


# --- one process ------------------------------------------------------------------------
LAYOUTS = {
    "contiguous": lambda: np.arange(12, dtype=np.float32).reshape(3, 4),
    "transposed": lambda: np.arange(12, dtype=np.float32).reshape(3, 4).T,
    "negative strides": lambda: np.arange(12, dtype=np.float64).reshape(3, 4)[::-1, ::-2],
    "int64 view": lambda: np.arange(10, dtype=np.int64)[2:7],
    "bool": lambda: np.array([True, False, True]),
    "0-d": lambda: np.array(3.5, dtype=np.float32),
    "empty": lambda: np.zeros((0, 3), dtype=np.float32),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_share_memory_keeps_values_and_layout(layout):
    array = LAYOUTS[layout]()
    t = distnn.from_numpy(array)
    layout_before = (t.dtype, t.shape, t.stride(), t.is_contiguous())
    assert not t.is_shared()
    assert t.share_memory_() is t
    assert t.is_shared()
    np.testing.assert_array_equal(t.numpy(), array)
    assert (t.dtype, t.shape, t.stride(), t.is_contiguous()) == layout_before
    block = storage_of(t._data)
    t.share_memory_()  # already shared: nothing moves
    assert storage_of(t._data) is block


def test_views_of_a_shared_tensor_share_its_memory():
    x = distnn.arange(6.0).reshape(2, 3).share_memory_()
    row = x[1]
    assert row.is_shared() and x.t().is_shared() and x.detach().is_shared() and x.data.is_shared()
    row.mul_(10)
    assert x.tolist() == [[0, 1, 2], [30, 40, 50]]
    assert not (x + 1).is_shared()


def test_sharing_a_view_moves_its_base_too():
    base = distnn.arange(6.0)
    view = base[2:5]
    view.share_memory_()
    assert view.is_shared() and base.is_shared()
    view.fill_(-1)
    assert base.tolist() == [0, 1, -1, -1, -1, 5]


def test_tensor_share_memory_leaves_grad_alone_as_torch():
    t = distnn.ones(3, requires_grad=True)
    (t * 2).sum().backward()
    t.share_memory_()
    assert t.is_shared() and not t.grad.is_shared() and t.requires_grad and t.is_leaf
    if torch is not None:
        ref = torch.ones(3, requires_grad=True)
        (ref * 2).sum().backward()
        ref.share_memory_()
        assert (ref.is_shared(), ref.grad.is_shared()) == (True, False)


def test_module_share_memory_moves_parameters_buffers_and_grads():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    x = distnn.randn(5, 4)
    model(x).sum().backward()
    model.eval()
    before = model(x).detach().numpy().copy()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert model.share_memory() is model
    assert list(model.parameters()) == params  # same Parameter objects, moved in place
    tensors = list(model.parameters()) + list(model.buffers()) + [p.grad for p in model.parameters()]
    assert all(t.is_shared() for t in tensors)
    assert len({id(storage_of(t._data)) for t in tensors}) == 1  # one block, one descriptor
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.detach().numpy(), state[k])
    np.testing.assert_array_equal(model(x).detach().numpy(), before)
    model.train()
    model(x)
    assert model[1].num_batches_tracked.item() == 2 and model[1].running_mean.is_shared()
    if torch is not None:
        ref = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
        ref(torch.randn(5, 4)).sum().backward()
        ref.share_memory()
        assert all(t.is_shared() for t in list(ref.parameters()) + list(ref.buffers()) +
                   [p.grad for p in ref.parameters()])


def test_tied_weights_stay_tied():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    nn.Sequential(a, b).share_memory()
    assert b.weight is a.weight and a.weight.is_shared()


def test_plain_pickle_copies_shared_tensors():
    t = distnn.arange(4.0).share_memory_()
    p = nn.Parameter(distnn.ones(2)).share_memory_()
    copies = pickle.loads(pickle.dumps((t, p, t[1:])))
    assert [c.is_shared() for c in copies] == [False, False, False]
    assert [c.tolist() for c in copies] == [[0, 1, 2, 3], [1, 1], [1, 2, 3]]
    assert type(copies[1]) is nn.Parameter and copies[1].requires_grad
    copies[0].add_(1)
    assert t.tolist() == [0, 1, 2, 3]


def test_shared_memory_is_an_anonymous_memfd_closed_with_its_last_tensor():
    t = distnn.zeros(1000).share_memory_()
    fd = storage_of(t._data).fd
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:distnn-shared-tensor")
    view = t[10:20]
    del t
    gc.collect()
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")  # the view keeps it
    del view
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.gpu
@pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a GPU")
def test_cuda_tensors_refuse_to_be_shared():
    t = distnn.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match=r"Expect: a cpu tensor, Actual: a cuda:0 tensor"):
        t.share_memory_()
    assert not t.is_shared()
    with pytest.raises(RuntimeError, match="share_memory_"):
        nn.Linear(2, 2).cuda().share_memory()


def test_sharing_strategies():
    assert mp.get_sharing_strategy() == "file_descriptor"
    assert mp.get_all_sharing_strategies() == {"file_descriptor"}
    mp.set_sharing_strategy("file_descriptor")
    with pytest.raises(AssertionError, match="invalid sharing strategy 'file_system'"):
        mp.set_sharing_strategy("file_system")


@requires_torch
def test_exports_what_torch_multiprocessing_exports():
    import torch.multiprocessing as tmp
    missing = [name for name in tmp.__all__ if not hasattr(mp, name)]
    assert not missing
    assert mp.Process is multiprocessing.Process and mp.get_context is multiprocessing.get_context
    for name in ("spawn", "start_processes", "ProcessContext", "ProcessRaisedException", "ProcessExitedException"):
        assert hasattr(mp, name)


@requires_torch
def test_spawn_warns_about_other_start_methods_as_torch():
    import torch.multiprocessing as tmp
    messages = []
    for lib in (mp, tmp):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert lib.spawn(print, nprocs=0, start_method="fork") is None
        messages.append([(w.category, str(w.message)) for w in caught])
    assert messages[0] == messages[1] and messages[0][0][0] is FutureWarning


@requires_torch
def test_process_exceptions_pickle_as_torch():
    import torch.multiprocessing as tmp
    for ours, theirs, args in ((mp.ProcessRaisedException, tmp.ProcessRaisedException, ("m", 1, 42)),
                               (mp.ProcessExitedException, tmp.ProcessExitedException, ("m", 1, 42, -9, "SIGKILL"))):
        a, b = pickle.loads(pickle.dumps(ours(*args))), pickle.loads(pickle.dumps(theirs(*args)))
        assert issubclass(ours, mp.ProcessException)
        for attr in ("msg", "error_index", "error_pid", "exit_code", "signal_name"):
            assert getattr(a, attr, None) == getattr(b, attr, None), attr


# --- several processes ------------------------------------------------------------------
_OTHER_JOBS = re.compile(r"distnn-[0-9a-f]{16}-")  # distributed collectives' regions (their own tests)


def _shm_entries():
    return {name for name in os.listdir("/dev/shm") if not _OTHER_JOBS.match(name)}


def run_scenarios(tmp_path, *runs, timeout=90, check_tmp=(True,)):
    """Run ``multiprocessing_workers.py`` scenarios side by side; returns their results
    after checking each ran cleanly and left nothing in its TMPDIR or in /dev/shm."""
    shm_before = _shm_entries()
    procs, tmpdirs = [], []
    for i, args in enumerate(runs):
        tmpdirs.append(tmp_path / f"tmp{i}")
        tmpdirs[-1].mkdir()
        env = dict(os.environ, TMPDIR=str(tmpdirs[-1]), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        procs.append(start([sys.executable, str(WORKERS), *args], env))
    results = collect(procs, timeout)
    assert all(r.returncode == 0 for r in results), format_results(results)
    for tmpdir, check in zip(tmpdirs, check_tmp * len(runs)):
        assert not check or not os.listdir(tmpdir), f"left in TMPDIR: {os.listdir(tmpdir)}"
    deadline = time.monotonic() + 5  # multiprocessing's resource tracker may still be unlinking
    while _shm_entries() - shm_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _shm_entries() - shm_before, f"left in /dev/shm: {sorted(_shm_entries() - shm_before)}"
    return results


def assert_checks(result, expected):
    checks = [rec for rec in json_lines(result.stdout) if "check" in rec]
    failed = [rec for rec in checks if not rec["ok"]]
    assert not failed, f"{failed}\n{result.stderr[-3000:]}"
    assert len(checks) == expected, f"{len(checks)} checks ran, expected {expected}:\n{result.stdout}"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shared_tensors_are_the_same_memory_in_parent_and_child(tmp_path, method):
    """As a Process argument and through Queues, both ways; non-shared tensors copy."""
    result, = run_scenarios(tmp_path, ("sharing", method))
    assert_checks(result, 12)


def test_hogwild_trains_the_shared_model(tmp_path):
    """mnist_hogwild's shape on a small problem: lock-free SGD from 2 spawned processes
    trains the parent's model; with a lock, the parent's model is exactly the replay of
    the steps the workers took; without share_memory the parent's model is unchanged."""
    result, = run_scenarios(tmp_path, ("hogwild",))
    assert_checks(result, 9)


def _normalized(record):
    out = {k: v for k, v in record.items() if k != "msg"}
    out["msg"] = re.sub(r'File "[^"]*", line \d+', 'File "..."', record["msg"])
    return out


def test_spawn_errors_propagate_as_torch(tmp_path):
    """A child's exception, exit code or death by signal is raised in the parent with
    torch.multiprocessing's exception types and messages; the other child is stopped."""
    runs = [("errors", "distnn")] + ([("errors", "torch")] if torch is not None else [])
    results = run_scenarios(tmp_path, *runs, check_tmp=(True, False))  # torch leaves its error files
    ours = [rec for rec in json_lines(results[0].stdout) if "case" in rec]
    assert_checks(results[0], 1)
    assert [r["case"] for r in ours] == ["raise", "exit", "sigkill"]
    assert all(r["alive"] == [] and r["error_index"] == 1 and r["pid_matches"] for r in ours), ours
    raised, exited, killed = ours
    assert raised["raised"] == "ProcessRaisedException" and raised["base"] == "ProcessException"
    assert raised["msg"].startswith("\n\n-- Process 1 terminated with the following error:\nTraceback")
    assert raised["msg"].endswith("ValueError: boom in process 1\n")
    assert (exited["raised"], exited["msg"], exited["exit_code"]) == (
        "ProcessExitedException", "process 1 terminated with exit code 3", 3)
    assert (killed["msg"], killed["exit_code"], killed["signal_name"]) == (
        "process 1 terminated with signal SIGKILL", -9, "SIGKILL")
    if torch is not None:
        theirs = [rec for rec in json_lines(results[1].stdout) if "case" in rec]
        assert [_normalized(r) for r in ours] == [_normalized(r) for r in theirs]
