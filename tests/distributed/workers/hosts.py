"""Worker for tests/distributed/test_multihost.py: joins the job, checks a small and
a large all-reduce (the large one goes through shared memory where the group can
use it), and prints one JSON line saying how it reached its peers:

    {"rank": r, "ok": true, "tcp": "tcp://10.213.1.1:41234", "routes": {"1": "tcp://..."},
     "shm": false}

    python hosts.py loop    # after a barrier, print {"looping": rank}, then all-reduce until an
                            # error (reported by cases.report_error) or 60 s
    python hosts.py recv    # rank 0 waits in recv() from rank 1, which SIGKILLs itself instead
"""

import os
import signal
import sys
import time

import numpy as np

import distnn.distributed as dist
from cases import emit, init, report_error
from distnn.distributed import registry


def loop():
    rank, _ = init()
    dist.barrier()
    emit(looping=rank)
    started = time.monotonic()
    x = np.ones(7, np.float32)
    try:
        while time.monotonic() - started < 60:
            dist.all_reduce(x, op=dist.ReduceOp.MAX)
            time.sleep(0.01)
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok="looped for 60 s")


def recv_from_the_dead():
    rank, _ = init()
    dist.barrier()
    if rank == 1:
        time.sleep(1.0)  # rank 0 is in its recv by now, and the barrier's last message has left
        emit(rank=rank, killing_at=time.time())
        os.kill(os.getpid(), signal.SIGKILL)
    started = time.monotonic()
    try:
        dist.recv(np.zeros(3, np.float32), src=1)
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok="received from a dead rank")


def main():
    rank, world = init()
    for n in (7, 100000):
        x = np.full(n, rank + 1, np.float32)
        dist.all_reduce(x)
        if not np.all(x == world * (world + 1) / 2):
            raise SystemExit(f"rank {rank}: all_reduce of {n} gave {x[:3]}, expected {world * (world + 1) / 2}")
    state = registry.current()
    group, transport = state.group, state.world.transport
    emit(rank=rank, ok=True, tcp=transport.tcp_endpoint, routes={str(p): e for p, e in transport.routes.items()},
         shm=group.shm is not None)
    dist.destroy_process_group()


if __name__ == "__main__":
    {"loop": loop, "recv": recv_from_the_dead}.get(sys.argv[1] if sys.argv[1:] else "", main)()
