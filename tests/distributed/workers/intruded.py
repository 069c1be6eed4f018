"""Worker for tests/distributed/test_intrusion.py: join, publish this rank's data
endpoints in DIR/rank<R>.json, wait for DIR/go (the test attacks meanwhile), then
run the smoke collectives and report them as cases (see cases.py).

    python intruded.py DIR [LARGE_ELEMENTS]
"""

import json
import os
import sys
import time

import distnn.distributed as dist
from cases import Runner, init
from more_cases import section_smoke


def main():
    directory = sys.argv[1]
    large = int(sys.argv[2]) if len(sys.argv) > 2 else 100003
    rank, world = init()
    transport = dist.registry.current().world.transport
    path = os.path.join(directory, f"rank{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"tcp": transport.tcp_endpoint, "ipc": transport.ipc_endpoint, "pid": os.getpid()}, f)
    os.replace(path + ".tmp", path)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(directory, "go")):
        if time.monotonic() > deadline:
            sys.exit(f"rank {rank}: no go signal within 60 s")
        time.sleep(0.02)
    run = Runner(rank, world)
    section_smoke(run, rank, world, large)
    run.finish()


if __name__ == "__main__":
    main()
