"""launcher/summary.py: which failure is the root cause, and what its lines say."""

import pytest

from launcher.summary import AttemptRecord, describe_failure, format_summary, root_cause_first
from launcher.workers import WorkerFailure


def failure(rank, node=0, time=0.0, returncode=1, error=None, tail=(), frozen=None):
    return WorkerFailure(rank=rank, local_rank=rank % 2, node_rank=node, pid=100 + rank, returncode=returncode,
                         time=time, error=error, stderr_tail=list(tail), frozen_state=frozen)


TIMED_OUT = {"exc_type": "DistributedTimeoutError", "message": "waiting for rank(s) [2]", "traceback": "T\n"}
PEER_GONE = {"exc_type": "DistributedError", "message": "rank 0 is gone", "traceback": "T\n"}
PEER_TIMED_OUT = {"exc_type": "DistributedError", "message": "rank 1: rank 0 failed: rank 0: timed out after 4.0s",
                  "traceback": "T\n"}  # a peer's timeout, heard as its abort notice


@pytest.mark.parametrize("times, trigger, expected", [
    ({1: 5.0, 2: 3.0, 3: 4.0}, None, [2, 3, 1]),  # earliest exit first
    ({0: 5.0, 3: 1.0}, (0, 0), [0, 3]),  # node 0 heard of node 0's failure first; node 1's clock is not comparable
    ({2: 5.0, 3: 1.0}, (1, 2), [3, 2]),  # within the triggering node, the earliest
])
def test_root_cause_first(times, trigger, expected):
    failures = [failure(rank, node=rank // 2, time=t) for rank, t in times.items()]
    assert [f.rank for f in root_cause_first(failures, trigger)] == expected


@pytest.mark.parametrize("kinds, trigger, expected", [
    # rank 0 timed out first, but rank 3 failed by itself
    ({0: (1.0, TIMED_OUT), 3: (2.0, None)}, (0, 0), [3, 0]),
    ({0: (1.0, TIMED_OUT), 1: (2.0, PEER_GONE), 3: (3.0, TIMED_OUT)}, (0, 0), [1, 0, 3]),
    # a rank found stopped beats every failure, timeouts and their fallout alike
    ({0: (1.0, TIMED_OUT), 1: (2.0, PEER_GONE), 2: (9.0, "T"), 3: (3.0, TIMED_OUT)}, (0, 0), [2, 1, 0, 3]),
    ({0: (1.0, TIMED_OUT), 3: (9.0, "t")}, (0, 0), [3, 0]),
    ({1: (1.0, PEER_TIMED_OUT), 2: (2.0, PEER_GONE)}, (0, 1), [2, 1]),
    # among timeouts only, the triggering node's earliest still comes first
    ({0: (5.0, TIMED_OUT), 3: (1.0, TIMED_OUT)}, (0, 0), [0, 3]),
])
def test_root_cause_prefers_stopped_ranks_then_failures_then_timeouts(kinds, trigger, expected):
    failures = [failure(rank, node=rank // 2, time=t, error=None if kind in ("T", "t") else kind,
                        frozen=kind if kind in ("T", "t") else None) for rank, (t, kind) in kinds.items()]
    assert [f.rank for f in root_cause_first(failures, trigger)] == expected


@pytest.mark.parametrize("returncode, error, tail, expected", [
    (1, {"exc_type": "ValueError", "message": "bad", "traceback": "Traceback\n  File x\nValueError: bad\n"}, [],
     ["rank 3 (node 1, local rank 1, pid 103): exit code 1", "  error: ValueError: bad",
      "  last 3 lines of its traceback:", "    Traceback", "      File x", "    ValueError: bad"]),
    (-9, None, [], ["rank 3 (node 1, local rank 1, pid 103): killed by signal SIGKILL (9)",
                    "  (it wrote nothing to stderr)"]),
    (-11, None, ["Fatal Python error: Segmentation fault"],
     ["rank 3 (node 1, local rank 1, pid 103): killed by signal SIGSEGV (11)", "  last 1 line of its stderr:",
      "    Fatal Python error: Segmentation fault"]),
])
def test_describe_failure(returncode, error, tail, expected):
    lines = describe_failure(failure(3, node=1, returncode=returncode, error=error, tail=tail))
    assert [lines[0]] + lines[2:] == expected


def test_summary_of_several_attempts_round_trips_through_json():
    records = [AttemptRecord(0, [failure(1), failure(0, returncode=2)], [2, 3]),
               AttemptRecord(1, [], [0, 1], reason="node 1's launcher is gone")]
    records = [AttemptRecord.from_json(r.to_json()) for r in records]
    text = format_summary(records, max_restarts=1, log_dir="/logs")
    assert "job failed after 2 attempts (--max-restarts 1)" in text
    assert "--- attempt 0 (DISTNN_RESTART_COUNT=0) ---\nroot cause: rank 1 " in text
    assert "also failed: rank 0 (node 0): exit code 2\nstopped by the launcher: ranks 2, 3" in text
    assert "reason: node 1's launcher is gone\nstopped by the launcher: ranks 0, 1" in text
    assert "per-rank logs: /logs/attempt_<n>/rank_<r>/" in text


def test_summary_names_the_stopped_rank_and_the_ranks_that_waited_on_it():
    failures = root_cause_first([failure(0, time=1.0, error=TIMED_OUT), failure(1, time=2.0, error=PEER_GONE),
                                 failure(2, time=9.0, returncode=-15, frozen="T")], (0, 0))
    text = format_summary([AttemptRecord(0, failures, [3])], max_restarts=0)
    assert ("root cause: rank 2 (node 0, local rank 0, pid 102): stopped (SIGSTOP or another stop signal, "
            "state T) and made no progress; rank 0 timed out waiting\n") in text
    assert "also failed: rank 1 (node 0): exit code 1 (DistributedError)\n" in text
    assert "also failed: rank 0 (node 0): exit code 1 (DistributedTimeoutError)\n" in text
    assert "suspect" not in text


def test_summary_of_timeouts_only_names_the_ranks_still_running_as_suspects():
    text = format_summary([AttemptRecord(0, [failure(0, error=TIMED_OUT), failure(1, time=1.0, error=TIMED_OUT)],
                                         [2])], max_restarts=0)
    assert "root cause: rank 0 " in text and "timed out waiting" not in text
    assert ("stopped by the launcher: rank 2\nsuspect: rank 2, still running when every failed rank had timed "
            "out: the others may have waited on it\n") in text
