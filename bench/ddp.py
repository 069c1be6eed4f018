"""Data-parallel training throughput: distnn DDP beside torch DDP (gloo).

    python bench/ddp.py [--workers 1 2 4] [--steps 100] [--batch 64] [--rounds 5]

Each run trains the tutorial MNIST ConvNet on random data with ``--batch``
samples per worker and one BLAS thread per worker, and reports samples/s over
all workers, the speed-up over one worker, and (for distnn) the share of step
time that backward spent waiting for gradient all-reduces. Every configuration
runs ``--rounds`` times, the rounds interleaved so that a slow spell of a shared
machine hits all of them alike; the table shows the median round, and the range of
the speed-up over the rounds (each round against its own first configuration).
"""

import argparse
import multiprocessing as mp
import os
import socket
import sys
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(backend, rank, world, port, steps, batch, results):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if backend == "distnn":
        import distnn as lib
        import distnn.distributed as dist
        ddp_cls = dist.DistributedDataParallel
    else:
        import torch as lib
        import torch.distributed as dist
        lib.set_num_threads(1)
        ddp_cls = lib.nn.parallel.DistributedDataParallel
    if world > 1:
        dist.init_process_group("gloo" if backend == "torch" else "zmq")
    lib.manual_seed(rank)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import models
    model = models.mnist_convnet(lib)
    net = ddp_cls(model) if world > 1 else model
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = lib.randn(batch, 1, 28, 28), lib.randint(0, 10, (batch,))
    loss_fn = lib.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    for _ in range(10):
        step()
    if world > 1:
        dist.barrier()
    comm_before = net.comm_wait_seconds if backend == "distnn" and world > 1 else 0.0
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    comm = (net.comm_wait_seconds - comm_before) if backend == "distnn" and world > 1 else None
    if rank == 0:
        results.put((world * batch * steps / elapsed, None if comm is None else comm / elapsed))
    if world > 1:
        dist.destroy_process_group()


def measure(backend, world, steps, batch):
    ctx = mp.get_context("spawn")
    results, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(backend, r, world, port, steps, batch, results))
             for r in range(world)]
    for p in procs:
        p.start()
    try:
        return results.get(timeout=900)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


def _median_run(results):
    """The (samples/s, comm share) of the run with the median throughput."""
    ordered = sorted(results, key=lambda r: r[0])
    return ordered[len(ordered) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    runs = {}  # (backend, world) -> [(samples/s, comm share), ...]
    for _ in range(args.rounds):
        for world in args.workers:
            for backend in ("distnn", "torch") if have_torch else ("distnn",):
                runs.setdefault((backend, world), []).append(measure(backend, world, args.steps, args.batch))
    rows, base = [], {}
    for world in args.workers:
        ours, comm = _median_run(runs[("distnn", world)])
        theirs = _median_run(runs[("torch", world)])[0] if have_torch else None
        base.setdefault("distnn", ours)
        if theirs:
            base.setdefault("torch", theirs)
        rows.append((world, ours, comm, theirs))
    print(f"MNIST ConvNet, batch {args.batch} per worker, 1 BLAS thread per worker, {args.steps} steps, "
          f"median of {args.rounds} rounds")
    print(f"{'workers':>7} | {'distnn samples/s':>16} {'vs 1 worker':>11} {'per round':>11} {'comm wait':>9} | "
          f"{'torch DDP samples/s':>19} {'vs 1 worker':>11} | {'distnn/torch':>12}")
    first = args.workers[0]
    for world, ours, comm, theirs in rows:
        comm_s = "-" if comm is None else f"{100 * comm:.0f}%"
        # Each round's speed-up against the same round's first configuration: how far the
        # machine's noise moves the ratio.
        ratios = [r[0] / b[0] for r, b in zip(runs[("distnn", world)], runs[("distnn", first)])]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        line = f"{world:>7} | {ours:16.0f} {ours / base['distnn']:10.2f}x {spread:>11} {comm_s:>9} | "
        if theirs:
            line += f"{theirs:19.0f} {theirs / base['torch']:10.2f}x | {ours / theirs:11.2f}x"
        else:
            line += f"{'-':>19} {'-':>11} | {'-':>12}"
        print(line)


if __name__ == "__main__":
    main()
