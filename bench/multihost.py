"""All-reduce and DDP across two hosts joined by a shaped link: distnn's hierarchical
all-reduce beside its flat ring and torch.distributed gloo.

    sudo python bench/multihost.py [--rates 1gbit 10gbit] [--ranks-per-host 2] [--iters 10]

Needs root and iproute2: it makes two network namespaces joined by a veth pair
(tests/netns.py), the second with its own hostname, /tmp and /dev/shm, and caps
the link's rate both ways with a ``tbf`` qdisc (this kernel has no netem). Each
variant runs one launcher per host (distnn's ``python -m launcher --nnodes 2``,
torch's ``torch.distributed.run``), ``--ranks-per-host`` workers each, one BLAS
thread per worker:

- distnn: hierarchical (the default for such a group: shared memory within a
  host, lanes across), and flat (``DISTNN_HIERARCHICAL=0``: one ring over sockets);
- torch gloo, when torch is importable;
- with ``--variants``, DDP communication hooks of either library: fp16
  compression and PowerSGD (rank 4, after 10 plain steps).

For each float32 size it reports the median all_reduce time and the bus
bandwidth (2(n-1)/n x bytes / time over n ranks, as NCCL and gloo report it),
and the share of the link's rate that the bytes crossing it used (each host
must send at least the whole buffer's worth); then DDP training throughput
(samples/s over all ranks) of the 784-1024-1024-10 MLP (1.86M parameters: 7.45 MB of float32 gradients)
with ``--batch`` samples per rank, with the bytes that crossed the link per
step (counted by the interface, the busier direction) and the link's use.
When both pretend hosts' ranks outnumber this machine's cores, distnn's ranks do
not spin on shared-memory signals (``DISTNN_SHM_SPIN_US=0``), as gloo's never do.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SIZES = [256 << 10, 4 << 20, 16 << 20, 64 << 20]
VARIANTS = {  # name -> (library, extra environment, DDP communication hook)
    "distnn hierarchical": ("distnn", {"DISTNN_HIERARCHICAL": "1"}, None),
    "distnn flat": ("distnn", {"DISTNN_HIERARCHICAL": "0"}, None),
    "torch gloo": ("torch", {}, None),
    "distnn fp16 hook": ("distnn", {}, "fp16"),
    "distnn PowerSGD r4": ("distnn", {}, "powersgd"),
    "torch fp16 hook": ("torch", {}, "fp16"),
}
DEFAULT_VARIANTS = ["distnn hierarchical", "distnn flat", "torch gloo"]
RATE_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def rate_bits(rate):
    for unit, scale in RATE_UNITS.items():
        if rate.endswith(unit):
            return float(rate[:-len(unit)]) * scale
    raise ValueError(f"Expect: a rate such as 1gbit or 500mbit, Actual: {rate!r}")


# --- the worker: one rank ------------------------------------------------------------------

def register_hook(lib, library, net, hook):
    """Give DDP model ``net`` the communication hook named ``hook`` (fp16, or PowerSGD of
    rank 4 after 10 plain steps), from the library's own ddp_comm_hooks."""
    if library == "distnn":
        from distnn.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    else:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    if hook == "fp16":
        net.register_comm_hook(None, default_hooks.fp16_compress_hook)
    else:
        state = powerSGD_hook.PowerSGDState(None, matrix_approximation_rank=4, start_powerSGD_iter=10)
        net.register_comm_hook(state, powerSGD_hook.powerSGD_hook)


def link_bytes():
    """Bytes sent and received so far on this host's end of the link (BENCH_LINK)."""
    base = f"/sys/class/net/{os.environ['BENCH_LINK']}/statistics/"
    with open(base + "tx_bytes") as tx, open(base + "rx_bytes") as rx:
        return int(tx.read()), int(rx.read())


def worker(library, out, iters, steps, batch, hook):
    import numpy as np
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(threads)
    if library == "distnn":
        import distnn as lib
        import distnn.distributed as dist
        dist.init_process_group()
        ddp_cls = dist.DistributedDataParallel
    else:
        import torch as lib
        import torch.distributed as dist
        lib.set_num_threads(1)
        dist.init_process_group("gloo")
        ddp_cls = lib.nn.parallel.DistributedDataParallel
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {"world": world, "all_reduce": {}}
    for nbytes in SIZES if hook == "none" else ():  # a hook changes DDP only
        buf = lib.zeros(nbytes // 4)
        for _ in range(2):
            dist.all_reduce(buf)
        times = []
        for _ in range(iters):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - start)
        report["all_reduce"][nbytes] = float(np.median(times))
    sys.path.insert(0, HERE)
    import models
    lib.manual_seed(0)
    model = models.mlp(lib, [784, 1024, 1024, 10])
    net = ddp_cls(model)
    if hook != "none":
        register_hook(lib, library, net, hook)
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = lib.randn(batch, 784), lib.randint(0, 10, (batch,))
    loss_fn = lib.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    for _ in range(12):  # past PowerSGD's 10 uncompressed steps
        step()
    dist.barrier()
    sent, received = link_bytes()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    elapsed = time.perf_counter() - start
    sent2, received2 = link_bytes()
    report["ddp_samples_per_s"] = steps * batch * world / elapsed
    report["ddp_link_bytes_per_s"] = max(sent2 - sent, received2 - received) / elapsed
    report["ddp_link_bytes_per_step"] = max(sent2 - sent, received2 - received) / steps
    if rank == 0:
        with open(out, "w") as f:
            json.dump(report, f)
    dist.destroy_process_group()


# --- the driver: hosts, links, launchers ------------------------------------------------------

def shape(hosts, rate):
    """Cap both ends of the link between the hosts at ``rate`` (a tc rate, e.g. 1gbit)."""
    burst = max(int(rate_bits(rate) / 8 / 1000), 64 << 10)  # a millisecond at full rate, at least 64 KiB
    for host in (0, 1):
        subprocess.run(["ip", "netns", "exec", hosts.spaces[host], "tc", "qdisc", "replace", "dev",
                        hosts.interface(host), "root", "tbf", "rate", rate, "burst", str(burst),
                        "latency", "50ms"], check=True, capture_output=True, timeout=10)


def launch_command(library, node, ranks_per_host, master, port, argv):
    if library == "distnn":
        head = [sys.executable, "-m", "launcher", "--nnodes", "2", "--node-rank", str(node), "--workers",
                str(ranks_per_host), "--master-addr", master, "--master-port", str(port), "--timeout", "300"]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
                "--nproc-per-node", str(ranks_per_host), "--master-addr", master, "--master-port", str(port)]
    return head + [os.path.abspath(__file__), "--worker", library] + argv


def run_variant(hosts, variant, args, out):
    library, extra, hook = VARIANTS[variant]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), **extra,
               TMPDIR=os.path.dirname(out))  # torchrun's scratch folders go with ours
    if 2 * args.ranks_per_host > os.cpu_count():
        # Both pretend hosts share this machine's cores: a rank spinning on a shared-memory
        # signal would take the core a rank of the other host needs (gloo never spins).
        env.setdefault("DISTNN_SHM_SPIN_US", "0")
    worker_args = [out, str(args.iters), str(args.steps), str(args.batch), hook or "none"]
    port = 29500 + os.getpid() % 1000
    prefixes = [hosts.prefix(0), hosts.prefix(1, private=True, hostname="benchhostb")]
    # gloo finds its address through the hostname, which the second host's does not resolve to.
    node_env = [dict(env, BENCH_LINK=hosts.interface(node),
                     **({"GLOO_SOCKET_IFNAME": hosts.interface(node)} if library == "torch" else {}))
                for node in (0, 1)]
    procs = [subprocess.Popen(prefixes[node] + launch_command(library, node, args.ranks_per_host, hosts.address(0),
                                                              port, worker_args),
                              env=node_env[node], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
             for node in (0, 1)]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=args.timeout)[0])
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{variant}: no result within {args.timeout}s") from None
    finally:
        _kill_workers(procs, out)
    if any(p.returncode for p in procs):
        raise SystemExit(f"{variant} failed:\n" + "\n".join(f"--- host {node}:\n{_errors(o)}"
                                                              for node, o in enumerate(outputs)))
    with open(out) as f:
        return json.load(f)


def _kill_workers(procs, out):
    """Kill the launchers' sessions, and any worker of this variant that left them
    (found by its result path on the command line): a failed run leaves nothing behind."""
    for p in procs:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if out.encode() in f.read():
                    os.kill(int(pid), 9)
        except OSError:
            pass


def _errors(output, context=12):
    """The lines of ``output`` around each traceback's last line (the launcher's own
    noise around them left out), or its tail when there is none."""
    lines = output.splitlines()
    ends = [i for i, line in enumerate(lines) if "Error:" in line and not line.startswith(" ")]
    if not ends:
        return "\n".join(lines[-context:])
    return "\n".join("\n".join(lines[max(i - context, 0):i + 1]) for i in ends)


def table(rate, results):
    link = rate_bits(rate) / 8
    names = [n for n in results if results[n]["all_reduce"]]
    print(f"\n### link {rate} each way ({link / 1e6:.0f} MB/s)\n")
    print("| size | " + " | ".join(f"{n} ms | busbw MB/s | link use" for n in names) + " |")
    print("|---|" + "---|---|---|" * len(names))
    for nbytes in SIZES:
        cells = []
        for name in names:
            seconds = results[name]["all_reduce"][str(nbytes)]
            n = results[name]["world"]
            busbw = 2 * (n - 1) / n * nbytes / seconds
            # Whatever the algorithm, each host must send at least the bytes it holds and receive
            # the other's: nbytes each way for two hosts, in the best case.
            cells.append(f"{seconds * 1e3:.1f} | {busbw / 1e6:.0f} | {nbytes / seconds / link:.0%}")
        print(f"| {nbytes / (1 << 20):g} MiB | " + " | ".join(cells) + " |")
    print("\nDDP, MLP 784-1024-1024-10 (1.86M parameters: 7.45 MB of float32 gradients):\n")
    print("| variant | samples/s | link MB/step (busier way) | link use |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['ddp_samples_per_s']:.0f} | {r['ddp_link_bytes_per_step'] / 1e6:.2f} | "
              f"{r['ddp_link_bytes_per_s'] / link:.0%} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", nargs="+", default=["1gbit", "10gbit"])
    parser.add_argument("--ranks-per-host", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                        help="all: " + ", ".join(VARIANTS))
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    variants = list(args.variants)
    try:
        import torch
        del torch
    except ImportError:
        variants = [v for v in variants if VARIANTS[v][0] != "torch"]
    if not variants:
        raise SystemExit("bench/multihost.py: no variant left to run (torch is not importable)")
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import netns
    scratch = tempfile.mkdtemp(prefix="distnn-bench-multihost-")
    try:
        with netns.made_hosts() as hosts:
            for rate in args.rates:
                shape(hosts, rate)
                results = {v: run_variant(hosts, v, args, os.path.join(scratch, f"{i}.json"))
                           for i, v in enumerate(variants)}
                table(rate, results)
    except netns.Unavailable as exc:
        raise SystemExit(f"bench/multihost.py: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.ranks_per_host} ranks per host, 2 hosts; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    else:
        main()
