"""Uneven-inputs worker: rank r trains ddp_spec's join model on 3 + 2r batches and
saves, per run and rank, an .npz of the final parameters and buffers and its losses.

    join.py OUT_DIR RUN ...              DDP under model.join(), RUN one of ddp_spec.JOIN_RUNS:
                                         divide_by_initial_world_size and a comm hook
    join.py OUT_DIR reference WORLD initial|active ...   without hooks, simulated in one process
    join.py OUT_DIR throw                under model.join(throw_on_early_termination=True)
    join.py OUT_DIR uneven exit|barrier|linger buffers|grads [SECONDS]   no join: the rank that
            runs out first exits, calls a barrier, or leaves the group and lingers SECONDS; the
            others' next collective is the forward's buffer broadcast (buffers) or, with
            broadcast_buffers=False, the backward's gradient all-reduce (grads)

``throw`` and ``uneven`` print one JSON line per rank: the step it reached and the
error it raised (the error type and message), then exit 0.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import distnn
import distnn.distributed as dist
import distnn.nn as nn
import distnn.nn.functional as F
from distnn.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from ddp_spec import JOIN_POWERSGD, JOIN_RUNS, JOIN_SIZES, LR, batch, join_batches, linear_weights, save, sgd_step


def join_model():
    (w1, b1), (w2, b2) = linear_weights(JOIN_SIZES)
    first, last = nn.Linear(JOIN_SIZES[0], JOIN_SIZES[1]), nn.Linear(JOIN_SIZES[1], JOIN_SIZES[2])
    for layer, w, b in ((first, w1, b1), (last, w2, b2)):
        layer.weight.data, layer.bias.data = distnn.from_numpy(w.copy()), distnn.from_numpy(b.copy())
    return nn.Sequential(first, nn.BatchNorm1d(JOIN_SIZES[1]), nn.ReLU(), last)


def step(model, opt, rank, i):
    return sgd_step(distnn, model, opt, rank, i, JOIN_SIZES)


def train_joined(out_dir, run, rank):
    divide_by_initial_world_size, hook = JOIN_RUNS[run]
    model = join_model()
    ddp = dist.DistributedDataParallel(model)
    if hook == "allreduce":
        ddp.register_comm_hook(None, default_hooks.allreduce_hook)
    elif hook == "powersgd":
        ddp.register_comm_hook(powerSGD_hook.PowerSGDState(None, **JOIN_POWERSGD), powerSGD_hook.powerSGD_hook)
    opt = distnn.optim.SGD(model.parameters(), lr=LR)
    with ddp.join(divide_by_initial_world_size=divide_by_initial_world_size):
        losses = [step(ddp, opt, rank, i) for i in range(join_batches(rank))]
    save(Path(out_dir) / f"join-{run}-rank{rank}.npz", model, losses)


def train_reference(out_dir, world, divide):
    """One process: every step, each rank still training computes its gradient from the
    same parameters and the same buffers (the last rank's, which DDP broadcasts, that
    rank having the most batches); their sum is divided by the world size or by the
    number of ranks still training."""
    model = join_model()
    params = list(model.parameters())
    opt = distnn.optim.SGD(params, lr=LR)
    counts = [join_batches(r) for r in range(world)]
    for i in range(max(counts)):
        active = [r for r in range(world) if counts[r] > i]
        start = {k: v.numpy().copy() for k, v in model.named_buffers()}
        total = [np.zeros(p.shape, np.float32) for p in params]
        for r in active:
            for name, buf in model.named_buffers():
                buf._data = start[name].copy()
            x, y = batch(r, i, JOIN_SIZES[0], JOIN_SIZES[-1])
            opt.zero_grad()
            F.cross_entropy(model(distnn.from_numpy(x)), distnn.from_numpy(y)).backward()
            for t, p in zip(total, params):
                t += p.grad.numpy() / np.float32(world if divide == "initial" else len(active))
        for p, t in zip(params, total):
            p.grad = distnn.from_numpy(t)
        opt.step()
    save(Path(out_dir) / f"reference{world}-{divide}-rank0.npz", model, [])


def report(rank, reached, error):
    print(json.dumps({"rank": rank, "reached": reached,
                      "error": None if error is None else f"{type(error).__name__}: {error}"}), flush=True)


def train_throwing(rank):
    model = join_model()
    ddp = dist.DistributedDataParallel(model)
    opt = distnn.optim.SGD(model.parameters(), lr=LR)
    reached = 0
    try:
        with ddp.join(throw_on_early_termination=True):
            for reached in range(join_batches(rank)):
                step(ddp, opt, rank, reached)
            reached += 1
    except RuntimeError as exc:
        return report(rank, reached, exc)
    report(rank, reached, None)


def train_unevenly(how, first_collective, rank):
    model = join_model()
    ddp = dist.DistributedDataParallel(model, broadcast_buffers=first_collective == "buffers")
    opt = distnn.optim.SGD(model.parameters(), lr=LR)
    reached = 0
    try:
        for reached in range(join_batches(rank)):
            step(ddp, opt, rank, reached)
        reached += 1
        if how == "barrier":
            dist.barrier()
        elif how == "linger":
            dist.destroy_process_group()
            time.sleep(float(sys.argv[5]))
    except dist.DistributedError as exc:
        return report(rank, reached, exc)
    report(rank, reached, None)


def main():
    out_dir, mode = sys.argv[1], sys.argv[2]
    if mode == "reference":
        for divide in sys.argv[4:]:
            train_reference(out_dir, int(sys.argv[3]), divide)
        return
    dist.init_process_group()
    rank = dist.get_rank()
    if mode == "throw":
        train_throwing(rank)
    elif mode == "uneven":
        train_unevenly(sys.argv[3], sys.argv[4], rank)
        return  # the rank that ran out has left, or the group is broken
    else:
        for run in sys.argv[2:]:
            train_joined(out_dir, run, rank)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
