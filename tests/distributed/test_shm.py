"""The shared-memory all-reduce among ranks on one host (distnn/distributed/shm.py
and ``shm_all_reduce`` in collectives.py): results on 2-4 real processes, the
socket fallback when any rank turns it off, no file left in /dev/shm, and the
region checks in this process."""

import errno
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from distnn.distributed import shm
from distnn.distributed.errors import DistributedError
from multiproc import check_cases, free_port, run_ranks, shm_files

WORKER = "tests/distributed/workers/collectives.py"
pytestmark = pytest.mark.skipif(not shm.available(), reason="no writable /dev/shm")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size, off", [(2, ()), (3, ()), (4, ()), (2, (1,)), (3, (0, 2))],
                         ids=["2", "3", "4", "2-rank1-off", "3-ranks0,2-off"])
def test_all_reduce_through_shared_memory_or_sockets(world_size, off):
    """With DISTNN_SHM=0 on some ranks, every rank takes the socket ring instead (a
    rank alone on the other path would wait for signals nobody sends)."""
    port, token = free_port(), f"shm-{uuid.uuid4().hex}"
    expect = "0" if off else "1"
    per_rank = {r: {"DISTNN_SHM": "0"} for r in off}
    results = run_ranks(WORKER, world_size, ["shm"], timeout=100, port=port, token=token,
                        env={"EXPECT_SHM": expect}, per_rank_env=per_rank)
    hashes = check_cases(results, min_cases=10)
    assert "shm.path" in hashes and any(name.startswith("shm.all_reduce.product") for name in hashes)
    assert shm_files(token, port) == []


def test_available_honours_the_switch(monkeypatch):
    monkeypatch.setenv("DISTNN_SHM", "0")
    assert not shm.available()
    monkeypatch.setenv("DISTNN_SHM", "1")
    assert shm.available() == os.access(shm.SHM_DIR, os.W_OK)


@pytest.fixture
def regions(request):
    job = uuid.uuid4().hex[:16]
    made = []

    def make(rank, members):
        group = shm.SharedMemoryGroup(job, 1, 0, members, rank)
        made.append(group)
        return group
    yield make
    for group in made:
        group.close()


def test_peer_sees_owner_data_and_the_name_goes_away(regions):
    me = os.getpid()
    owner, peer = regions(0, [(0, me), (1, me)]), None
    owner.own(1, np.dtype(np.float32), 5)[...] = np.arange(5)
    peer = regions(1, [(0, me), (1, me)])
    assert peer.peer(0, 1, np.dtype(np.float32), 5).tolist() == [0, 1, 2, 3, 4]
    assert os.path.exists(owner.paths[0])
    owner.unlink()
    assert not os.path.exists(owner.paths[0])
    owner.own(0, np.dtype(np.int64), 2)[...] = 7  # the mapping outlives the name
    assert peer.peer(0, 0, np.dtype(np.int64), 2).tolist() == [7, 7]


def test_a_missing_or_foreign_region_is_refused(regions, tmp_path):
    me = os.getpid()
    group = regions(0, [(0, me), (1, me)])
    with pytest.raises(DistributedError, match="cannot open peer's shared memory"):
        group.peer(1, 0, np.dtype(np.float32), 4)
    path = group.paths[1]
    with open(path, "wb") as f:
        f.truncate(2 * shm.HALF_BYTES)
    try:
        os.chmod(path, 0o644)
        with pytest.raises(DistributedError, match=r"mode 0o644.*expected uid \d+, mode 0o600"):
            group.peer(1, 0, np.dtype(np.float32), 4)
        os.chmod(path, 0o600)
        os.truncate(path, 4096)
        with pytest.raises(DistributedError, match=f"4096 bytes; expected .* {2 * shm.HALF_BYTES} bytes"):
            group.peer(1, 0, np.dtype(np.float32), 4)
    finally:
        os.unlink(path)


def test_a_full_dev_shm_is_a_clear_error(regions, monkeypatch):
    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    group = regions(0, [(0, os.getpid())])
    with pytest.raises(DistributedError, match=r"/dev/shm has no room for \d+ more bytes.*DISTNN_SHM=0"):
        group.own(0, np.dtype(np.float32), 4)
    assert not os.path.exists(group.paths[0])


def test_orphans_of_dead_processes_are_removed(regions):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    job = uuid.uuid4().hex[:16]
    orphan = os.path.join(shm.SHM_DIR, f"distnn-{job}-1-0-0-{dead_pid}")
    alive = os.path.join(shm.SHM_DIR, f"distnn-{job}-1-0-1-{os.getpid()}")
    for path in (orphan, alive):
        open(path, "wb").close()
    try:
        regions(0, [(0, os.getpid())]).own(0, np.dtype(np.uint8), 1)  # creating a region sweeps
        assert not os.path.exists(orphan) and os.path.exists(alive)
    finally:
        for path in (orphan, alive):
            if os.path.exists(path):
                os.unlink(path)
