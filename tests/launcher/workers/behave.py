"""A launcher test worker (standard library only, so it starts in ~0.05 s).

Every rank records its pid in --pid-dir, prints one line to stdout and one to
stderr, and then does what the flags ask of its rank: raise, exit with a
code, SIGKILL itself, leave grandchildren behind, or sleep until stopped.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

rank = int(os.environ["RANK"])
restart = int(os.environ["DISTNN_RESTART_COUNT"])

parser = argparse.ArgumentParser()
parser.add_argument("--pid-dir", required=True)
parser.add_argument("--sleep", type=float, default=0.0, help="seconds every rank sleeps at the end")
parser.add_argument("--fail-rank", type=int, default=None, help="this rank raises ValueError")
parser.add_argument("--kill-rank", type=int, default=None, help="this rank SIGKILLs itself")
parser.add_argument("--exit-rank", type=int, default=None, help="this rank calls sys.exit(--exit-code)")
parser.add_argument("--exit-code", type=int, default=3)
parser.add_argument("--fail-after", type=float, default=0.2)
parser.add_argument("--fail-first-attempt", action="store_true", help="rank 1 raises when DISTNN_RESTART_COUNT is 0")
parser.add_argument("--grandchildren", action="store_true",
                    help="leave three SIGTERM-ignoring grandchildren: in the group, in a new session, "
                    "and in a new session with an empty environment")
parser.add_argument("--lines", type=int, default=0, help="print this many long lines to stdout and stderr")
parser.add_argument("--width", type=int, default=2000)
parser.add_argument("--ignore-signals", action="store_true", help="ignore SIGINT, SIGTERM and SIGHUP")
parser.add_argument("--watch-rank", type=int, default=None,
                    help="this rank exits at once; the others must see its pid gone (os.kill(pid, 0)) within 3 s")
parser.add_argument("--meet", action="store_true",
                    help="rank 0 listens on MASTER_ADDR:MASTER_PORT (SO_REUSEADDR, like ZeroMQ) until every "
                    "other rank has connected to it")
args = parser.parse_args()


def record(name, pid):
    path = os.path.join(args.pid_dir, name)
    with open(path + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(path + ".tmp", path)


def spawn_grandchild(name, **popen):
    ready = os.path.join(args.pid_dir, f"{name}.pid")
    code = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); os.replace(sys.argv[1] + '.tmp', sys.argv[1]); "
            "time.sleep(120)")
    subprocess.Popen([sys.executable, "-c", code, ready], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     **popen)
    while not os.path.exists(ready):
        time.sleep(0.01)


def meet():
    """A miniature of the distributed rendezvous: proves MASTER_PORT is free and reachable."""
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if rank == 0:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(address)
            server.listen()
            for _ in range(int(os.environ["WORLD_SIZE"]) - 1):
                server.accept()[0].close()
        return
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def watch(victim):
    """What distnn.distributed does to notice a dead peer on the same host."""
    if rank == victim:
        sys.exit(0)
    pid_file = os.path.join(args.pid_dir, f"worker_{victim}.pid")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(int(open(pid_file).read()), 0)
        except (FileNotFoundError, ValueError):
            pass
        except ProcessLookupError:
            print(f"rank {rank} saw rank {victim} gone")
            return
        time.sleep(0.02)
    sys.exit(5)


record(f"worker_{rank}.pid", os.getpid())
with open(os.path.join(args.pid_dir, f"env_{rank}_{restart}.json"), "w") as f:
    json.dump({k: v for k, v in os.environ.items() if k.isupper()}, f)
print(f"hello from rank {rank}")
print(f"note from rank {rank}", file=sys.stderr)

if args.ignore_signals:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
if args.grandchildren:
    spawn_grandchild(f"grandchild_{rank}_group")
    spawn_grandchild(f"grandchild_{rank}_session", start_new_session=True)
    spawn_grandchild(f"grandchild_{rank}_scrubbed", start_new_session=True, env={})
for i in range(args.lines):
    line = f"{rank}" * args.width
    print(f"out {rank} {i} {line}")
    print(f"err {rank} {i} {line}", file=sys.stderr)
if args.meet:
    meet()
if args.watch_rank is not None:
    watch(args.watch_rank)
record(f"ready_{rank}", os.getpid())

if rank in (args.fail_rank, args.kill_rank, args.exit_rank) or (args.fail_first_attempt and rank == 1):
    time.sleep(args.fail_after)
    if rank == args.kill_rank:
        os.kill(os.getpid(), signal.SIGKILL)
    if rank == args.exit_rank:
        sys.exit(args.exit_code)
    if args.fail_first_attempt and restart == 0:
        raise RuntimeError(f"first attempt fails on rank {rank}")
    if rank == args.fail_rank:
        raise ValueError(f"boom on rank {rank}")
time.sleep(args.sleep)
