"""Train-step time of the seed models, distnn beside PyTorch (when importable).

    python bench/step_time.py [--repeat 30] [--threads 1] [--rounds 3] [--device cuda]

Each row is one full step (forward, loss, zero_grad, backward, update) with
one BLAS thread by default; the table shows median milliseconds. Each library
runs ``--rounds`` times in a fresh process, the rounds of the two interleaved,
so a slow spell of a shared machine hits both alike; each cell is the median
over rounds of the per-round medians.
"""

import argparse
import os
import sys


def _set_threads(n):
    # Must happen before numpy/torch load their BLAS.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def build_cases(lib, device):
    """The benchmark models, written once against the shared torch-style API."""
    import models
    nn = lib.nn

    def classifier_step(model, batch, in_shape):
        model.to(device)
        x, y = lib.randn(batch, *in_shape, device=device), lib.randint(0, 10, (batch,), device=device)
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        return step

    def two_layer_step():
        x, y = lib.randn(64, 1000, device=device), lib.randn(64, 10, device=device)
        model = nn.Sequential(nn.Linear(1000, 100), nn.ReLU(), nn.Linear(100, 10)).to(device)
        loss_fn = nn.MSELoss(reduction="sum")

        def step():
            loss = loss_fn(model(x), y)
            model.zero_grad()
            loss.backward()
            with lib.no_grad():
                for p in model.parameters():
                    p -= 1e-4 * p.grad
        return step

    def rnn_step():
        rnn, loss_fn = models.seed_rnn(lib, 50, 20, 10).to(device), nn.MSELoss()
        batch = lib.randn(10, 50, device=device)
        hidden0, target = lib.zeros(10, 20, device=device), lib.zeros(10, 10, device=device)

        def step():
            rnn.zero_grad()
            hidden, loss = hidden0, 0
            for _ in range(5):
                hidden, output = rnn(batch, hidden)
                loss = loss + loss_fn(output, target)
            loss.backward()
        return step

    mlp = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return [
        ("ConvNet train step, batch 64", classifier_step(models.mnist_convnet(lib), 64, (1, 28, 28))),
        ("ConvNet train step, batch 256", classifier_step(models.mnist_convnet(lib), 256, (1, 28, 28))),
        ("two-layer net (seed), batch 64", two_layer_step()),
        ("RNN loop (seed), 5 steps, batch 10", rnn_step()),
        ("MLP 784-1024-1024-10, batch 256", classifier_step(mlp, 256, (784,))),
    ]


def median_ms(step, repeat, sync, warmup=5):
    """Median wall time of ``step``; ``sync`` waits for queued GPU work, so a GPU
    step is timed to its end, not to its launch."""
    import time
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def run_library(name, repeat, threads, device):
    """Median ms per case for one library, in this process."""
    _set_threads(threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if name == "distnn":
        import distnn as lib
    else:
        import torch as lib
        lib.set_num_threads(threads)
    lib.manual_seed(0)
    sync = lib.cuda.synchronize if device == "cuda" else (lambda: None)
    return {case: median_ms(step, repeat, sync) for case, step in build_cases(lib, device)}


def measure_in_subprocess(name, repeat, threads, device):
    """Each library runs in a fresh process, so neither inherits the other's
    allocator state or thread pools. None when the library is not importable."""
    import json
    import subprocess
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--only", name, "--repeat", str(repeat),
                           "--threads", str(threads), "--device", device], capture_output=True, text=True)
    if proc.returncode != 0:
        if "No module named" in proc.stderr:
            return None
        raise RuntimeError(f"{name} benchmark failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_over_rounds(results):
    """{case: median ms over rounds} from one {case: ms} per round."""
    return {case: sorted(r[case] for r in results)[len(results) // 2] for case in results[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: distnn on CuPy beside torch on CUDA, each step synchronized")
    parser.add_argument("--only", choices=["distnn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        import json
        print(json.dumps(run_library(args.only, args.repeat, args.threads, args.device)))
        return
    ours, theirs, have_torch = [], [], True
    for _ in range(args.rounds):
        ours.append(measure_in_subprocess("distnn", args.repeat, args.threads, args.device))
        if have_torch:
            got = measure_in_subprocess("torch", args.repeat, args.threads, args.device)
            have_torch = got is not None
            theirs += [got] if have_torch else []
    ours = _median_over_rounds(ours)
    theirs = _median_over_rounds(theirs) if theirs else {}
    print(f"{'case':<36} {'distnn ms':>10} {'torch ms':>10} {'ratio':>7}")
    for name, ms in ours.items():
        t = theirs.get(name)
        ratio = f"{ms / t:7.2f}" if t else "      -"
        print(f"{name:<36} {ms:10.2f} {(f'{t:10.2f}' if t else '         -')} {ratio}")
    print(f"({args.device}, {args.threads} BLAS thread(s), median of {args.repeat} steps, median of {args.rounds} interleaved "
          "rounds, each in a fresh process; ratio = distnn / torch, lower is better)")


if __name__ == "__main__":
    main()
