"""ZeroRedundancyOptimizer worker: every rank trains the same MLP on the same batch (the
gradients DistributedDataParallel would give it) with a ZeroRedundancyOptimizer, and,
beside it, an unsharded copy with the plain optimizer (the reference). Prints one JSON
line per (scenario, optimizer) case: ``max_diff`` between the two models' parameters
(the same arithmetic on the same bits: it must be 0), a ``hash`` of the parameters
(equal on every rank), and what the scenario measured.

    zero_redundancy.py SCENARIOS_JSON OPTIMIZERS_JSON
"""

import hashlib
import json
import os
import sys
import traceback
from datetime import timedelta

import numpy as np

import distnn
import distnn.distributed as dist
import distnn.nn as nn
from distnn.distributed.optim import ZeroRedundancyOptimizer

OPTIMIZERS = {"sgd_momentum": ("SGD", {"lr": 0.05, "momentum": 0.9}),
              "sgd_nesterov_decay": ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                             "weight_decay": 1e-2}),
              "adam": ("Adam", {"lr": 1e-2}),
              "adamw": ("AdamW", {"lr": 1e-2, "weight_decay": 0.1})}


def emit(**fields):
    print(json.dumps(fields), flush=True)


def make_model():
    """Twelve equal hidden layers (so 2, 3 and 4 ranks can share them evenly) and a head."""
    distnn.manual_seed(0)
    layers = []
    for _ in range(12):
        layers += [nn.Linear(32, 32), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(32, 8))


BATCH = np.random.default_rng(5).standard_normal((16, 32)).astype(np.float32)
TARGET = np.random.default_rng(6).standard_normal((16, 8)).astype(np.float32)


def loss_of(model, step):
    x = distnn.tensor(BATCH * np.float32(1 + 0.1 * step))
    return ((model(x) - distnn.tensor(TARGET)) ** 2).mean()


def backward(model, step):
    model.zero_grad()
    loss = loss_of(model, step)
    loss.backward()
    return loss


def max_diff(a, b):
    """Largest difference between two models' (or parameter lists') parameters."""
    a, b = (list(m.parameters()) if isinstance(m, nn.Module) else m for m in (a, b))
    return max(float(np.abs(p.detach().numpy() - q.detach().numpy()).max()) for p, q in zip(a, b))


def digest(model):
    h = hashlib.sha256()
    for p in (model.parameters() if isinstance(model, nn.Module) else model):
        h.update(np.ascontiguousarray(p.detach().numpy()).tobytes())
    return h.hexdigest()[:16]


def state_bytes(optimizer):
    """Bytes of the arrays an optimizer's state holds."""
    return sum(v._data.nbytes for state in optimizer.state.values() for v in state.values()
               if isinstance(v, distnn.Tensor))


def pair(opt_name, group=None, **zero_kwargs):
    """The ZeRO-trained model and optimizer, the reference model and optimizer."""
    cls_name, kwargs = OPTIMIZERS[opt_name]
    cls = getattr(distnn.optim, cls_name)
    model, ref = make_model(), make_model()
    zero = ZeroRedundancyOptimizer(model.parameters(), cls, process_group=group, **zero_kwargs, **kwargs)
    return model, zero, ref, cls(ref.parameters(), **kwargs)


def train(model, zero, ref, ref_opt, steps, start=0):
    for step in range(start, start + steps):
        backward(model, step)
        backward(ref, step)
        zero.step()
        ref_opt.step()
        if step == 1:  # an LR schedule changes the exposed groups; the shards must follow
            for opt in (zero, ref_opt):
                opt.param_groups[0]["lr"] *= 0.5


def scenario_train(opt_name, rank, world, bucket_view=False):
    model, zero, ref, ref_opt = pair(opt_name, parameters_as_bucket_view=bucket_view)
    train(model, zero, ref, ref_opt, 5)
    owned = [i for i, p in enumerate(model.parameters()) if id(p) in {id(q) for g in zero.optim.param_groups
                                                                        for q in g["params"]}]
    everyone = [None] * world
    dist.all_gather_object(everyone, owned)
    views = sum(p._data.base is not None for p in model.parameters())
    return {"max_diff": max_diff(model, ref), "hash": digest(model), "owned_by_rank": everyone,
            "n_params": len(list(model.parameters())), "state_bytes": state_bytes(zero.optim),
            "unsharded_bytes": state_bytes(ref_opt), "outer_state_bytes": state_bytes(zero),
            "bucket_views": views, "lr": zero.param_groups[0]["lr"], "local_lr": zero.optim.param_groups[0]["lr"]}


def scenario_bucket_view(opt_name, rank, world):
    return scenario_train(opt_name, rank, world, bucket_view=True)


def _same_state(a, b):
    """Differences between two state dicts (state tensors bit for bit, options equal)."""
    problems = []
    if sorted(a["state"]) != sorted(b["state"]):
        problems.append(f"state keys {sorted(a['state'])} != {sorted(b['state'])}")
    for k in a["state"]:
        for name, v in a["state"][k].items():
            w = b["state"].get(k, {}).get(name)
            if w is None or not np.array_equal(v.numpy(), w.numpy()) or v.numpy().dtype != w.numpy().dtype:
                problems.append(f"state[{k}][{name}] differs")
    if a["param_groups"] != b["param_groups"]:
        problems.append(f"param_groups {a['param_groups']} != {b['param_groups']}")
    return problems


def scenario_checkpoint(opt_name, rank, world):
    model, zero, ref, ref_opt = pair(opt_name)
    train(model, zero, ref, ref_opt, 3)
    to = world - 1
    zero.consolidate_state_dict(to=to)
    problems, refused = [], None
    if rank == to:
        full = zero.state_dict()
        problems += _same_state(full, ref_opt.state_dict())
        # the consolidated dict drives an unsharded optimizer as the reference's own would
        plain_model = make_model()
        for p, q in zip(plain_model.parameters(), model.parameters()):
            p.data.copy_(q.detach())
        plain = getattr(distnn.optim, OPTIMIZERS[opt_name][0])(plain_model.parameters(), lr=1.0)
        plain.load_state_dict(full)
    else:
        try:
            zero.state_dict()
        except RuntimeError as exc:
            refused = str(exc)
    # every rank loads the reference's full state dict into a fresh ZeRO optimizer
    resumed = make_model()
    for p, q in zip(resumed.parameters(), ref.parameters()):
        p.data.copy_(q.detach())
    fresh = ZeroRedundancyOptimizer(resumed.parameters(), getattr(distnn.optim, OPTIMIZERS[opt_name][0]), lr=1.0)
    fresh.load_state_dict(ref_opt.state_dict())
    loaded_state_bytes = state_bytes(fresh.optim)
    for step in range(3, 6):
        backward(resumed, step)
        backward(ref, step)
        fresh.step()
        ref_opt.step()
        if rank == to:
            backward(plain_model, step)
            plain.step()
    record = {"max_diff": max_diff(resumed, ref), "hash": digest(resumed), "problems": problems,
              "refused": refused, "loaded_state_bytes": loaded_state_bytes, "to": to}
    if rank == to:
        record["plain_max_diff"] = max_diff(plain_model, ref)
    # and a consolidation after loading gives back what was loaded, stepped on
    fresh.consolidate_state_dict(to=0)
    if rank == 0:
        record["problems"] += [f"after resuming: {p}" for p in _same_state(fresh.state_dict(), ref_opt.state_dict())]
    return record


def scenario_add_param_group(opt_name, rank, world):
    cls_name, kwargs = OPTIMIZERS[opt_name]
    cls = getattr(distnn.optim, cls_name)
    model, ref = make_model(), make_model()
    head = lambda m: list(m.parameters())[:10]  # noqa: E731
    tail = lambda m: list(m.parameters())[10:]  # noqa: E731
    zero = ZeroRedundancyOptimizer(head(model), cls, **kwargs)
    ref_opt = cls(head(ref), **kwargs)
    owners_before = zero._param_to_rank
    train(model, zero, ref, ref_opt, 2)
    zero.add_param_group({"params": tail(model), "lr": kwargs["lr"] * 0.3})
    ref_opt.add_param_group({"params": tail(ref), "lr": kwargs["lr"] * 0.3})
    owners_after = zero._param_to_rank
    kept = all(owners_after[k] == v for k, v in owners_before.items())
    train(model, zero, ref, ref_opt, 3, start=2)
    return {"max_diff": max_diff(model, ref), "hash": digest(model), "owners_kept": kept,
            "groups": [len(zero.param_groups), len(zero.optim.param_groups)],
            "local_lrs": [g["lr"] for g in zero.optim.param_groups]}


def scenario_closure(opt_name, rank, world):
    model, zero, ref, ref_opt = pair(opt_name)
    losses = []
    for step in range(4):
        ours = zero.step(lambda: backward(model, step))
        theirs = ref_opt.step(lambda: backward(ref, step))
        losses.append([float(ours), float(theirs)])
    return {"max_diff": max_diff(model, ref), "hash": digest(model), "losses": losses}


def scenario_zero_grad(opt_name, rank, world):
    model, zero, ref, ref_opt = pair(opt_name)
    backward(model, 0)
    zero.zero_grad(set_to_none=False)
    zeros = all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    zero.zero_grad()
    nones = all(p.grad is None for p in model.parameters())
    return {"max_diff": max_diff(model, ref), "hash": digest(model), "zeros": zeros, "nones": nones}


def scenario_tiny_mixed(opt_name, rank, world):
    """Two parameters of two dtypes: some ranks own none, and each dtype has its own flat
    broadcast (or bucket)."""
    cls_name, kwargs = OPTIMIZERS[opt_name]
    cls = getattr(distnn.optim, cls_name)

    def params():
        return [distnn.tensor(np.linspace(-1, 1, 5, dtype=np.float32), requires_grad=True),
                distnn.tensor(np.linspace(0, 2, 6, dtype=np.float64).reshape(3, 2), requires_grad=True)]
    ref = params()
    runs = [(ref, cls(ref, **kwargs))]
    for bucket_view in (False, True):
        ps = params()
        runs.append((ps, ZeroRedundancyOptimizer(ps, cls, parameters_as_bucket_view=bucket_view, **kwargs)))
    for step in range(4):
        for ps, opt in runs:
            for p in ps:
                value = p.detach().numpy()
                p.grad = distnn.tensor(value * (step + 1) - value.dtype.type(0.5))
            opt.step()
    zero = runs[1][1]
    zero.consolidate_state_dict(to=0)
    problems = _same_state(zero.state_dict(), runs[0][1].state_dict()) if rank == 0 else []
    return {"max_diff": max(max_diff(ps, ref) for ps, _ in runs[1:]), "hash": digest(runs[1][0]),
            "problems": problems, "dtypes": [str(p.dtype) for p in runs[2][0]],
            "owned": sum(len(g["params"]) for g in zero.optim.param_groups)}


def scenario_subgroup(opt_name, rank, world):
    """ZeRO over ranks 1.. only (group rank 0 is global rank 1); rank 0 trains the reference alone."""
    members = list(range(1, world)) if world > 2 else list(range(world))
    group = dist.new_group(members)
    if rank not in members:
        model, ref = make_model(), make_model()
        cls_name, kwargs = OPTIMIZERS[opt_name]
        opt = getattr(distnn.optim, cls_name)(model.parameters(), **kwargs)
        ref_opt = getattr(distnn.optim, cls_name)(ref.parameters(), **kwargs)
        train(model, opt, ref, ref_opt, 4)
        return {"max_diff": max_diff(model, ref), "hash": digest(model), "member": False}
    model, zero, ref, ref_opt = pair(opt_name, group=group)
    train(model, zero, ref, ref_opt, 4)
    return {"max_diff": max_diff(model, ref), "hash": digest(model), "member": True,
            "group": [zero.world_size, zero.rank, zero.global_rank]}


def main():
    scenarios, optimizers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    dist.init_process_group(timeout=timedelta(seconds=float(os.environ.get("DISTNN_TEST_TIMEOUT", 60))))
    rank, world = dist.get_rank(), dist.get_world_size()
    for scenario in scenarios:
        for opt_name in optimizers:
            name = f"{scenario}-{opt_name}"
            try:
                emit(case=name, **globals()[f"scenario_{scenario}"](opt_name, rank, world))
            except Exception:
                emit(case=name, fail=traceback.format_exc())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
