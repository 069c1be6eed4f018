"""The PyTorch oracle of the comm-hook and join workers: the same models, weights,
data and settings (ddp_spec), trained by torch's DDP on torch's gloo, saving the
same .npz files (prefixed ``torch-``).

    torch_ddp.py OUT_DIR hooks STEPS HOOK [HOOK ...]
    torch_ddp.py OUT_DIR join RUN [RUN ...]     (RUN: one of ddp_spec.JOIN_RUNS)

PowerSGD draws its first Q from ``torch.randn`` after ``torch.manual_seed``; here
those two calls, inside torch's hook only, draw distnn's numbers for the same seed,
so both libraries start from the same Q. The results are saved before the process
group is torn down, and the process then exits at once: the comparison is of
training, not of gloo's teardown.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

import distnn
from ddp_spec import (HOOK_SIZES, JOIN_POWERSGD, JOIN_RUNS, JOIN_SIZES, LR, POWERSGD, join_batches, linear_weights,
                      save, sgd_step)


class _DistnnRandom:
    """``torch`` as powerSGD_hook sees it, but seeding and drawing with distnn's generator."""

    def __init__(self):
        self._generator = distnn.Generator()

    def __getattr__(self, name):
        return getattr(torch, name)

    def manual_seed(self, seed):
        self._generator.manual_seed(seed)

    def randn(self, *shape, device=None, dtype=None):
        return torch.from_numpy(distnn.randn(*shape, generator=self._generator).numpy()).to(dtype)


def linear(w, b):
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


def hook_model():
    weights = linear_weights(HOOK_SIZES)
    layers = []
    for i, (w, b) in enumerate(weights):
        layers += [linear(w, b), nn.ReLU()] if i < len(weights) - 1 else [linear(w, b)]
    return nn.Sequential(*layers)


def join_model():
    (w1, b1), (w2, b2) = linear_weights(JOIN_SIZES)
    return nn.Sequential(linear(w1, b1), nn.BatchNorm1d(JOIN_SIZES[1]), nn.ReLU(), linear(w2, b2))


def train_hooks(out_dir, steps, names, rank):
    for name in names:
        model = torch.nn.parallel.DistributedDataParallel(hook_model())
        if name == "allreduce":
            model.register_comm_hook(None, default_hooks.allreduce_hook)
        elif name in ("fp16", "bf16"):
            model.register_comm_hook(None, getattr(default_hooks, f"{name}_compress_hook"))
        elif name in POWERSGD:
            model.register_comm_hook(powerSGD_hook.PowerSGDState(None, **POWERSGD[name]),
                                     powerSGD_hook.powerSGD_hook)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        losses = [sgd_step(torch, model, opt, rank, step, HOOK_SIZES) for step in range(steps)]
        save(Path(out_dir) / f"torch-{name}-rank{rank}.npz", model.module, losses)


def train_join(out_dir, runs, rank):
    for run in runs:
        divide_by_initial_world_size, hook = JOIN_RUNS[run]
        model = torch.nn.parallel.DistributedDataParallel(join_model())
        if hook == "allreduce":
            model.register_comm_hook(None, default_hooks.allreduce_hook)
        elif hook == "powersgd":
            model.register_comm_hook(powerSGD_hook.PowerSGDState(None, **JOIN_POWERSGD), powerSGD_hook.powerSGD_hook)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        with model.join(divide_by_initial_world_size=divide_by_initial_world_size):
            losses = [sgd_step(torch, model, opt, rank, step, JOIN_SIZES) for step in range(join_batches(rank))]
        save(Path(out_dir) / f"torch-join-{run}-rank{rank}.npz", model.module, losses)


def main():
    out_dir, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    powerSGD_hook.torch = _DistnnRandom()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if mode == "hooks":
        train_hooks(out_dir, int(rest[0]), rest[1:], rank)
    else:
        train_join(out_dir, rest, rank)
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
