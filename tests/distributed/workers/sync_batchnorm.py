"""SyncBatchNorm worker.

    sync_batchnorm.py cases CASES_JSON
    sync_batchnorm.py ddp STEPS GLOBAL_BATCH [--plain]

``cases``: for each case (see tests/nn/test_sync_batchnorm.py) every rank draws the
same full batches, takes its own slice (per-rank counts may differ, or be 0), runs
SyncBatchNorm forward and backward for a few steps and once in eval mode, and prints one
JSON line with what it saw; rank 0 adds the full inputs, so the test can put the slices
back together and compare them with one process on the full batch. A case whose input
the layer refuses prints the error instead (every rank must refuse alike).

``ddp``: a small ConvNet with BatchNorm2d, converted by convert_sync_batchnorm and
wrapped in DistributedDataParallel, trained with SGD on an even split of each batch;
prints the final state_dict. ``--plain``: the same net unconverted, in one process
without a process group, on the whole batch (the reference).
"""

import json
import os
import sys
import traceback
from datetime import timedelta

import numpy as np

import distnn
import distnn.distributed as dist
import distnn.nn as nn


def emit(**fields):
    print(json.dumps(fields), flush=True)


def init():
    dist.init_process_group(timeout=timedelta(seconds=float(os.environ.get("DISTNN_TEST_TIMEOUT", 60))))
    return dist.get_rank(), dist.get_world_size()


def case_inputs(case):
    """The full batches (one per step, and one for eval), upstream gradients and affine
    parameters of a case, drawn from its seed."""
    rng = np.random.default_rng(case["seed"])
    shape = (sum(case["counts"]),) + tuple(case["features"])
    channels = case["features"][0]
    offset = rng.uniform(-3, 3, (1, channels) + (1,) * (len(shape) - 2))  # non-zero means per channel
    draw = lambda: (rng.standard_normal(shape) * 1.5 + offset).astype(case["dtype"])  # noqa: E731
    return {"x": [draw() for _ in range(case["steps"] + 1)],
            "dy": [rng.standard_normal(shape).astype(case["dtype"]) for _ in range(case["steps"])],
            "weight": rng.uniform(0.5, 1.5, channels).astype(case["dtype"]),
            "bias": rng.uniform(-1, 1, channels).astype(case["dtype"])}


def run_case(case, rank):
    """This rank's record: per step its output slice, input gradient, its own weight and
    bias gradients and the running statistics; then its eval-mode output."""
    counts, inputs = case["counts"], case_inputs(case)
    lo, hi = sum(counts[:rank]), sum(counts[:rank + 1])
    bn = nn.SyncBatchNorm(case["features"][0], momentum=case["momentum"], affine=case["affine"],
                          track_running_stats=case["track"], dtype=getattr(distnn, case["dtype"]),
                          bias=case["bias"])
    if bn.weight is not None:
        bn.weight.data.copy_(distnn.tensor(inputs["weight"]))
    if bn.bias is not None:
        bn.bias.data.copy_(distnn.tensor(inputs["bias"]))
    record = {"steps": []}
    for step in range(case["steps"]):
        x = distnn.tensor(inputs["x"][step][lo:hi], requires_grad=True)
        y = bn(x)
        (y * distnn.tensor(inputs["dy"][step][lo:hi])).sum().backward()
        record["steps"].append({
            "grad_fn": type(y.grad_fn).__name__,
            "out": y.detach().numpy().tolist(), "grad_input": x.grad.numpy().tolist(),
            **{name: None if t is None else t.numpy().tolist() for name, t in
               (("grad_weight", None if bn.weight is None else bn.weight.grad),
                ("grad_bias", None if bn.bias is None else bn.bias.grad),
                ("running_mean", bn.running_mean), ("running_var", bn.running_var))},
            "num_batches_tracked": None if bn.num_batches_tracked is None else int(bn.num_batches_tracked),
        })
        bn.zero_grad()
    bn.eval()
    record["eval_out"] = bn(distnn.tensor(inputs["x"][-1][lo:hi])).detach().numpy().tolist()
    if rank == 0:
        record["inputs"] = {k: [a.tolist() for a in v] if isinstance(v, list) else v.tolist()
                            for k, v in inputs.items()}
    return record


def conv_net():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def run_ddp(steps, global_batch, plain):
    rank, world = (0, 1) if plain else init()
    distnn.manual_seed(1234)
    model = conv_net()
    net = model
    if not plain:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = dist.DistributedDataParallel(model)
    opt = distnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(7)
    per_rank = global_batch // world
    for _ in range(steps):
        x = rng.standard_normal((global_batch, 3, 8, 8)).astype(np.float32) + 1
        target = rng.standard_normal((global_batch, 4)).astype(np.float32)
        lo, hi = rank * per_rank, (rank + 1) * per_rank
        opt.zero_grad()
        loss = ((net(distnn.tensor(x[lo:hi])) - distnn.tensor(target[lo:hi])) ** 2).mean()
        loss.backward()
        opt.step()
    emit(case="ddp", kinds=sorted({type(m).__name__ for m in model.modules()}),
         state={name: t.numpy().tolist() for name, t in model.state_dict().items()})


def main():
    if sys.argv[1] == "ddp":
        run_ddp(int(sys.argv[2]), int(sys.argv[3]), "--plain" in sys.argv)
        if "--plain" not in sys.argv:
            dist.destroy_process_group()
        return
    rank, _ = init()
    for case in json.loads(sys.argv[2]):
        try:
            emit(case=case["id"], **run_case(case, rank))
        except ValueError as exc:  # refused input: every rank must refuse it alike
            emit(case=case["id"], error=str(exc))
        except Exception:
            emit(case=case["id"], fail=traceback.format_exc())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
