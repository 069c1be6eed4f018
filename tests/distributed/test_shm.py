"""The shared-memory all-reduce among ranks on one host (distnn/distributed/shm.py, shm_regions.py
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

from distnn.distributed import shm_regions
from distnn.distributed.errors import DistributedError
from multiproc import check_cases, free_port, run_ranks, shm_files

WORKER = "tests/distributed/workers/collectives.py"
pytestmark = pytest.mark.skipif(not shm_regions.available(), reason="no writable /dev/shm")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size, off, switch", [
    (2, (), "DISTNN_SHM"), (3, (), "DISTNN_SHM"), (4, (), "DISTNN_SHM"), (2, (1,), "DISTNN_SHM"),
    (3, (0, 2), "DISTNN_SHM"), (2, (0,), "DISTNN_SHM_SIGNAL"), (3, (2,), "DISTNN_SHM_SIGNAL")],
    ids=["2", "3", "4", "2-rank1-off", "3-ranks0,2-off", "2-rank0-no-signals", "3-rank2-no-signals"])
def test_all_reduce_through_shared_memory_or_sockets(world_size, off, switch):
    """With DISTNN_SHM=0 on some ranks, every rank takes the socket ring instead (a
    rank alone on the other path would wait for messages nobody sends); with
    DISTNN_SHM_SIGNAL=0, every rank orders the staged steps by messages."""
    port, token = free_port(), f"shm-{uuid.uuid4().hex}"
    shm_on = not off or switch != "DISTNN_SHM"
    signals_on = not off and shm_regions.signals_available()
    per_rank = {r: {switch: "0"} for r in off}
    results = run_ranks(WORKER, world_size, ["shm"], timeout=100, port=port, token=token,
                        env={"EXPECT_SHM": "1" if shm_on else "0", "EXPECT_SIGNALS": "1" if signals_on else "0"},
                        per_rank_env=per_rank)
    hashes = check_cases(results, min_cases=10)
    assert "shm.path" in hashes and any(name.startswith("shm.all_reduce.product") for name in hashes)
    assert ("shm.signals" in hashes) == shm_on
    assert shm_files(token, port) == []


def test_available_honours_the_switch(monkeypatch):
    monkeypatch.setenv("DISTNN_SHM", "0")
    assert not shm_regions.available()
    monkeypatch.setenv("DISTNN_SHM", "1")
    assert shm_regions.available() == os.access(shm_regions.SHM_DIR, os.W_OK)


@pytest.fixture
def regions(request):
    job = uuid.uuid4().hex[:16]
    made = []

    def make(rank, members):
        group = shm_regions.SharedMemoryGroup(job, 1, 0, members, rank, signals=True)
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
        f.truncate(shm_regions.REGION_BYTES)
    try:
        os.chmod(path, 0o644)
        with pytest.raises(DistributedError, match=r"mode 0o644.*expected uid \d+, mode 0o600"):
            group.peer(1, 0, np.dtype(np.float32), 4)
        os.chmod(path, 0o600)
        os.truncate(path, 4096)
        with pytest.raises(DistributedError, match=f"4096 bytes; expected .* {shm_regions.REGION_BYTES} bytes"):
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
    orphan = os.path.join(shm_regions.SHM_DIR, f"distnn-{job}-1-0-0-{dead_pid}")
    alive = os.path.join(shm_regions.SHM_DIR, f"distnn-{job}-1-0-1-{os.getpid()}")
    for path in (orphan, alive):
        open(path, "wb").close()
    try:
        regions(0, [(0, os.getpid())]).own(0, np.dtype(np.uint8), 1)  # creating a region sweeps
        assert not os.path.exists(orphan) and os.path.exists(alive)
    finally:
        for path in (orphan, alive):
            if os.path.exists(path):
                os.unlink(path)


needs_signals = pytest.mark.skipif(not shm_regions.signals_available(), reason="signals need Linux on x86-64")


def _signalling_pair(regions):
    me = os.getpid()
    a, b = regions(0, [(0, me), (1, me)]), regions(1, [(0, me), (1, me)])
    for group in (a, b):
        group.own(0, np.dtype(np.uint8), 1)
    a.peer(1, 0, np.dtype(np.uint8), 1)
    b.peer(0, 0, np.dtype(np.uint8), 1)
    return a, b


def _never(calls):
    def check():
        calls.append(1)
        raise AssertionError("check() ran: the waiter slept through the signal")
    return check


@needs_signals
def test_a_signal_carries_its_collective_and_a_peer_at_most_one_ahead(regions):
    a, b = _signalling_pair(regions)
    assert a.post(7, 1234, b"header-7") == 1
    assert b.wait(0, 1, _never([])) == (7, 1234) and b.signal_header(0, 1) == b"header-7"
    assert a.post(8, 99, b"header-8") == 2  # a moved on: its slot for signal 1 is the other one
    assert b.wait(0, 1, _never([])) == (7, 1234) and b.signal_header(0, 1) == b"header-7"
    assert b.wait(0, 2, _never([])) == (8, 99) and b.signal_header(0, 2) == b"header-8"
    assert b.latest_signal(0, 8) == b"header-8" and b.latest_signal(0, 7) is None
    # a slot's header is written only when it changes, and a shorter one leaves no tail
    assert a.post(9, 1234, b"header-7") == 3 and b.signal_header(0, 3) == b"header-7"
    assert a.post(10, 5, b"h10") == 4 and b.wait(0, 4, _never([])) == (10, 5)
    assert b.signal_header(0, 4) == b"h10"
    b.post(8, 99, b"x")
    b.post(9, 5, b"y")
    assert b.latest_signal(0, 10) == b"h10"
    b.post(10, 5, b"z")
    b.post(11, 5, b"z")
    assert b.latest_signal(0, 10) is None  # a's latest is not newer than b's own


@needs_signals
def test_a_missing_signal_ends_in_check_and_a_late_one_wakes_the_sleeper(regions, monkeypatch):
    a, b = _signalling_pair(regions)
    monkeypatch.setattr(shm_regions, "WAKE_CHECK_S", 0.01)
    b.spin_s = 0.0

    def give_up():
        raise TimeoutError("no signal")
    with pytest.raises(TimeoutError, match="no signal"):
        b.wait(0, 1, give_up)
    # A sleeper is woken by the post itself (the futex), not by its next check: with a
    # check interval far past the test's timeout, only the wake ends the wait.
    monkeypatch.setattr(shm_regions, "WAKE_CHECK_S", 600.0)
    import threading
    threading.Timer(0.05, a.post, (3, 4, b"late")).start()
    calls = []
    assert b.wait(0, 1, _never(calls)) == (3, 4) and calls == []


def test_spin_time_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DISTNN_SHM_SPIN_US", "250")
    assert shm_regions.spin_seconds(1) == pytest.approx(250e-6)
    assert shm_regions.spin_seconds(len(os.sched_getaffinity(0)) + 1) == 0.0  # more ranks than cores: never spin
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("DISTNN_SHM_SPIN_US", bad)
        with pytest.raises(DistributedError, match="DISTNN_SHM_SPIN_US must be a number of microseconds >= 0"):
            shm_regions.spin_seconds(1)


def test_signals_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("DISTNN_SHM_SIGNAL", "0")
    assert not shm_regions.signals_available()
