"""Failures across processes (distnn/distributed/process_group.py, transport.py):
ranks that call mismatched collectives, a rank that never joins, a rank
SIGKILLed mid-collective, and point-to-point orders torch allows. Every rank must
end with a clear error, fast, and no process may be left. Worker: workers/faults.py."""

import uuid

import pytest

from multiproc import (collect, format_results, free_port, json_lines, kill_tree, reports, run_ranks, shm_files,
                       start_rank)

WORKER = "tests/distributed/workers/faults.py"
FIELD = {"shape": "shape", "empty": "shape", "dtype": "dtype", "op": "op", "collective": "op", "src": "src",
         "dst": "dst"}


MISMATCHES = [  # (kind, elements, world_size, the rank that differs, how the call is made)
    ("shape", 7, 3, 1, "sync"), ("shape", 100000, 3, 1, "sync"), ("shape", 100000, 2, 0, "sync"),
    ("dtype", 7, 3, 1, "sync"), ("dtype", 100000, 3, 1, "sync"),
    ("op", 7, 3, 1, "sync"), ("op", 100000, 3, 2, "sync"),
    ("collective", 7, 3, 1, "sync"), ("collective", 100000, 3, 1, "sync"),
    ("collective", 100000, 2, 0, "sync"),  # rank 0 is the broadcast root: done before anyone complains
    ("empty", 7, 3, 1, "sync"), ("empty", 100000, 2, 0, "sync"),
    ("shape", 7, 3, 1, "async"), ("dtype", 100000, 3, 2, "async"),
    ("shape", 7, 4, 1, "sync"), ("dtype", 7, 4, 3, "async"),  # recursive doubling: not all ranks meet
    # After a matching shared-memory all_reduce, steps are ordered by signals in the regions:
    # 2 ranks spin on them, 3 (more than the cores CI has) sleep on a futex.
    ("shape", 100000, 2, 0, "warm"), ("dtype", 100000, 3, 1, "warm"), ("op", 100000, 2, 1, "warm"),
    ("collective", 100000, 2, 1, "warm"),  # the socket broadcast's message ends the signal wait
    ("empty", 100000, 3, 2, "warm"), ("shape", 7, 2, 1, "warm"),
    # Ranks that disagree about the root: a root only sends, so without a check first
    # nobody would notice (two roots each finish with their own data).
    ("src", 7, 2, 1, "sync"), ("src", 7, 3, 2, "sync"), ("src", 100000, 3, 0, "sync"), ("src", 7, 4, 1, "async"),
    ("dst", 7, 2, 0, "sync"), ("dst", 100000, 3, 1, "sync"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind, n, world_size, odd, mode", MISMATCHES)
def test_mismatched_collective_fails_on_every_rank(kind, n, world_size, odd, mode):
    # Group timeout 60 s: a rank that hangs instead of failing shows as a slow error.
    port, token = free_port(), f"mismatch-{uuid.uuid4().hex}"
    results = run_ranks(WORKER, world_size, ["mismatch", kind, odd, n, mode], timeout=45, port=port, token=token,
                        env={"DISTNN_TEST_TIMEOUT": "60", "DISTNN_TEST_FAST_EXIT": "1"})
    got = reports(results)
    for rank, rep in got.items():
        context = f"rank {rank}: {rep}\n{format_results(results)[-3000:]}"
        assert rep.get("is_distributed") and not rep.get("is_timeout"), context
        message = rep["message"]
        assert message.startswith(f"rank {rank}:"), context
        peers = [f"rank {p}" for p in range(world_size) if p != rank]
        assert any(p in message for p in ([f"rank {odd}"] if rank != odd else peers)), context
        assert f"{FIELD[kind]} differs" in message, context
        assert rep["elapsed"] < 15, context
        assert rep.get("failed_work_ok", True), f"the failed Work handle hid its error: {context}"
    assert all(r.returncode == 0 for r in results), format_results(results)
    assert shm_files(token, port) == []


@pytest.mark.timeout(60)
def test_failed_ranks_exit_promptly():
    """Without the worker's fast exit: the library's own shutdown after a failure is bounded."""
    results = run_ranks(WORKER, 3, ["mismatch", "shape", 1, 100000], timeout=45,
                        env={"DISTNN_TEST_TIMEOUT": "60"})
    got = reports(results)
    assert all(rep.get("is_distributed") for rep in got.values()), format_results(results)
    for r in results:
        assert r.returncode == 0 and r.elapsed < 15, f"rank {r.rank} exited after {r.elapsed:.1f}s"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n, warm", [(7, False), (100000, False), (100000, True)],
                         ids=["direct", "large", "shm-signals"])
def test_late_rank_times_out_the_others_naming_it(n, warm):
    """Rank 2 arrives 3 s late with a 2 s group timeout: the others time out naming
    the rank they waited for; the late rank then hears of it. ``warm``: after one
    shared-memory all_reduce, so the wait is for a signal in rank 2's region."""
    results = run_ranks(WORKER, 3, ["slow", 2, 3, n] + (["warm"] if warm else []), timeout=45,
                        env={"DISTNN_TEST_TIMEOUT": "2", "DISTNN_TEST_FAST_EXIT": "1"})
    got = reports(results)
    for rank in (0, 1):
        rep = got[rank]
        assert rep.get("is_distributed") and "timed out after 2.0s" in rep["message"], rep
        assert rep["message"].startswith(f"rank {rank}:") and 1.5 < rep["elapsed"] < 8, rep
        if n == 7 or warm:  # every rank waits for every other directly
            assert "waiting for rank(s) [2]" in rep["message"], rep
    assert got[2].get("is_distributed") and got[2]["message"].startswith("rank 2:"), got[2]
    assert "timed out" in got[2]["message"], got[2]


@pytest.mark.timeout(60)
def test_reinitialise_after_destroy():
    results = run_ranks(WORKER, 3, ["reinit", 3], timeout=45, env={"DISTNN_TEST_TIMEOUT": "5"})
    assert all(r.returncode == 0 for r in results), format_results(results)
    for rank, rep in reports(results).items():
        assert rep.get("ok") is True, f"rank {rank}: {rep}"


@pytest.mark.timeout(60)
def test_init_can_be_retried_after_a_rendezvous_timeout():
    """Rank 0 comes up 2.5 s late; ranks 1 and 2 retry a 1 s init_process_group until it works."""
    results = run_ranks(WORKER, 3, ["retry_init", 2.5], timeout=45)
    for rank, rep in reports(results).items():
        assert rep.get("ok") is True, f"rank {rank}: {rep}\n{format_results(results)[-3000:]}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("missing", [2, 0])
def test_rank_that_never_joins(missing):
    port, world_size = free_port(), 3
    present = [r for r in range(world_size) if r != missing]
    procs = [start_rank(WORKER, r, world_size, port, ["join"], env={"DISTNN_TEST_TIMEOUT": "3"})
             for r in present]
    results = collect(procs, timeout=40, ranks=present)
    for rank, rep in reports(results).items():
        context = f"rank {rank}: {rep}"
        assert rep.get("is_timeout") and rep.get("is_distributed"), context
        assert f"rank {missing}" in rep["message"], context
        assert 2.5 < rep["elapsed"] < 15, context
    assert all(r.returncode == 0 and r.elapsed < 20 for r in results), format_results(results)


KILL_CASES = [  # (collective, elements, victim reaped at once, shared memory on)
    pytest.param("all_reduce", 1000, True, True, id="direct-reaped"),
    pytest.param("all_reduce", 25000, True, False, id="ring-reaped"),  # segments small enough to copy
    pytest.param("all_reduce", 1000000, True, False, id="ring-large-reaped"),  # zero-copy segments in flight
    pytest.param("all_reduce", 1000000, True, True, id="shm-reaped"),
    pytest.param("all_reduce", 3000000, False, True, id="shm-unreaped"),  # several staging steps
    pytest.param("broadcast", 1000000, True, True, id="chain-reaped"),
    pytest.param("all_reduce", 1000, False, True, id="direct-unreaped"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("collective, n, reaped, shared_memory", KILL_CASES)
def test_sigkilled_rank_fails_the_others_fast(collective, n, reaped, shared_memory):
    """Rank 1 of 3 SIGKILLs itself 10 ms into its 4th collective (of a loop). Group
    timeout 10 s; the others must fail well within it, naming rank 1. ``reaped``: the
    dead process is waited for at once (as a launcher does); otherwise it stays a
    zombie until the survivors are done, as under a parent busy elsewhere. No region
    file is left in /dev/shm: the victim's name went after its first collective."""
    port, world_size, victim = free_port(), 3, 1
    token = f"kill-{uuid.uuid4().hex}"
    env = {"DISTNN_TEST_TIMEOUT": "10", "DISTNN_TEST_FAST_EXIT": "1", "DISTNN_SHM": "1" if shared_memory else "0"}
    procs = [start_rank(WORKER, r, world_size, port, ["kill", victim, collective, n], env=env, token=token)
             for r in range(world_size)]
    survivors = [r for r in range(world_size) if r != victim]
    if reaped:
        results = collect(procs, timeout=60)
    else:
        results = collect([procs[r] for r in survivors], timeout=60, ranks=survivors)
        results += collect([procs[victim]], timeout=5, ranks=[victim])
    by_rank = {r.rank: r for r in results}
    assert by_rank[victim].returncode == -9, format_results(results)
    killed_at = next(rec["killing_at"] for rec in json_lines(by_rank[victim].stdout) if "killing_at" in rec)
    got = reports([by_rank[r] for r in survivors])
    for rank, rep in got.items():
        context = f"rank {rank}: {rep}"
        assert rep.get("is_distributed") and not rep.get("is_timeout"), context
        assert f"rank {victim}" in rep["message"], context
        assert rep["at"] - killed_at < 5, context
    assert shm_files(token, port) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", ["irecv_then_isend", "irecv_then_barrier"])
def test_posted_irecv_does_not_block_later_calls(pattern):
    """torch allows irecv before the matching send is possible (ring exchange posting
    its receive first; a receive pending across a barrier). Group timeout 2 s."""
    results = run_ranks(WORKER, 2, ["p2p", pattern], timeout=40,
                        env={"DISTNN_TEST_TIMEOUT": "2", "DISTNN_TEST_FAST_EXIT": "1"})
    for rank, rep in reports(results).items():
        assert rep.get("ok") is True, f"rank {rank}: {rep}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n, shm", [(100000, "0"), (100000, "1"), (7, "1")])
def test_a_stopped_rank_is_named_by_every_rank_that_times_out(n, shm):
    """A ring waits on its neighbour, so without a look at the peers every rank would blame
    a different, healthy one: each timeout names the rank that a signal stopped."""
    port, world_size, victim = free_port(), 4, 2
    env = {"DISTNN_TEST_TIMEOUT": "4", "DISTNN_SHM": shm}
    procs = [start_rank(WORKER, r, world_size, port, ["stop", victim, n], env=env) for r in range(world_size)]
    try:
        others = collect([p for r, p in enumerate(procs) if r != victim], timeout=40,
                         ranks=[r for r in range(world_size) if r != victim])
    finally:
        kill_tree(procs[victim], grace=0)
    got = reports(others)
    for rank, rep in got.items():  # a timeout, or the abort notice of the rank that timed out first
        assert rep.get("is_distributed") and "timed out" in rep["message"], f"rank {rank}: {rep}"
        assert f"rank {victim} (pid {procs[victim].pid}) is stopped" in rep["message"], rep
