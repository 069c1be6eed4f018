"""all_reduce throughput of a 2-rank job while a stranger floods its ports.

    python bench/under_attack.py [--seconds 5] [--sizes 4096,1048576]

For each size it runs the same all_reduce loop twice, alone and with an
attacker (another process, standard library only) hammering every rank's tcp
data port and the rendezvous store as fast as it can: random bytes, ZeroMQ
handshakes without a credential and with guessed passwords, a forged abort
notice, and wrong-token store requests. It prints each loop's all_reduces per
second, the attacked/alone ratio, the attacker's connection count, and how
many lines the job logged about dropped traffic (bounded, whatever the flood).
A third loop runs beside a process that only burns a core ("busy"): on a
machine with as many cores as ranks, any third busy process slows the job,
and "vs busy" is what handling the attacker's traffic costs beyond that.
Ranks run with ``DISTNN_SHM=0`` too (``--sockets``), where every byte of the
job crosses the same sockets the stranger is flooding.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "distributed", "workers"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(directory, nbytes, seconds):
    import numpy as np

    import distnn.distributed as dist
    dist.init_process_group()
    rank = dist.get_rank()
    transport = dist.registry.current().world.transport
    with open(os.path.join(directory, f"rank{rank}.json.tmp"), "w") as f:
        json.dump({"tcp": transport.tcp_endpoint, "ipc": transport.ipc_endpoint}, f)
    os.replace(os.path.join(directory, f"rank{rank}.json.tmp"), os.path.join(directory, f"rank{rank}.json"))
    buf = np.zeros(nbytes // 4, np.float32)
    for _ in range(5):
        dist.all_reduce(buf)
    flag = np.zeros(1, np.float32)
    count, started = 0, time.perf_counter()
    while True:  # rank 0 decides when time is up, so both ranks run the same number of steps
        for _ in range(10):
            dist.all_reduce(buf)
        count += 10
        flag[0] = 1.0 if rank == 0 and time.perf_counter() - started > seconds else 0.0
        dist.all_reduce(flag)
        if flag[0] > 0:
            break
    elapsed = time.perf_counter() - started
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps({"per_s": count / elapsed}), flush=True)


def attack(endpoints, store_port, stop_file):
    """Flood every port until ``stop_file`` exists; prints how many connections it made."""
    from stranger import attempt, forged_messages, greeting, hello, ready
    job = os.urandom(8)
    payload = forged_messages(job, 2)
    deadline, connections = time.monotonic() + 600, 0
    rng = random.Random(0)
    while time.monotonic() < deadline and not (connections % 64 == 0 and os.path.exists(stop_file)):
        if not endpoints:  # the control: a neighbour that only burns a core
            connections += 1
            continue
        for tcp in endpoints:
            host, port = tcp[len("tcp://"):].rsplit(":", 1)
            kind = connections % 4
            if kind == 0:
                attempt(host, int(port), b"NULL", ready(), payload, wait=False)
            elif kind == 1:
                attempt(host, int(port), b"PLAIN", hello(b"distnn", b"guess%d" % connections), payload, wait=False)
            elif kind == 2:
                try:
                    with socket.create_connection((host, int(port)), timeout=1) as s:
                        s.sendall(rng.randbytes(4096))
                except OSError:
                    pass
            else:
                try:
                    with socket.create_connection(("127.0.0.1", store_port), timeout=1) as s:
                        s.sendall(greeting(b"NULL") + ready() + rng.randbytes(512))
                except OSError:
                    pass
            connections += 1
    print(json.dumps({"connections": connections}), flush=True)


def run_job(nbytes, seconds, sockets, with_attack, busy_only=False):
    port = free_port()
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
               PYTHONPATH=REPO, DISTNN_SHM="0" if sockets else "1")
    env.pop("DISTNN_JOB_TOKEN", None)
    with tempfile.TemporaryDirectory() as directory:
        ranks = [subprocess.Popen([sys.executable, __file__, "--worker", directory, str(nbytes), str(seconds)],
                                  env=dict(env, RANK=str(r)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for r in range(2)]
        attacker = None
        try:
            files = [os.path.join(directory, f"rank{r}.json") for r in range(2)]
            deadline = time.monotonic() + 60
            while not all(os.path.exists(f) for f in files):
                if time.monotonic() > deadline or any(p.poll() is not None for p in ranks):
                    raise RuntimeError("the ranks did not start:\n" + "".join(p.communicate()[1] for p in ranks))
                time.sleep(0.02)
            if with_attack:
                endpoints = [] if busy_only else [json.load(open(f))["tcp"] for f in files]
                attacker = subprocess.Popen([sys.executable, __file__, "--attacker", json.dumps(endpoints), str(port),
                                             os.path.join(directory, "stop")], stdout=subprocess.PIPE, text=True)
            outputs = [p.communicate(timeout=seconds + 120) for p in ranks]
            open(os.path.join(directory, "stop"), "w").close()
            connections = json.loads(attacker.communicate(timeout=30)[0])["connections"] if attacker else 0
            connections = 0 if busy_only else connections
        finally:
            for p in ranks + ([attacker] if attacker else []):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(p.returncode for p in ranks):
            raise RuntimeError("a rank failed:\n" + "".join(err for _, err in outputs))
        logged = sum(err.count("[distnn]") for _, err in outputs)
        return json.loads(outputs[0][0])["per_s"], connections, logged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sizes", default="4096,1048576")
    parser.add_argument("--worker", nargs=3)
    parser.add_argument("--attacker", nargs=3)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), float(args.worker[2]))
    if args.attacker:
        return attack(json.loads(args.attacker[0]), int(args.attacker[1]), args.attacker[2])
    print(f"{'size':>9} {'path':>8} | {'alone /s':>9} {'busy /s':>8} {'attacked /s':>11} {'vs alone':>8} "
          f"{'vs busy':>7} | {'attacker conns':>14} {'log lines':>9}")
    for nbytes in (int(s) for s in args.sizes.split(",")):
        for sockets in (False, True):
            alone, _, _ = run_job(nbytes, args.seconds, sockets, with_attack=False)
            busy, _, _ = run_job(nbytes, args.seconds, sockets, with_attack=True, busy_only=True)
            attacked, connections, logged = run_job(nbytes, args.seconds, sockets, with_attack=True)
            print(f"{nbytes:>9} {'sockets' if sockets else 'default':>8} | {alone:>9.0f} {busy:>8.0f} "
                  f"{attacked:>11.0f} {attacked / alone:>8.2f} {attacked / busy:>7.2f} | {connections:>14} "
                  f"{logged:>9}", flush=True)


if __name__ == "__main__":
    main()
