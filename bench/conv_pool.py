"""Forward + backward time of the MNIST ConvNet's conv and pooling layers, distnn
beside PyTorch (when importable).

    python bench/conv_pool.py [--batch 64] [--repeat 50] [--threads 1]

Each row runs one layer forward and backward (``out.sum().backward()``, so the
upstream gradient comes from an op, as inside a network) on the layer shapes of
the tutorial ConvNet; the table shows median milliseconds.
"""

import argparse
import os
import statistics
import sys
import time


def build_cases(lib, batch):
    """(name, step) per layer, written once against the shared torch-style API."""
    F = lib.nn.functional
    lib.manual_seed(0)

    def layer(fn, x_shape, x_grad, params):
        x = lib.randn(*x_shape, requires_grad=x_grad)
        ps = [lib.randn(*s, requires_grad=True) for s in params]

        def step():
            fn(x, *ps).sum().backward()
        return step

    return [
        ("conv1 1->10 k5 28x28", layer(lambda x, w, b: F.conv2d(x, w, b), (batch, 1, 28, 28), False,
                                       [(10, 1, 5, 5), (10,)])),
        ("max_pool2d 2 (10x24x24)", layer(lambda x: F.max_pool2d(x, 2), (batch, 10, 24, 24), True, [])),
        ("conv2 10->20 k5 12x12", layer(lambda x, w, b: F.conv2d(x, w, b), (batch, 10, 12, 12), True,
                                        [(20, 10, 5, 5), (20,)])),
        ("max_pool2d 2 (20x8x8)", layer(lambda x: F.max_pool2d(x, 2), (batch, 20, 8, 8), True, [])),
    ]


def time_ms(step, repeat):
    for _ in range(3):  # warm up caches and scratch buffers
        step()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    harness.set_threads(args.threads)

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import distnn
    import distnn.nn.functional  # noqa: F401  (loads distnn.nn)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    ours = build_cases(distnn, args.batch)
    theirs = build_cases(torch, args.batch) if torch is not None else [(name, None) for name, _ in ours]
    print(f"conv/pool forward+backward, batch {args.batch}, {args.threads} thread(s), median ms "
          f"of {args.repeat}")
    print(f"{'layer':<26}{'distnn':>10}{'torch':>10}{'ratio':>8}")
    total_ours = total_theirs = 0.0
    for (name, step), (_, torch_step) in zip(ours, theirs):
        ms = time_ms(step, args.repeat)
        total_ours += ms
        if torch_step is None:
            print(f"{name:<26}{ms:>10.3f}{'-':>10}{'-':>8}")
            continue
        ref = time_ms(torch_step, args.repeat)
        total_theirs += ref
        print(f"{name:<26}{ms:>10.3f}{ref:>10.3f}{ms / ref:>8.2f}")
    if torch is not None:
        print(f"{'total':<26}{total_ours:>10.3f}{total_theirs:>10.3f}{total_ours / total_theirs:>8.2f}")
    else:
        print(f"{'total':<26}{total_ours:>10.3f}")


if __name__ == "__main__":
    main()
