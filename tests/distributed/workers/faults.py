"""Worker for tests/distributed/test_faults.py: ranks that disagree, vanish or
misuse point to point. Each rank prints one JSON line: the error it got
(cases.report_error) or {"ok": ...}; the test decides what was right.

    python faults.py mismatch KIND ODD_RANK N [sync|async|warm]  # ODD_RANK's collective differs in KIND
                                                  # (src/dst: ODD_RANK names itself a broadcast's
                                                  # root or a gather's destination)
                                                  # (warm: after one matching shared-memory all_reduce)
    python faults.py join                         # rendezvous, one barrier, exit
    python faults.py kill VICTIM COLLECTIVE N     # VICTIM SIGKILLs itself in the 4th call
    python faults.py p2p PATTERN                  # irecv posted before the matching send
    python faults.py slow LATE_RANK SECONDS N [warm]  # LATE_RANK sleeps before its all_reduce
    python faults.py stop VICTIM N                # VICTIM SIGSTOPs itself before an all_reduce
    python faults.py reinit TIMES                 # init, all_reduce, destroy; repeated
    python faults.py retry_init LATE_S            # rank 0 starts late; the others retry init
"""

import os
import signal
import sys
import threading
import time

import numpy as np

import distnn.distributed as dist
from cases import data, emit, init, report_error


def warm_up():
    """One matching all_reduce large enough for shared memory: later steps there are
    ordered by signals in the regions, not by messages (distnn/distributed/shm.py)."""
    dist.all_reduce(np.ones(100000, np.float32))


def mismatch(kind, odd, n, async_op=False, warm=False):
    rank, world = init()
    differs = rank == odd
    if kind not in ("shape", "empty", "dtype", "op", "collective", "src", "dst"):
        sys.exit(f"unknown mismatch kind {kind!r}")
    size = {"shape": n + 1, "empty": 0}.get(kind, n) if differs else n
    x = data(rank, size, "float64" if differs and kind == "dtype" else "float32")
    op = dist.ReduceOp.MAX if differs and kind == "op" else dist.ReduceOp.SUM
    started = time.monotonic()
    work, wait_failed = None, False
    try:
        if warm:  # a fast rank may fail its second call before a slow one has left this
            warm_up()
        if differs and kind == "collective":
            work = dist.broadcast(x, 0, async_op=async_op)
        elif kind == "src":  # every rank broadcasts; the odd one names itself the root
            work = dist.broadcast(x, odd if differs else (odd + 1) % world, async_op=async_op)
        elif kind == "dst":  # every rank gathers; the odd one names itself the destination
            dst = odd if differs else (odd + 1) % world
            gather_list = [np.empty_like(x) for _ in range(world)] if rank == dst else None
            work = dist.gather(x, gather_list, dst=dst, async_op=async_op)
        else:
            work = dist.all_reduce(x, op=op, async_op=async_op)
        if async_op:
            try:
                work.wait()
            except Exception:
                wait_failed = True
                raise
        dist.barrier()  # a rank whose own call could not notice still hears of it here
    except Exception as exc:
        # A Work whose wait() raised must also report the failure through its own methods.
        failed_work_ok = not wait_failed or (work.is_completed() and work.exception() is exc
                                             and not work.is_success())
        report_error(exc, started, failed_work_ok=failed_work_ok)
        return
    emit(rank=rank, ok="no error raised")


def join():
    started = time.monotonic()
    try:
        rank, world = init()
        dist.barrier()
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok="joined")


def kill(victim, collective, n):
    rank, world = init()
    x = data(rank, n, "float32")
    started = time.monotonic()
    try:
        for step in range(1000):
            if step == 3 and rank == victim:
                emit(rank=rank, killing_at=time.time())
                threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGKILL)).start()
            if collective == "broadcast":
                dist.broadcast(x, 0)
            else:
                dist.all_reduce(x, op=dist.ReduceOp.MAX)
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok="finished 1000 steps")


def p2p(pattern):
    """Patterns torch's send/recv allow: a posted irecv must not stop this rank's
    later sends or collectives until it is matched."""
    rank, world = init()
    started = time.monotonic()
    left, right = (rank - 1) % world, (rank + 1) % world
    out = np.zeros(4, np.float32)
    try:
        if pattern == "irecv_then_isend":
            incoming = dist.irecv(out, left)
            outgoing = dist.isend(data(rank, 4, "float32"), right)
            incoming.wait()
            outgoing.wait()
            expected = data(left, 4, "float32")
        elif pattern == "irecv_then_barrier":
            incoming = dist.irecv(out, left) if rank == 1 else None
            dist.barrier()
            if rank == 0:
                dist.send(data(0, 4, "float32"), 1)
            if incoming:
                incoming.wait()
            expected = data(0, 4, "float32") if rank == 1 else out
        else:
            sys.exit(f"unknown pattern {pattern!r}")
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok=bool(np.array_equal(out, expected)))


def slow(late, seconds, n, warm=False):
    rank, world = init()
    if warm:
        warm_up()
    x = data(rank, n, "float32")
    if rank == late:
        time.sleep(seconds)
    started = time.monotonic()
    try:
        dist.all_reduce(x)
        dist.barrier()  # the late rank's all_reduce may still complete; it hears of the timeout here
    except Exception as exc:
        report_error(exc, started)
        return
    emit(rank=rank, ok="no error raised")


def stop(victim, n):
    """Rank ``victim`` stops itself (SIGSTOP) before an all_reduce; the others time out."""
    rank, world = init()
    x = data(rank, n, "float32")
    if rank == victim:
        os.kill(os.getpid(), signal.SIGSTOP)
    if all_reduce_or_report(x):
        emit(rank=rank, ok="no error raised")


def all_reduce_or_report(x):
    """all_reduce ``x``; False after reporting the error it raised."""
    started = time.monotonic()
    try:
        dist.all_reduce(x)
    except Exception as exc:
        report_error(exc, started)
        return False
    return True


def reinit(times):
    """destroy_process_group then init_process_group again, as test suites do."""
    for attempt in range(times):
        rank, world = init()
        x = data(rank, 1000, "int64", salt=attempt)
        dist.all_reduce(x)
        expected = sum(data(q, 1000, "int64", salt=attempt) for q in range(world))
        if not np.array_equal(x, expected):
            emit(rank=rank, ok=False, attempt=attempt)
            return
        dist.destroy_process_group()
        if dist.is_initialized():
            emit(rank=rank, ok=False, why="is_initialized() after destroy_process_group()")
            return
    emit(rank=rank, ok=True)


def retry_init(late_s):
    """Rank 0 (the store) starts ``late_s`` late; every other rank retries a 1 s
    init_process_group until it succeeds, as a script waiting for its master might."""
    rank = int(os.environ["RANK"])
    if rank == 0:
        time.sleep(late_s)
        init(timeout_s=10)
    else:
        for attempt in range(8):
            try:
                init(timeout_s=1)
                break
            except dist.DistributedError:
                pass
        else:
            emit(rank=rank, ok=False, why="init_process_group never succeeded")
            return
    rank, world = dist.get_rank(), dist.get_world_size()
    x = data(rank, 5, "int64")
    if all_reduce_or_report(x):
        emit(rank=rank, ok=bool(np.array_equal(x, sum(data(q, 5, "int64") for q in range(world)))))


if __name__ == "__main__":
    scenario, args = sys.argv[1], sys.argv[2:]
    if scenario == "mismatch":
        mismatch(args[0], int(args[1]), int(args[2]), async_op=args[3:] == ["async"], warm=args[3:] == ["warm"])
    elif scenario == "join":
        join()
    elif scenario == "kill":
        kill(int(args[0]), args[1], int(args[2]))
    elif scenario == "p2p":
        p2p(args[0])
    elif scenario == "slow":
        slow(int(args[0]), float(args[1]), int(args[2]), warm=args[3:] == ["warm"])
    elif scenario == "stop":
        stop(int(args[0]), int(args[1]))
    elif scenario == "reinit":
        reinit(int(args[0]))
    elif scenario == "retry_init":
        retry_init(float(args[0]))
    else:
        sys.exit(f"unknown scenario {scenario!r}")
