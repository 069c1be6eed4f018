"""The two-level all-reduce of a group that spans several hosts with several ranks
on some of them: reduce within each host through shared memory, all-reduce
across hosts over the sockets, and copy the result back within each host.

Within a host the members stage their data (``shm.Staging``) and split it into
``lanes`` chunks, as many as the fewest ranks any host has; the member with
local index k (lane k) reduces chunk k from every member of its host. Lane k of
every host then all-reduces that chunk with its counterparts on the other hosts,
so ``lanes`` streams cross the network at once, each carrying 1/lanes of the
data, and every byte crosses it once per host rather than once per rank as in a
flat ring. Lane k stages its result, and every member copies chunk k from lane
k. Each chunk is reduced once, in a fixed order, and copied everywhere, so every
rank ends with bit-identical values.

It is chosen for buffers past the direct-exchange size in a group whose members
all can use shared memory and did not set ``DISTNN_HIERARCHICAL=0`` (every rank
publishes its setting at the rendezvous, so all make the same choice).
"""

import os

from . import collectives, locality


def enabled():
    """This rank's ``DISTNN_HIERARCHICAL`` (default on), published at the rendezvous."""
    return os.environ.get("DISTNN_HIERARCHICAL", "1").strip().lower() not in ("0", "false", "no", "off")


def host_layout(members):
    """The group's hosts as lists of member indexes (in order of their first member),
    when the two-level all-reduce applies to members with rendezvous entries
    ``members``: several hosts, one with several ranks, every member able to use shared
    memory and willing. Else None."""
    keys = [locality.memory_key(m) for m in members]
    if None in keys or not all(m.get("hierarchical") is True for m in members):
        return None
    hosts = {}
    for index, key in enumerate(keys):
        hosts.setdefault(key, []).append(index)
    layout = list(hosts.values())
    if len(layout) < 2 or max(len(h) for h in layout) < 2:
        return None
    return layout


class Hierarchy:
    """A group's host layout as seen from one member: its host's members, its local
    index, the lanes, and the shared-memory regions of its host's members, made by
    ``regions_for(host, local)``."""

    def __init__(self, layout, rank, regions_for):
        self.host = next(h for h in layout if rank in h)
        self.local = self.host.index(rank)
        self.lanes = min(len(h) for h in layout)
        self.regions = regions_for(self.host, self.local)
        # lane k's members: the member of local index k on every host, in host order
        self.lane_members = [h[self.local] for h in layout] if self.local < self.lanes else None


def all_reduce_any(ex, buf, op):
    """``collectives.all_reduce``, or the two-level ``all_reduce`` where it applies: a group
    laid out in hosts (``ex.hierarchy``) and a buffer past the direct-exchange size."""
    if ex.hierarchy is not None and ex.size > 1 and buf.nbytes > collectives.direct_max_bytes(ex):
        return all_reduce(ex, buf, op, ex.hierarchy)
    return collectives.all_reduce(ex, buf, op)


def all_reduce(ex, buf, op, hierarchy):
    """Reduce flat ``buf`` in place with reduction ``op`` across exchange ``ex``'s group,
    laid out as ``hierarchy``."""
    host_ex = ex.subset(hierarchy.host, hierarchy.regions)
    lane_ex = ex.subset(hierarchy.lane_members) if hierarchy.lane_members is not None else None
    staging = host_ex.shm
    step = staging.half_elems(buf.itemsize)
    for start in range(0, buf.size, step):
        _step(host_ex, lane_ex, staging, buf[start:start + step], op, hierarchy)


def _step(host_ex, lane_ex, staging, part, op, hierarchy):
    ufunc = collectives.REDUCE_UFUNCS[op]
    n, local = host_ex.size, host_ex.rank
    bounds = collectives.chunk_bounds(part.size, hierarchy.lanes)
    staged = staging.stage(part.dtype, part.size)
    staged[...] = part
    staging.sync()  # every member's data is staged
    regions = [staged if p == local else staging.peer(p, part.dtype, part.size) for p in range(n)]
    if lane_ex is not None:
        a, b = bounds[local]
        acc = ufunc(regions[0][a:b], regions[1][a:b]) if n > 1 else regions[0][a:b].copy()
        for region in regions[2:]:
            ufunc(acc, region[a:b], out=acc)
        collectives.all_reduce(lane_ex, acc, op)  # over the sockets: the lane exchange has no hierarchy
        staged[a:b] = acc  # the other lanes read other chunks of this half
    staging.sync()  # every lane's chunk is reduced, and every peer has mapped our region
    staging.release()
    for lane, (a, b) in enumerate(bounds):
        part[a:b] = staged[a:b] if lane == local else regions[lane][a:b]
    staging.step_done()
