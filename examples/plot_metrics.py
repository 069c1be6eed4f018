"""Plot the per-epoch metrics that examples/mnist.py writes (JSONL) to a PNG.

    python examples/plot_metrics.py runs/mnist_metrics.jsonl -o runs/mnist_metrics.png

Needs matplotlib (``pip install -e ".[plot]"``).
"""

import argparse
import json
import sys


def read_metrics(path):
    """The records of the last run in the file (a new run restarts at its first epoch)."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if records and record["epoch"] <= records[-1]["epoch"]:
                records = []
            records.append(record)
    if not records:
        raise SystemExit(f"{path}: no metrics recorded yet")
    return records


def plot(records, output):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plotting needs matplotlib: pip install -e \".[plot]\"") from None
    epochs = [r["epoch"] for r in records]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    loss_ax.plot(epochs, [r["test_loss"] for r in records], marker="o", label="test")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * r["accuracy"] for r in records], marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Test accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs)
    world = records[-1].get("world_size", 1)
    fig.suptitle(f"MNIST ConvNet, {world} worker{'s' if world > 1 else ''}")
    fig.tight_layout()
    fig.savefig(output, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot examples/mnist.py metrics")
    parser.add_argument("metrics", help="JSONL file written by examples/mnist.py --metrics")
    parser.add_argument("-o", "--output", default=None, help="PNG path (default: next to the JSONL)")
    args = parser.parse_args(argv)
    output = args.output or args.metrics.rsplit(".", 1)[0] + ".png"
    plot(read_metrics(args.metrics), output)
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
