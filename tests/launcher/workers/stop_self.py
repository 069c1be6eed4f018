"""A launcher test worker for a hang: every rank joins the process group, then
--stop-rank SIGSTOPs itself before the all_reduce the others wait in, so they
time out (after the launcher's --timeout) while it stays alive, making no
progress. --pid-dir records each rank's pid."""

import argparse
import os
import signal

import distnn
import distnn.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--stop-rank", type=int, required=True)
parser.add_argument("--pid-dir", required=True)
args = parser.parse_args()

dist.init_process_group()
rank = dist.get_rank()
with open(os.path.join(args.pid_dir, f"worker_{rank}.pid"), "w") as f:
    f.write(str(os.getpid()))
if rank == args.stop_rank:
    os.kill(os.getpid(), signal.SIGSTOP)
t = distnn.ones(3)
dist.all_reduce(t)
print(f"rank {rank} got {t.tolist()}")
