"""DDP exactness worker: trains the seed ConvNet for a few SGD-momentum steps on a
fixed global batch, this rank taking its slice, and saves the final parameters.

    ddp_train.py OUT_PATH STEPS GLOBAL_BATCH [--no-sync] [--unused] [--buckets] [--plain] [--cuda]
    ddp_train.py OUT_PATH STEPS GLOBAL_BATCH --batchnorm

``--plain`` trains without DDP on the whole batch (the single-process reference);
``--no-sync`` splits each step into two micro-batches, the first under no_sync();
``--unused`` adds a parameter that never gets a gradient; ``--buckets`` makes
buckets of ~4 KiB, so several are reduced asynchronously while backward runs
(the model's 87 KB otherwise fit the first, 1 MiB, bucket). ``--batchnorm`` adds a
BatchNorm2d, whose running statistics each rank updates from its own slice, and
checks that every forward starts from rank 0's: after an eval forward (which
updates nothing) every rank holds rank 0's buffers, which it did not before.
``--cuda`` trains on the GPU (parameters, gradients and buckets in CuPy arrays).
"""

import sys

import numpy as np

import distnn
import distnn.distributed as dist
import distnn.nn as nn
import distnn.nn.functional as F


class Net(nn.Module):
    def __init__(self, unused, batchnorm=False):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.bn = nn.BatchNorm2d(10) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)
        if unused:
            self.spare = nn.Linear(7, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


def main():
    out_path, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    flags = set(sys.argv[4:])
    plain = "--plain" in flags
    rank, world = 0, 1
    if not plain:
        dist.init_process_group()
        rank, world = dist.get_rank(), dist.get_world_size()
    distnn.manual_seed(1234 + rank)  # different init per rank: DDP must broadcast rank 0's
    model = Net("--unused" in flags, "--batchnorm" in flags)
    if plain:
        distnn.manual_seed(1234)
        model = Net("--unused" in flags)
    if "--buckets" in flags:
        from distnn.distributed import reducer
        reducer.FIRST_BUCKET_BYTES = 4096
    device = "cuda" if "--cuda" in flags else "cpu"
    model.to(device)
    net = model if plain else dist.DistributedDataParallel(model, bucket_cap_mb=4096 / 2**20)
    if not plain and "--buckets" in flags and len(net.reducer.buckets) < 4:
        raise SystemExit(f"Expect: several buckets, Actual: {len(net.reducer.buckets)}")
    opt = distnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for step in range(steps):
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        lo, hi = rank * batch // world, (rank + 1) * batch // world
        xs, ys = distnn.from_numpy(x[lo:hi]).to(device), distnn.from_numpy(y[lo:hi]).to(device)
        opt.zero_grad()
        if "--no-sync" in flags:
            half = (hi - lo) // 2
            parts = [(xs[:half], ys[:half]), (xs[half:], ys[half:])]
            with (net.no_sync() if not plain else _nothing()):
                (F.cross_entropy(net(parts[0][0]), parts[0][1], reduction="sum") / (hi - lo)).backward()
            (F.cross_entropy(net(parts[1][0]), parts[1][1], reduction="sum") / (hi - lo)).backward()
        else:
            F.cross_entropy(net(xs), ys).backward()
        opt.step()
    if "--batchnorm" in flags:
        _check_buffers_follow_rank0(net, model, xs, world)
    if rank == 0:
        distnn.save({k: v.cpu() for k, v in model.state_dict().items()}, out_path)
    if not plain:
        dist.destroy_process_group()


def _gather_buffers(model, world):
    mine = np.concatenate([b.numpy().ravel().astype(np.float64) for b in model.buffers()])
    everyone = np.zeros((world, mine.size))
    dist.all_gather_into_tensor(everyone, mine[None])
    return everyone


def _check_buffers_follow_rank0(net, model, xs, world):
    before = _gather_buffers(model, world)
    if all(np.array_equal(before[r], before[0]) for r in range(world)):
        raise SystemExit("Expect: running statistics that differ between ranks after training, Actual: equal")
    net.eval()
    with distnn.no_grad():
        net(xs)
    after = _gather_buffers(model, world)
    if not all(np.array_equal(after[r], before[0]) for r in range(world)):
        raise SystemExit("Expect: every rank holds rank 0's buffers after a forward, Actual: they differ")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
