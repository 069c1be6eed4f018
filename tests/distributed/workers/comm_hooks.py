"""DDP communication-hook worker: trains ddp_spec's MLP with each named hook (a fresh
model from the same weights per hook) and saves, per hook and rank, an .npz of the
final parameters, the loss of every step, and (for the compressing hooks) each step's
bucket as it went into the hook (this rank's undivided gradients) and as it came out.

    comm_hooks.py OUT_DIR STEPS HOOK [HOOK ...]     (HOOK: one of ddp_spec.HOOKS)
"""

import sys
from pathlib import Path

import numpy as np

import distnn
import distnn.distributed as dist
import distnn.nn as nn
from distnn.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from ddp_spec import HOOK_SIZES, LR, POWERSGD, linear_weights, save, sgd_step


def build_model():
    layers = []
    for i, (w, b) in enumerate(linear_weights(HOOK_SIZES)):
        linear = nn.Linear(w.shape[1], w.shape[0])
        linear.weight.data = distnn.from_numpy(w.copy())
        linear.bias.data = distnn.from_numpy(b.copy())
        layers += [linear, nn.ReLU()] if i < len(HOOK_SIZES) - 2 else [linear]
    return nn.Sequential(*layers)


def recording(hook, records):
    """``hook``, keeping a copy of each bucket before and after it."""
    def recorded_hook(state, bucket):
        records["into"].append(bucket.buffer().numpy().copy())

        def keep(fut):
            records["out"].append(fut.value().numpy().copy())
            return fut.value()
        return hook(state, bucket).then(keep)
    return recorded_hook


def register(model, name, records):
    if name == "allreduce":
        model.register_comm_hook(None, default_hooks.allreduce_hook)
    elif name in ("fp16", "bf16"):
        hook = default_hooks.fp16_compress_hook if name == "fp16" else default_hooks.bf16_compress_hook
        model.register_comm_hook(None, recording(hook, records))
    elif name in POWERSGD:
        model.register_comm_hook(powerSGD_hook.PowerSGDState(None, **POWERSGD[name]), powerSGD_hook.powerSGD_hook)
    elif name != "none":
        raise SystemExit(f"Expect: a hook among none, allreduce, fp16, bf16, {sorted(POWERSGD)}, Actual: {name!r}")


def train(name, steps, rank, out_dir):
    model = dist.DistributedDataParallel(build_model())
    records = {"into": [], "out": []}
    register(model, name, records)
    if len(model.reducer.buckets) != 1:
        raise SystemExit(f"Expect: one gradient bucket, Actual: {len(model.reducer.buckets)}")
    opt = distnn.optim.SGD(model.parameters(), lr=LR)
    losses = [sgd_step(distnn, model, opt, rank, step, HOOK_SIZES) for step in range(steps)]
    save(Path(out_dir) / f"{name}-rank{rank}.npz", model.module, losses,
         **{k: np.array(v) for k, v in records.items() if v})


def main():
    out_dir, steps, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    dist.init_process_group()
    for name in names:
        train(name, steps, dist.get_rank(), out_dir)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
