"""Every rank joins the process group from the launcher's environment and all-reduces its
rank + 1, then a buffer large enough for the bulk algorithms (several shared-memory
steps, a remainder that no lane count divides), and says which all-reduce its group uses:
"hierarchical" where the group spans hosts with several ranks on one, else "flat"."""

import numpy as np

import distnn
import distnn.distributed as dist
from distnn.distributed import registry

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
t = distnn.full((3,), float(rank + 1))
dist.all_reduce(t)
expected = world * (world + 1) / 2
assert t.tolist() == [expected] * 3, (t.tolist(), expected)
n = 3_000_001
big = (np.arange(n) % 1009 + 1000 * rank).astype(np.int64)
dist.all_reduce(big)
want = sum((np.arange(n) % 1009 + 1000 * r).astype(np.int64) for r in range(world))
assert np.array_equal(big, want), f"rank {rank}: large all_reduce differs at {np.flatnonzero(big != want)[:5]}"
kind = "flat" if registry.current().group.hierarchy is None else "hierarchical"
print(f"all_reduce ok: rank {rank} of {world} got {t.tolist()[0]:g}; large ok; {kind}")
dist.destroy_process_group()
