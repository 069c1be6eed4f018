"""Object collectives (distnn/distributed/object_collectives.py) on in-process worlds:
broadcast_object_list from every source and all_gather_object carry every msgpack
type (tuples kept as tuples), on one host, over sockets and on mixed hosts.
test_collective_ops.py runs them across real processes."""

import pytest

import distnn.distributed as dist
from collective_check import layout, one_host, sockets
from distnn.distributed.inprocess import run_threads

OBJECTS = [None, 3, -1.5, "text", b"\x00bytes", [1, (2, "three")], {"k": [1, 2], 5: None}, (True, False), ""]


@pytest.mark.parametrize("world_size, hosts", [one_host(1), one_host(2), sockets(3), layout(4, [0, 0, 1, 1])])
def test_object_collectives(world_size, hosts):
    def body(rank):
        broadcasts = []
        for src in range(world_size):
            objs = [OBJECTS[(rank + i) % len(OBJECTS)] for i in range(3)] if rank == src else [None] * 3
            dist.broadcast_object_list(objs, src=src)
            broadcasts.append(objs)
        gathered = []
        dist.all_gather_object(gathered, {"rank": rank, "payload": OBJECTS[rank % len(OBJECTS)], "pad": "x" * rank})
        return broadcasts, gathered
    for rank, (broadcasts, gathered) in enumerate(run_threads(world_size, body, hosts)):
        for src, objs in enumerate(broadcasts):
            assert objs == [OBJECTS[(src + i) % len(OBJECTS)] for i in range(3)], f"rank {rank}, from {src}"
        assert gathered == [{"rank": q, "payload": OBJECTS[q % len(OBJECTS)], "pad": "x" * q}
                            for q in range(world_size)], f"all_gather_object on rank {rank}"
