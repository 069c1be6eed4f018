"""The accuracy cost of DDP gradient compression on mnist-10k: every communication
hook trains the same MLP from the same weights on the same data order.

    python bench/comm_hooks.py [--world 2] [--epochs 3] [--data-dir ../shared/data/mnist-10k]

The 784-1024-1024-10 MLP (``models.mlp``) trains with DistributedDataParallel on
``--world`` ranks, SGD with momentum, ``--batch`` images per rank, each rank on its
DistributedSampler shard of the 8,000 training images; accuracy is measured on the
2,000 held-out images (mnist-10k's t10k files: images 8000..9999 of the official
test set). One run per variant: no hook, ``fp16_compress_hook``,
``bf16_compress_hook``, and ``powerSGD_hook`` at rank 1 and 4 (10 uncompressed steps
first). The ranks are threads of this process (``inprocess.run_threads``) talking
through real collectives over queues: the measure is accuracy, not speed (bench/ddp.py
and bench/multihost.py time DDP). One seed: on 2,000 test images one image is 0.05
points and the standard error of an accuracy near 95% about 0.5 points.

"sent/step" is the gradient payload each rank hands to its all-reduces per step,
counted from DDP's bucket layout: 4 bytes per float32 element, 2 per float16 or
bfloat16, and for PowerSGD the elements of P and Q of every compressed matrix plus the
uncompressed tensors (biases) in float32, at steady state (after its plain first
steps; checked against the hook's own compression statistics). A ring all-reduce
puts 2(n-1)/n times the payload on each rank's link; the ratio is the same.
"""

import argparse
import functools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIZES = [784, 1024, 1024, 10]
VARIANTS = ["no hook", "fp16_compress_hook", "bf16_compress_hook", "powerSGD rank 1", "powerSGD rank 4"]
POWERSGD_START = 10


def make_hook(variant):
    """(state, hook) to register for ``variant``, or None for DDP's own all-reduce."""
    from distnn.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    if variant == "no hook":
        return None
    if variant == "fp16_compress_hook":
        return None, default_hooks.fp16_compress_hook
    if variant == "bf16_compress_hook":
        return None, default_hooks.bf16_compress_hook
    rank = int(variant.rsplit(" ", 1)[1])
    state = powerSGD_hook.PowerSGDState(None, matrix_approximation_rank=rank, start_powerSGD_iter=POWERSGD_START)
    return state, powerSGD_hook.powerSGD_hook


def payload_elements(variant, buckets):
    """(elements, bytes) each rank all-reduces per step under ``variant``."""
    from distnn.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import _should_compress
    shapes = [tuple(p.shape) for b in buckets for p in b.parameters()]
    total = sum(_numel(s) for s in shapes)
    if variant == "no hook":
        return total, 4 * total
    if variant in ("fp16_compress_hook", "bf16_compress_hook"):
        return total, 2 * total
    rank, elements = int(variant.rsplit(" ", 1)[1]), 0
    for shape in shapes:
        n = shape[0] if shape else 1
        m = _numel(shape) // n
        worth, before, after = _should_compress(n, m, min(n, m, rank), 2)  # 2: PowerSGDState's default rate
        elements += after if worth else before
    return elements, 4 * elements


def _numel(shape):
    count = 1
    for d in shape:
        count *= d
    return count


def train_rank(rank, variant, args, init_state, train_set, test_set):
    """Train one rank of one variant; its last-epoch loss sums, test counts, payload."""
    import numpy as np

    import distnn
    import distnn.distributed as dist
    import models
    from distnn.distributed.reducer import parameter_fingerprint
    from distnn.utils.data import DataLoader, DistributedSampler

    world = dist.get_world_size()
    model = models.mlp(distnn, SIZES)
    model.load_state_dict(init_state)
    net = dist.DistributedDataParallel(model)
    hook = make_hook(variant)
    if hook is not None:
        net.register_comm_hook(*hook)
    opt = distnn.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch, sampler=sampler)
    loss_fn = distnn.nn.CrossEntropyLoss()
    steps = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        totals = np.zeros(2, np.float64)  # loss sum, samples: of the last epoch once the loop ends
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(net(x.view(x.size(0), -1)), y)
            loss.backward()
            opt.step()
            totals += (loss.item() * len(y), len(y))
            steps += 1
    dist.all_reduce(totals)
    correct = 0
    with distnn.no_grad():
        for x, y in DataLoader(test_set, batch_size=1000):
            correct += (model(x.view(x.size(0), -1)).argmax(1) == y).sum().item()
    elements, nbytes = payload_elements(variant, net.reducer.buckets)
    if hook is not None and hook[0] is not None:  # PowerSGD: its own count of what it sent
        compressed_steps = steps - POWERSGD_START
        measured = hook[0].total_numel_after_compression
        if measured != elements * compressed_steps:
            raise RuntimeError(f"Expect: PowerSGD to send {elements} elements per step x {compressed_steps} "
                               f"steps, Actual: {measured} (rank {rank})")
    return {"loss": totals[0] / totals[1], "correct": correct, "steps": steps, "bytes": nbytes,
            "float32_bytes": payload_elements("no hook", net.reducer.buckets)[1],
            "fingerprint": parameter_fingerprint(model.parameters())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="images per rank per step")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "mnist-10k"))
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="run only these (repeatable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, HERE)
    import harness
    harness.set_threads(1)

    sys.path.insert(0, REPO)
    import distnn
    import models
    from distnn.datasets import MNIST
    from distnn.distributed.inprocess import run_threads
    from distnn.utils.data import TensorDataset

    train_set, test_set = (TensorDataset(*(distnn.from_numpy(a) for a in MNIST(args.data_dir, train=t).arrays()))
                           for t in (True, False))
    distnn.manual_seed(args.seed)
    init_state = {k: v.clone() for k, v in models.mlp(distnn, SIZES).state_dict().items()}

    rows = []
    start = time.perf_counter()
    for variant in args.variant or VARIANTS:
        # A generous timeout: it bounds the whole run as well as each collective.
        results = run_threads(args.world, functools.partial(train_rank, variant=variant, args=args,
                                                            init_state=init_state, train_set=train_set,
                                                            test_set=test_set), timeout=3600.0)
        differ = [r for r, res in enumerate(results) if res["fingerprint"] != results[0]["fingerprint"]]
        if differ:
            raise RuntimeError(f"Expect: identical replicas after training with {variant}, Actual: ranks {differ} "
                               f"differ from rank 0")
        rows.append((variant, results[0]))

    baseline_acc = rows[0][1]["correct"] / len(test_set) if rows[0][0] == "no hook" else None
    print(f"MLP {'-'.join(map(str, SIZES))} on mnist-10k, DDP on {args.world} in-process ranks, {args.epochs} "
          f"epochs ({rows[0][1]['steps']} steps), SGD lr {args.lr} momentum {args.momentum}, batch {args.batch} "
          f"per rank; train: {len(train_set):,} images, test: the held-out {len(test_set):,}")
    print()
    print("| variant | train loss (last epoch) | test accuracy | vs no hook | sent/step per rank | compression |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant, r in rows:
        acc = r["correct"] / len(test_set)
        diff = f"{100 * (acc - baseline_acc):+.2f} pt" if baseline_acc is not None else "-"
        ratio = f"{r['float32_bytes'] / r['bytes']:.1f}x"
        print(f"| {variant} | {r['loss']:.4f} | {100 * acc:.2f}% | {diff} | {_human(r['bytes'])} | {ratio} |")
    print()
    print(f"{len(rows)} runs in {time.perf_counter() - start:.0f} s")


def _human(nbytes):
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes} B"


if __name__ == "__main__":
    main()
