"""all_to_all, all_to_all_single, batch_isend_irecv and monitored_barrier on distnn or on
torch's gloo (the oracle), from the same inputs, written through the same torch-shaped
calls; the tests compare what the two libraries give.

    exchanges.py LIB OUT_DIR data SECTION   (all_to_all or p2p) every case's outputs
                                              -> OUT_DIR/LIB-rankR.npz
    exchanges.py LIB OUT_DIR monitored TIMEOUT_MS WAIT_ALL MISSING
        a monitored_barrier that passes, an all_reduce after it, then one that ranks
        MISSING (comma-separated) skip; each rank prints {"monitored": error text or null}

LIB is ``distnn`` or ``torch``. torch's process exits at once when done: the comparison
is of results, not of gloo's teardown.
"""

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from exchange_oracle import values

LIB, OUT_DIR, MODE = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
if LIB == "torch":
    import torch
    import torch.distributed as dist
    wrap = torch.from_numpy
    torch.set_num_threads(1)
else:
    import distnn
    import distnn.distributed as dist
    wrap = distnn.from_numpy

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8")
LARGE_ROWS = int(2.5 * (1 << 20)) // 4  # float32 rows of one element: 2.5 MiB per pair


def uneven_splits(rank, world):
    """Rows rank ``rank`` sends to each peer (zeros among them) and receives from each:
    what p sends to r is what r expects from p."""
    sends = [(rank + 2 * p) % 3 for p in range(world)]
    receives = [(p + 2 * rank) % 3 for p in range(world)]
    return sends, receives


def all_to_all_cases(rank, world):
    """{case: output array} of every all_to_all case, in one order on every rank."""
    out = {}
    for dtype in DTYPES:
        x = values(rank, world * 3 * 2, dtype).reshape(world * 3, 2)
        y = np.zeros_like(x)
        dist.all_to_all_single(wrap(y), wrap(x))
        out[f"single.even.{dtype}"] = y

        sends, receives = uneven_splits(rank, world)
        x = values(rank, sum(sends) * 3, dtype, salt=1).reshape(sum(sends), 3)
        y = np.zeros((sum(receives), 3), dtype)
        dist.all_to_all_single(wrap(y), wrap(x), receives, sends)
        out[f"single.uneven.{dtype}"] = y

        outs = [np.zeros((2, 2), dtype) for _ in range(world)]
        dist.all_to_all([wrap(o) for o in outs], [wrap(values(rank, 4, dtype, salt=p).reshape(2, 2))
                                                  for p in range(world)])
        out[f"list.{dtype}"] = np.stack(outs)

    x = values(rank, world * LARGE_ROWS, "float32", salt=2)
    y = np.zeros_like(x)
    work = dist.all_to_all_single(wrap(y), wrap(x), async_op=True)
    work.wait()
    out["single.large.async"] = y

    zero = np.zeros((0, 4), "float32")
    dist.all_to_all_single(wrap(zero), wrap(np.zeros((0, 4), "float32")), [0] * world, [0] * world)
    out["single.all_empty"] = zero
    return out


def p2p_cases(rank, world):
    """{case: output array} of batch_isend_irecv: to and from both neighbours, sends and
    receives mixed (two messages each way between the two ranks of a world of 2); 2.5 MiB
    around the ring; every rank to every other."""
    out = {}
    for dtype in ("float32", "int64"):
        right, left = (rank + 1) % world, (rank - 1) % world
        got = [np.zeros(5, dtype), np.zeros(3, dtype)]
        if world > 1:
            ops = [dist.P2POp(dist.irecv, wrap(got[0]), left),
                   dist.P2POp(dist.isend, wrap(values(rank, 5, dtype)), right),
                   dist.P2POp(dist.isend, wrap(values(rank, 3, dtype, salt=4)), left),
                   dist.P2POp(dist.irecv, wrap(got[1]), right)]
            for work in dist.batch_isend_irecv(ops):
                work.wait()
        out[f"batch.ring.{dtype}"] = np.concatenate(got)
    if world == 1:
        return out
    big = np.zeros(LARGE_ROWS, "float32")
    ops = [dist.P2POp(dist.isend, wrap(values(rank, LARGE_ROWS, "float32", salt=5)), (rank + 1) % world),
           dist.P2POp(dist.irecv, wrap(big), (rank - 1) % world)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    out["batch.large"] = big
    every = [np.zeros(4, "uint8") for _ in range(world)]
    ops = [dist.P2POp(dist.irecv, wrap(every[p]), p) for p in range(world) if p != rank]
    ops += [dist.P2POp(dist.isend, wrap(values(rank, 4, "uint8", salt=p)), p) for p in range(world) if p != rank]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    out["batch.all_pairs"] = np.stack(every)
    return out


def monitored(rank, timeout_ms, wait_all, missing):
    timeout = timedelta(milliseconds=timeout_ms)
    dist.monitored_barrier(timeout=timedelta(seconds=30), wait_all_ranks=wait_all)
    total = wrap(np.ones(3, "float32"))
    dist.all_reduce(total)
    assert total.numpy().tolist() == [dist.get_world_size()] * 3, total
    error = None
    if rank in missing:
        time.sleep(timeout_ms / 1000 + 2)
    else:
        try:
            dist.monitored_barrier(timeout=timeout, wait_all_ranks=wait_all)
        except RuntimeError as exc:
            error = str(exc)
    print(json.dumps({"monitored": error}), flush=True)


def main():
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    if MODE == "data":
        cases = {"all_to_all": all_to_all_cases, "p2p": p2p_cases}[sys.argv[4]]
        np.savez(OUT_DIR / f"{LIB}-rank{rank}.npz", **cases(rank, world))
        dist.barrier()
    else:
        missing = {int(r) for r in sys.argv[6].split(",") if r}
        monitored(rank, int(sys.argv[4]), sys.argv[5] == "1", missing)
    sys.stdout.flush()
    if LIB != "torch":
        dist.destroy_process_group()  # its last messages leave before the exit
    os._exit(0)


if __name__ == "__main__":
    main()
