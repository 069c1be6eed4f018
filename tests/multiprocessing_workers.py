"""Multiprocess scenarios for tests/test_multiprocessing.py, one per run (the test runs
each through tests/multiproc.py, which enforces a timeout and kills what is left):

    python tests/multiprocessing_workers.py sharing fork|spawn   # shared tensors both ways
    python tests/multiprocessing_workers.py hogwild              # Hogwild training on a shared model
    python tests/multiprocessing_workers.py errors distnn|torch  # spawn's error propagation

Each prints one JSON line per finding: ``{"check": name, "ok": bool, ...}`` or, for
``errors``, ``{"case": name, ...}`` for the test to compare with torch's.
"""

import copy
import json
import os
import signal
import sys
import tempfile
import time

import numpy as np

import distnn
import distnn.multiprocessing as mp
from distnn import nn
from distnn._tensor_shared import storage_of
from distnn.nn import functional as F

WAIT = 20  # seconds any one hand-over may take


def report(check, ok, **detail):
    print(json.dumps({"check": check, "ok": bool(ok), **detail}), flush=True)


def shared_mappings():
    """The mapped files of this process that could be shared memory: memfds, and anything
    under /dev/shm (but multiprocessing's own lock semaphores) or the temporary directory."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) == 6 else ""
            if path.startswith(("/memfd:", "/dev/shm", tempfile.gettempdir())) and \
                    not path.startswith("/dev/shm/sem."):
                found.add(path)
    return sorted(found)


# --- sharing ------------------------------------------------------------------------
def sharing_child(x, plain, to_child, to_parent):
    to_parent.put(("start", x.is_shared(), x.tolist(), plain.is_shared()))
    x.add_(1)
    plain.add_(1)
    to_parent.put(("wrote",))
    to_child.get(timeout=WAIT)  # the parent wrote into x
    to_parent.put(("sees", x.tolist()))
    y_view, x_again = to_child.get(timeout=WAIT)
    y_view.mul_(2)
    z = distnn.full((3,), 7.0).share_memory_()
    to_parent.put(("queued", y_view.is_shared(), storage_of(x_again._data) is storage_of(x._data), z,
                   shared_mappings()))
    to_child.get(timeout=WAIT)  # the parent wrote into z (z's sender, this process, must live until then)
    to_parent.put(("z", z.tolist()))


def sharing(method):
    ctx = mp.get_context(method)
    x = distnn.arange(6.0).reshape(2, 3).share_memory_()
    plain = distnn.zeros(2)
    to_child, to_parent = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=sharing_child, args=(x, plain, to_child, to_parent))
    child.start()
    try:
        _, shared, values, plain_shared = to_parent.get(timeout=WAIT)
        report("arg arrives shared", shared and not plain_shared, values=values)
        report("child sees the parent's values", values == [[0, 1, 2], [3, 4, 5]], values=values)
        to_parent.get(timeout=WAIT)
        report("parent sees the child's writes", x.tolist() == [[1, 2, 3], [4, 5, 6]], values=x.tolist())
        report("a non-shared arg is a copy", plain.tolist() == [0, 0], values=plain.tolist())
        x[0, 0] = 100.0
        to_child.put("parent wrote")
        seen = to_parent.get(timeout=WAIT)[1]
        report("child sees the parent's write", seen[0][0] == 100, values=seen)
        y = distnn.ones(4).share_memory_()
        to_child.put((y[1:], x))
        _, view_shared, same_block, z, mappings = to_parent.get(timeout=WAIT)
        report("a queued view arrives shared", view_shared and y.tolist() == [1, 2, 2, 2], values=y.tolist())
        report("a block already mapped is reused", same_block)
        report("child returns a tensor it shared", z.is_shared() and z.tolist() == [7, 7, 7], values=z.tolist())
        z.sub_(7)
        to_child.put("parent wrote")
        report("child sees the parent's write to its tensor", to_parent.get(timeout=WAIT)[1] == [0, 0, 0])
        for who, maps in (("child", mappings), ("parent", shared_mappings())):
            report(f"{who} maps only anonymous memfds", maps and all(m.startswith("/memfd:") for m in maps),
                   mappings=maps)
    finally:
        child.join(WAIT)
    report("child exited cleanly", child.exitcode == 0, exitcode=child.exitcode)


# --- hogwild ------------------------------------------------------------------------
STEPS, BATCH, LR, MOMENTUM = 150, 32, 0.05, 0.5


def blobs(n, seed):
    """Four Gaussian classes in 8 dimensions (chance: 25%)."""
    centers = np.random.default_rng(0).normal(0.0, 1.5, (4, 8))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    points = centers[labels] + rng.normal(0.0, 1.0, (n, 8))
    return distnn.tensor(points.astype(np.float32)), distnn.tensor(labels)


def make_model():
    distnn.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def batches(rank, n):
    return np.random.default_rng(100 + rank).integers(0, n, (STEPS, BATCH))


def train_step(model, opt, x, y, index):
    opt.zero_grad()
    F.cross_entropy(model(x[distnn.tensor(index)]), y[distnn.tensor(index)]).backward()
    opt.step()


def hogwild_child(rank, model, x, y, lock, order, count, done, results):
    """mnist_hogwild's train(): an optimizer of its own on the shared parameters. With a
    lock, each step also records which process took it (``order``, ``count``: shared)."""
    opt = distnn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    model.train()
    for index in batches(rank, len(x)):
        if lock is None:
            train_step(model, opt, x, y, index)
            continue
        with lock:
            train_step(model, opt, x, y, index)
            order[int(count.item())] = rank
            count.add_(1)
    done.wait(WAIT)  # every process finished: what this one sees now is final
    results.put((rank, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}))


def accuracy(model, x, y):
    model.eval()
    with distnn.no_grad():
        return float((model(x).argmax(1) == y).float().mean().item())


def run_workers(ctx, model, x, y, nprocs, locked):
    lock = ctx.Lock() if locked else None
    order = distnn.full((nprocs * STEPS,), -1, dtype=distnn.int64).share_memory_()
    count = distnn.zeros((), dtype=distnn.int64).share_memory_()
    done, results = ctx.Barrier(nprocs), ctx.Queue()
    procs = [ctx.Process(target=hogwild_child, args=(r, model, x, y, lock, order, count, done, results))
             for r in range(nprocs)]
    for p in procs:
        p.start()
    seen = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(WAIT)
    report("workers exited cleanly", all(p.exitcode == 0 for p in procs), exitcodes=[p.exitcode for p in procs])
    return seen, order


def same_state(model, state):
    ours = model.state_dict()
    return all(np.array_equal(ours[k].detach().numpy(), v) for k, v in state.items())


def hogwild():
    x, y = blobs(1024, seed=1)
    test_x, test_y = blobs(512, seed=2)

    # As mnist_hogwild: spawn, share_memory(), lock-free updates from each process.
    model = make_model()
    model.share_memory()
    before = accuracy(model, test_x, test_y)
    seen, _ = run_workers(mp.get_context("spawn"), model, x, y, nprocs=2, locked=False)
    after = accuracy(model, test_x, test_y)
    report("hogwild trains the shared model", before < 0.5 and after > 0.9, before=before, after=after)
    report("parent sees what every worker sees", all(same_state(model, s) for s in seen.values()))
    tracked = int(model[1].num_batches_tracked.item())
    report("buffers are shared", STEPS < tracked <= 2 * STEPS, num_batches_tracked=tracked)

    # The same with a lock around each step: replaying the steps in the recorded order,
    # each process's optimizer on one private copy, must give the shared model exactly.
    model = make_model()
    model.share_memory()
    replay = copy.deepcopy(model)
    seen, order = run_workers(mp.get_context("fork"), model, x, y, nprocs=2, locked=True)
    opts = [distnn.optim.SGD(replay.parameters(), lr=LR, momentum=MOMENTUM) for _ in range(2)]
    plans, taken = [batches(r, len(x)) for r in range(2)], [0, 0]
    replay.train()
    for rank in order.tolist():
        train_step(replay, opts[rank], x, y, plans[rank][taken[rank]])
        taken[rank] += 1
    report("every step is recorded", taken == [STEPS, STEPS], taken=taken)
    report("shared model == replay of the workers' steps", same_state(model, {
        k: v.detach().numpy() for k, v in replay.state_dict().items()}))

    # Without share_memory() the processes train copies: the parent's model is unchanged.
    model = make_model()
    untouched = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    run_workers(mp.get_context("fork"), model, x, y, nprocs=1, locked=False)
    report("without share_memory the parent's model is unchanged", same_state(model, untouched))


# --- errors -------------------------------------------------------------------------
def failing(i, case):
    if i == 0:
        time.sleep(60)  # the parent must stop this one when process 1 fails
    elif case == "raise":
        raise ValueError("boom in process 1")
    elif case == "exit":
        sys.exit(3)
    elif case == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)


def fill(i, t):
    t[i] = i + 1


def errors(impl):
    if impl == "torch":
        import torch.multiprocessing as tmp  # the oracle, forked: torch's import is slow to repeat

        def start(fn, args):
            return tmp.start_processes(fn, args=args, nprocs=2, join=False, start_method="fork")
    else:
        def start(fn, args, method="spawn"):
            # spawn itself for a raise; the exits go through the same join, so fork saves time
            return mp.start_processes(fn, args=args, nprocs=2, join=False, start_method=method)
    for case in ("raise", "exit", "sigkill"):
        context = start(failing, (case,)) if case == "raise" or impl == "torch" else \
            start(failing, (case,), "fork")
        pids = context.pids()
        record = {"case": case, "raised": None}
        try:
            while not context.join():
                pass
        except Exception as e:
            record.update(raised=type(e).__name__, base=type(e).__mro__[1].__name__, msg=str(e),
                          error_index=e.error_index, pid_matches=e.error_pid == pids[1],
                          exit_code=getattr(e, "exit_code", None), signal_name=getattr(e, "signal_name", None))
        record["alive"] = [p for p in pids if os.path.exists(f"/proc/{p}")]
        print(json.dumps(record), flush=True)
    if impl == "distnn":
        t = distnn.zeros(2).share_memory_()
        assert mp.spawn(fill, args=(t,), nprocs=2) is None
        report("spawned processes write a shared arg", t.tolist() == [1, 2], values=t.tolist())


if __name__ == "__main__":
    scenario, *rest = sys.argv[1:]
    {"sharing": sharing, "hogwild": hogwild, "errors": errors}[scenario](*rest)
