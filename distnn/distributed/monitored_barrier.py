"""``monitored_barrier`` as torch.distributed's (gloo's ``monitoredBarrier``): every
other rank reports to rank 0, which waits at most ``timeout`` and then names the
rank(s) that did not arrive, in torch's words; only once all have does it release
them. A rank that arrived but is not released (rank 0 failed, or never came) fails
too. A barrier that passes leaves the group as any collective does."""

import time
from datetime import timedelta

from .errors import DistributedError, DistributedTimeoutError
from .registry import resolve_group
from .work import seconds

_POLL_S = 0.5  # how often a wait for arrivals looks at liveness (a message ends it at once)
# Other ranks wait this much longer than ``timeout`` for rank 0's release: rank 0 gives its
# verdict at its own deadline, which those that arrived first would otherwise race.
RELEASE_GRACE_S = 1.0


def monitored_barrier(group=None, timeout=None, wait_all_ranks=False):
    """Like ``barrier``, but rank 0 raises within ``timeout`` (a timedelta or seconds; by
    default the group's timeout) naming the first rank that did not arrive, or with
    ``wait_all_ranks=True`` every such rank."""
    g = resolve_group(group)
    timeout = g.world.timeout if timeout is None else seconds(timeout)
    if timeout <= 0:
        raise ValueError(f"Expect: a positive timeout, Actual: {timedelta(seconds=timeout)}")

    def run(ex):
        if ex.size == 1:
            return
        if ex.rank == 0:
            _collect(ex, time.monotonic() + timeout, timeout, wait_all_ranks)
        else:
            _report(ex, time.monotonic() + timeout + RELEASE_GRACE_S)
    g.submit("monitored_barrier", run, False)


def _collect(ex, deadline, timeout, wait_all_ranks):
    """Rank 0: wait for every other rank's report, then release them all."""
    missing = _wait_for(ex, range(1, ex.size), deadline)
    if missing:
        if not wait_all_ranks:
            missing = missing[:1]
        ranks = ", ".join(str(ex.global_rank(p)) for p in missing)
        raise DistributedTimeoutError(f"[Rank {ex.world.rank}]: Rank{'s' if len(missing) > 1 else ''} {ranks} "
                                      f"failed to pass monitoredBarrier in {round(timeout * 1000)} ms")
    for peer in range(1, ex.size):
        ex.recv_array(peer, 0)  # checks it is this collective
    for peer in range(1, ex.size):
        ex.send(peer, ex.empty)
    ex.finish()


def _report(ex, deadline):
    """Any other rank: report to rank 0, then wait for its release until ``deadline``."""
    started = time.monotonic()
    ex.send(0, ex.empty)
    try:
        if _wait_for(ex, [0], deadline, watch=True):
            raise DistributedTimeoutError(f"rank {ex.world.rank}: no release from rank {ex.global_rank(0)} "
                                          f"within {round((time.monotonic() - started) * 1000)} ms")
        ex.recv_array(0, 0)
    except DistributedError as exc:
        kind = DistributedTimeoutError if isinstance(exc, DistributedTimeoutError) else DistributedError
        raise kind(f"Rank {ex.world.rank} successfully reached monitoredBarrier, but received errors while "
                   f"waiting for send/recv from rank {ex.global_rank(0)}. Please check rank "
                   f"{ex.global_rank(0)} logs for faulty rank.\n Original exception: \n{exc}") from None
    ex.finish()


def _wait_for(ex, peers, deadline, watch=False):
    """Wait until a message of this group has arrived from each of ``peers`` (group
    ranks), or the deadline; returns those still missing. A failed peer's abort notice
    raises at once; with ``watch``, so does a peer that died or left."""
    transport = ex.transport
    missing = list(peers)
    while True:
        transport.drain()
        missing = [p for p in missing if not transport.has_message(ex.group_id, ex.global_rank(p), "coll")]
        remaining = deadline - time.monotonic()
        if not missing or remaining <= 0:
            return missing
        if watch:
            transport.check_alive([ex.global_rank(p) for p in missing], ex.describe())
        transport.wait_readable(min(remaining, _POLL_S) * 1000)
