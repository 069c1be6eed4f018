"""all_reduce latency and bandwidth: distnn (ZeroMQ) beside torch.distributed gloo.

    python bench/allreduce.py --world 2 [--iters 20]

Spawns ``--world`` local processes per backend. For each size (float32) it
prints the median time of one all_reduce, the algorithm bandwidth
(bytes / time) and the bus bandwidth (2(n-1)/n x bytes / time, the figure
NCCL and gloo report), with gloo's on the same run when torch is importable.
distnn runs twice: as configured by default (same-host ranks stage large
buffers in shared memory) and with ``DISTNN_SHM=0`` (ZeroMQ sockets only, the
path ranks on different hosts take).
"""

import argparse
import multiprocessing as mp
import os
import socket
import time

SIZES = [4, 4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _iters_for(nbytes, iters):
    return max(5, min(iters * 10, int(iters * (16 << 20) / max(nbytes, 1)))) if nbytes < (16 << 20) else iters


def _worker(backend, rank, world, port, iters, results):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      OMP_NUM_THREADS="1")
    if backend == "distnn-sockets":
        os.environ["DISTNN_SHM"] = "0"
    import numpy as np
    if backend.startswith("distnn"):
        import distnn.distributed as dist
        dist.init_process_group()

        def make(n):
            return np.zeros(n, np.float32)
        run, sync = dist.all_reduce, dist.barrier
    else:
        import torch
        import torch.distributed as dist
        torch.set_num_threads(1)
        dist.init_process_group("gloo")

        def make(n):
            return torch.zeros(n, dtype=torch.float32)
        run, sync = dist.all_reduce, dist.barrier
    timings = {}
    for nbytes in SIZES:
        buf = make(nbytes // 4)  # zeros: repeated sums stay finite
        for _ in range(3):
            run(buf)
        samples = []
        for _ in range(_iters_for(nbytes, iters)):
            sync()
            t0 = time.perf_counter()
            run(buf)
            samples.append(time.perf_counter() - t0)
        samples.sort()
        timings[nbytes] = samples[len(samples) // 2]
    if rank == 0:  # each sample starts after a barrier, so rank 0's time is the job's
        results.put(timings)
    dist.destroy_process_group()


def measure(backend, world, iters):
    ctx = mp.get_context("spawn")
    results, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_worker, args=(backend, r, world, port, iters, results)) for r in range(world)]
    for p in procs:
        p.start()
    try:
        timings = results.get(timeout=600)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return timings


def _fmt_size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n // scale} {unit}"
    return f"{n} B"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args(argv)
    ours = measure("distnn", args.world, args.iters)
    sockets = measure("distnn-sockets", args.world, args.iters)
    try:
        import torch  # noqa: F401
        theirs = measure("gloo", args.world, args.iters)
    except ImportError:
        theirs = None
    factor = 2 * (args.world - 1) / args.world
    print(f"all_reduce float32, {args.world} ranks on one host (median; busbw = 2(n-1)/n x bytes / time)")
    head = (f"{'size':>8} | {'distnn us':>10} {'algbw GB/s':>10} {'busbw GB/s':>10} | "
            f"{'sockets us':>10} {'busbw GB/s':>10}")
    if theirs:
        head += f" | {'gloo us':>10} {'busbw GB/s':>10} | {'speedup':>7} {'sockets':>7}"
    print(head)
    for nbytes in SIZES:
        t, z = ours[nbytes], sockets[nbytes]
        line = (f"{_fmt_size(nbytes):>8} | {t * 1e6:10.1f} {nbytes / t / 1e9:10.3f} {factor * nbytes / t / 1e9:10.3f} | "
                f"{z * 1e6:10.1f} {factor * nbytes / z / 1e9:10.3f}")
        if theirs:
            g = theirs[nbytes]
            line += f" | {g * 1e6:10.1f} {factor * nbytes / g / 1e9:10.3f} | {g / t:6.2f}x {g / z:6.2f}x"
        print(line)
    print("speedup = gloo time / distnn time (default, then sockets only); "
          "sockets = DISTNN_SHM=0, the path between hosts")


if __name__ == "__main__":
    main()
