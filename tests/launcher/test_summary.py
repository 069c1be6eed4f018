"""launcher/summary.py: which failure is the root cause, and what its lines say."""

import pytest

from launcher.summary import AttemptRecord, describe_failure, format_summary, root_cause_first
from launcher.workers import WorkerFailure


def failure(rank, node=0, time=0.0, returncode=1, error=None, tail=()):
    return WorkerFailure(rank=rank, local_rank=rank % 2, node_rank=node, pid=100 + rank, returncode=returncode,
                         time=time, error=error, stderr_tail=list(tail))


@pytest.mark.parametrize("times, trigger, expected", [
    ({1: 5.0, 2: 3.0, 3: 4.0}, None, [2, 3, 1]),  # earliest exit first
    ({0: 5.0, 3: 1.0}, (0, 0), [0, 3]),  # node 0 heard of node 0's failure first; node 1's clock is not comparable
    ({2: 5.0, 3: 1.0}, (1, 2), [3, 2]),  # within the triggering node, the earliest
])
def test_root_cause_first(times, trigger, expected):
    failures = [failure(rank, node=rank // 2, time=t) for rank, t in times.items()]
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
