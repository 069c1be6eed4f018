"""Train the tutorial's MNIST ConvNet (../shared/seeds) with distnn.

    python examples/mnist.py --data-dir ../shared/data/mnist-10k --epochs 3

Flags follow pytorch/examples' mnist. Without ``--data-dir`` the data comes
from ``$DISTNN_DATA`` or ``~/.cache/distnn/mnist`` (downloaded when missing
and online); when that fails it says so loudly and trains on the built-in
synthetic digits, so the command always runs. An explicit ``--data-dir``
without the files is an error, never a silent fallback.
"""

import argparse
import os
import sys
import time

import distnn as torch
import distnn.nn as nn
import distnn.nn.functional as F
from distnn.datasets import MNIST, DatasetNotFoundError, SyntheticDigits
from distnn.utils.data import DataLoader, TensorDataset


class MNISTConvNet(nn.Module):
    """The tutorial's net. Its ReLU on the logits is dropped: it clips every
    negative logit to zero, which stalls learning for those classes."""

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
    p = argparse.ArgumentParser(description="distnn MNIST ConvNet")
    p.add_argument("--batch-size", type=int, default=64, help="input batch size for training (default: 64)")
    p.add_argument("--test-batch-size", type=int, default=1000, help="batch size for testing (default: 1000)")
    p.add_argument("--epochs", type=int, default=3, help="number of epochs to train (default: 3)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default: 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    p.add_argument("--log-interval", type=int, default=50, help="batches between log lines (default: 50)")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST IDX .gz files")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to train on")
    p.add_argument("--dry-run", action="store_true", help="run a single batch per epoch, to check the pipeline")
    return p.parse_args(argv)


def load_data(data_dir):
    """(train, test) as TensorDatasets of normalised images and labels."""
    if data_dir is not None:
        train, test = MNIST(data_dir, train=True), MNIST(data_dir, train=False)
    else:
        root = os.environ.get("DISTNN_DATA", os.path.expanduser("~/.cache/distnn/mnist"))
        try:
            train = MNIST(root, train=True, download=True)
            test = MNIST(root, train=False, download=True)
        except DatasetNotFoundError as exc:
            print(f"WARNING: MNIST is not available ({exc}).\nWARNING: training on the built-in "
                  "synthetic digits instead; pass --data-dir to use real MNIST.", file=sys.stderr)
            train, test = SyntheticDigits(8000, seed=0, train=True), SyntheticDigits(2000, seed=0, train=False)
    return tuple(TensorDataset(*(torch.from_numpy(a) for a in ds.arrays())) for ds in (train, test))


def evaluate(model, loader, device):
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            total += y.numel()
    return loss_sum / total, correct / total


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    train_set, test_set = load_data(args.data_dir)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size)
    model = MNISTConvNet().to(args.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, seen = time.perf_counter(), 0
        for batch_idx, (x, y) in enumerate(train_loader):
            x, y = x.to(args.device), y.to(args.device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            seen += len(x)
            if batch_idx % args.log_interval == 0:
                print(f"Train Epoch: {epoch} [{seen}/{len(train_set)}]\tLoss: {loss.item():.6f}")
            if args.dry_run:
                break
        rate = seen / (time.perf_counter() - start)
        test_loss, acc = evaluate(model, test_loader, args.device)
        print(f"Epoch {epoch}: test loss {test_loss:.4f}, accuracy {100 * acc:.2f}%, {rate:.0f} samples/s")
    print(f"Test accuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    main()
