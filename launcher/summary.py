"""The failure summary: for every attempt, the root-cause rank (a worker found
stopped, else the earliest failure that is not a timeout, else the earliest
timeout), its exit code or signal, the end of its traceback (or of its
stderr), the other ranks that failed and the ones the launcher stopped.
"""

import time
from dataclasses import dataclass, field

from .workers import WorkerFailure

TRACEBACK_LINES = 12
_RULE = "=" * 72


@dataclass
class AttemptRecord:
    restart_count: int
    failures: list = field(default_factory=list)  # WorkerFailures, root cause first
    stopped: list = field(default_factory=list)  # ranks the launcher stopped
    reason: str | None = None  # a failure that is not a worker's (a node lost, a signal)

    def to_json(self):
        return {"restart_count": self.restart_count, "failures": [f.to_json() for f in self.failures],
                "stopped": self.stopped, "reason": self.reason}

    @classmethod
    def from_json(cls, record):
        return cls(record["restart_count"], [WorkerFailure.from_json(f) for f in record["failures"]],
                   record["stopped"], record["reason"])


def is_timeout(failure):
    """Whether the worker gave up waiting (its error's type names a timeout, e.g.
    DistributedTimeoutError, or its message says it timed out, as when a peer's timeout
    reached it as an abort notice): it waited on another rank, the likelier culprit."""
    error = failure.error or {}
    return "timeout" in str(error.get("exc_type") or "").lower() or "timed out" in str(error.get("message") or "")


def _suspicion(failure):
    """0: found stopped, so everyone waited on it; 1: failed by itself; 2: timed out waiting."""
    if failure.frozen_state is not None:
        return 0
    return 2 if is_timeout(failure) else 1


def root_cause_first(failures, trigger=None):
    """Failures ordered for the summary: the root cause first, then by suspicion and time.

    A worker found stopped comes before any failure, and a timeout after every
    other failure: which rank gave up waiting first says little about whom they
    all waited on. Among equals, ``trigger``, the (node rank, rank) whose failure
    was noticed first, decides: within a node, exit times decide; across nodes,
    clocks differ, so the node whose failure reached node 0 first wins."""
    ordered = sorted(failures, key=lambda f: (_suspicion(f), f.time))
    if trigger is not None and ordered:
        best = _suspicion(ordered[0])
        first_node = [f for f in ordered if f.node_rank == trigger[0] and _suspicion(f) == best]
        if first_node:
            ordered.remove(first_node[0])
            ordered.insert(0, first_node[0])
    return ordered


def _ranks(ranks):
    ranks = sorted(ranks)
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def describe_failure(failure, timed_out=()):
    """Lines naming one failed worker, its exit, its error and the end of its traceback;
    ``timed_out``: the ranks that gave up waiting (on it, presumably)."""
    waiting = f"; {_ranks(timed_out)} timed out waiting" if timed_out else ""
    lines = [f"rank {failure.rank} (node {failure.node_rank}, local rank {failure.local_rank}, "
             f"pid {failure.pid}): {failure.exit_description}{waiting}",
             f"  at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(failure.time))}"]
    error = failure.error
    if error and error.get("traceback"):
        lines.append(f"  error: {error.get('exc_type')}: {error.get('message')}")
        tail, what = str(error["traceback"]).rstrip("\n").splitlines(), "traceback"
    else:
        tail, what = failure.stderr_tail, "stderr"
    tail = tail[-TRACEBACK_LINES:]
    if tail:
        lines.append(f"  last {len(tail)} line{'s' if len(tail) > 1 else ''} of its {what}:")
        lines.extend(f"    {line}" for line in tail)
    else:
        lines.append("  (it wrote nothing to stderr)")
    return lines


def _attempt_lines(record):
    lines = []
    if record.failures:
        root, others = record.failures[0], record.failures[1:]
        timed_out = [] if is_timeout(root) else [f.rank for f in others if is_timeout(f)]
        lines.append("root cause: " + "\n".join(describe_failure(root, timed_out)))
        for other in others:
            error = f" ({other.error['exc_type']})" if (other.error or {}).get("exc_type") else ""
            lines.append(f"also failed: rank {other.rank} (node {other.node_rank}): {other.exit_description}{error}")
    if record.reason:
        lines.append(f"reason: {record.reason}")
    if record.stopped:
        lines.append(f"stopped by the launcher: {_ranks(record.stopped)}")
        if record.failures and is_timeout(record.failures[0]):
            lines.append(f"suspect{'s' if len(record.stopped) > 1 else ''}: {_ranks(record.stopped)}, still "
                         f"running when every failed rank had timed out: the others may have waited on "
                         f"{'one of them' if len(record.stopped) > 1 else 'it'}")
    return lines


def format_summary(records, max_restarts, log_dir=None):
    """The block printed when the job fails; one section per attempt, the last one first in importance."""
    attempts = len(records)
    head = f"distnn launcher: job failed after {attempts} attempt{'s' if attempts > 1 else ''}"
    if max_restarts:
        head += f" (--max-restarts {max_restarts})"
    out = [_RULE, head]
    for record in records:
        if attempts > 1:
            out.append(f"--- attempt {record.restart_count} (DISTNN_RESTART_COUNT={record.restart_count}) ---")
        for line in _attempt_lines(record):
            out.extend(line.splitlines())
    if log_dir:
        out.append(f"per-rank logs: {log_dir}/attempt_<n>/rank_<r>/")
    out.append(_RULE)
    return "\n".join(out)
