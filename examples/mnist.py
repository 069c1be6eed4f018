"""Train the tutorial's MNIST ConvNet (../shared/seeds) with distnn, on one
process or data-parallel under the launcher:

    python examples/mnist.py --data-dir ../shared/data/mnist-10k
    python -m launcher --workers 4 examples/mnist.py --data-dir ../shared/data/mnist-10k

    srun --ntasks 4 python examples/mnist.py ...        # after exporting MASTER_ADDR/MASTER_PORT
    mpirun -np 4 -x MASTER_ADDR -x MASTER_PORT python examples/mnist.py ...

Flags follow pytorch/examples' mnist; ``--batch-size`` is per worker. When a
launcher, srun or mpirun started this process as one rank of several
(``dist.is_launched()``, the environment ``init_process_group()`` reads), the model
is wrapped in DistributedDataParallel and every rank trains on its
DistributedSampler shard. Data comes from ``--data-dir``, else
``$DISTNN_DATA`` or ``~/.cache/distnn/mnist`` (downloaded when missing and
online); if that fails it says so loudly and trains on built-in synthetic
digits, so the command always runs. An explicit ``--data-dir`` without the
files is an error, never a silent fallback.

Only rank 0 writes files: it logs per-epoch metrics to ``--metrics`` (JSONL) and, with
``--save-model``, writes a checkpoint atomically after every epoch (model,
optimizer, epoch, sampler, and the launcher's ``DISTNN_RUN_ID``). ``--resume
PATH`` continues from one, of any run, bit-identical to an uninterrupted run
with the same world size; a restart by the launcher (``--max-restarts``)
resumes from ``--checkpoint`` automatically, but only from one its own launch
wrote: another run's is ignored (and said so), never resumed by accident.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import distnn as torch
import distnn.distributed as dist
import distnn.nn as nn
import distnn.nn.functional as F
from distnn.datasets import MNIST, DatasetNotFoundError, SyntheticDigits
from distnn.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset


class MNISTConvNet(nn.Module):
    """The tutorial's net. Its ReLU on the logits is dropped: clipping every
    negative logit to zero stalls learning for those classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, input):
        x = self.pool1(F.relu(self.conv1(input)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="distnn MNIST ConvNet (single process or data-parallel)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size per worker (default: 64)")
    p.add_argument("--test-batch-size", type=int, default=1000, help="batch size for testing (default: 1000)")
    p.add_argument("--epochs", type=int, default=3, help="number of epochs to train (default: 3)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default: 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--log-interval", type=int, default=50, help="batches between log lines (default: 50)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST IDX .gz files")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to train on")
    p.add_argument("--save-model", action="store_true", help="write a checkpoint after every epoch")
    p.add_argument("--checkpoint", default="checkpoints/mnist_cnn.dt", help="checkpoint path for --save-model")
    p.add_argument("--resume", default=None, metavar="PATH", help="continue from this checkpoint")
    p.add_argument("--metrics", default="runs/mnist_metrics.jsonl", help="JSONL file of per-epoch metrics")
    p.add_argument("--dry-run", action="store_true", help="one batch per epoch, to check the pipeline")
    # a test hook: a crash before this launch has saved anything, to check what its restart resumes from
    p.add_argument("--crash-first-attempt", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load_data(data_dir, rank, local_rank, world):
    """(train, test) as TensorDatasets of normalised images and labels. In a job, the
    first rank of each host downloads while the others wait, so no two processes
    write the same files."""
    if world > 1 and local_rank != 0:
        dist.barrier()
    try:
        return _load_data(data_dir, rank)
    finally:
        if world > 1 and local_rank == 0:
            dist.barrier()


def _load_data(data_dir, rank):
    if data_dir is not None:
        train, test = MNIST(data_dir, train=True), MNIST(data_dir, train=False)
    else:
        root = os.environ.get("DISTNN_DATA", os.path.expanduser("~/.cache/distnn/mnist"))
        try:
            train = MNIST(root, train=True, download=True)
            test = MNIST(root, train=False, download=True)
        except DatasetNotFoundError as exc:
            if rank == 0:
                print(f"WARNING: MNIST is not available ({exc}).\nWARNING: training on the built-in "
                      "synthetic digits instead; pass --data-dir to use real MNIST.", file=sys.stderr)
            train, test = SyntheticDigits(8000, seed=0, train=True), SyntheticDigits(2000, seed=0, train=False)
    return tuple(TensorDataset(*(torch.from_numpy(a) for a in ds.arrays())) for ds in (train, test))


def evaluate(model, test_set, rank, world, device, batch_size):
    """(mean loss, accuracy) over the whole test set, each rank scoring its own shard."""
    shard = Subset(test_set, range(rank, len(test_set), world))
    totals = np.zeros(3, np.float64)  # loss sum, correct, count
    model.eval()
    with torch.no_grad():
        for x, y in DataLoader(shard, batch_size=batch_size):
            x, y = x.to(device), y.to(device)
            out = model(x)
            totals += (F.cross_entropy(out, y, reduction="sum").item(), (out.argmax(1) == y).sum().item(), len(y))
    if world > 1:
        dist.all_reduce(totals)
    return totals[0] / totals[2], totals[1] / totals[2]


def progress(iterable, enabled, total, desc):
    """tqdm on an interactive rank 0 when it is installed; otherwise plain iteration."""
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm
            return tqdm(iterable, total=total, desc=desc, leave=False)
        except ImportError:
            pass
    return iterable


def save_checkpoint(path, model, optimizer, sampler, epoch, world, run_id):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "sampler": sampler.state_dict(), "world_size": world, "run_id": run_id}, path)


def resume_point(args, run_id, rank):
    """(path, checkpoint) to continue from, or (None, None) to start from scratch.

    This launch's own last checkpoint wins (a restart carries on where it
    stopped); else ``--resume``. The run id tells the launch's own file from a
    stale one: it is the same for every attempt of one ``python -m launcher``
    and new for each, and a run outside the launcher has none, so it never
    resumes by itself."""
    if args.save_model and run_id is not None and os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint)
        if state.get("run_id") == run_id:
            return args.checkpoint, state
        if rank == 0 and args.resume is None:
            print(f"Ignoring checkpoint {args.checkpoint}: it was written by another run (run id "
                  f"{state.get('run_id') or 'none'}, this run is {run_id}); training from scratch and "
                  f"overwriting it (--resume {args.checkpoint} would continue from it)", flush=True)
    if args.resume is not None:
        return args.resume, torch.load(args.resume)
    return None, None


def main(argv=None):
    args = parse_args(argv)
    rank, world = 0, 1
    if dist.is_launched():  # python -m launcher, srun, mpirun: the variables init_process_group reads
        dist.init_process_group()
        rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = dist.get_node_local_rank(fallback_rank=0) if world > 1 else 0
    if args.device == "cuda":  # one GPU per worker on this host, as with torchrun
        torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
    torch.manual_seed(args.seed)
    train_set, test_set = load_data(args.data_dir, rank, local_rank, world)
    model = MNISTConvNet().to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    start_epoch = 1
    run_id = os.environ.get("DISTNN_RUN_ID")
    resume, state = resume_point(args, run_id, rank)
    if resume is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        start_epoch = state["epoch"] + 1
        if rank == 0:
            print(f"Resumed from {resume} after epoch {state['epoch']}")
    if args.crash_first_attempt and rank == 0 and os.environ.get("DISTNN_RESTART_COUNT", "0") == "0":
        raise RuntimeError("--crash-first-attempt: rank 0 fails before its first epoch")
    net = dist.DistributedDataParallel(model) if world > 1 else model
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    loss_fn = nn.CrossEntropyLoss()
    accuracy = None
    for epoch in range(start_epoch, args.epochs + 1):
        sampler.set_epoch(epoch)
        net.train()
        start, seen, loss_sum = time.perf_counter(), 0, 0.0
        comm_before = net.comm_wait_seconds if world > 1 else 0.0
        for batch_idx, (x, y) in enumerate(progress(loader, rank == 0, len(loader), f"epoch {epoch}")):
            x, y = x.to(args.device), y.to(args.device)
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            seen += len(x) * world
            loss_sum += loss.item()
            if rank == 0 and batch_idx % args.log_interval == 0:
                print(f"Train Epoch: {epoch} [{seen}/{len(train_set)}]\tLoss: {loss.item():.6f}", flush=True)
            if args.dry_run:
                break
        elapsed = time.perf_counter() - start
        test_loss, accuracy = evaluate(model, test_set, rank, world, args.device, args.test_batch_size)
        if rank == 0:
            record = {"epoch": epoch, "train_loss": loss_sum / (batch_idx + 1), "test_loss": test_loss,
                      "accuracy": accuracy, "samples_per_s": seen / elapsed, "epoch_seconds": elapsed,
                      "comm_wait_seconds": (net.comm_wait_seconds - comm_before) if world > 1 else 0.0,
                      "world_size": world}
            print(f"Epoch {epoch}: test loss {test_loss:.4f}, accuracy {100 * accuracy:.2f}%, "
                  f"{record['samples_per_s']:.0f} samples/s, {record['comm_wait_seconds']:.2f}s waiting "
                  f"on communication", flush=True)
            if args.metrics:
                os.makedirs(os.path.dirname(os.path.abspath(args.metrics)), exist_ok=True)
                with open(args.metrics, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if args.save_model:
                save_checkpoint(args.checkpoint, model, optimizer, sampler, epoch, world, run_id)
        if world > 1:
            dist.barrier()  # nobody races ahead of rank 0's checkpoint
    if accuracy is None:
        accuracy = evaluate(model, test_set, rank, world, args.device, args.test_batch_size)[1]
    if rank == 0:
        print(f"Test accuracy: {100 * accuracy:.2f}%")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
