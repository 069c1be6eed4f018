"""Every rank joins the process group from the launcher's environment and all-reduces its rank + 1."""

import distnn
import distnn.distributed as dist

dist.init_process_group()
rank, world = dist.get_rank(), dist.get_world_size()
t = distnn.full((3,), float(rank + 1))
dist.all_reduce(t)
expected = world * (world + 1) / 2
assert t.tolist() == [expected] * 3, (t.tolist(), expected)
print(f"all_reduce ok: rank {rank} of {world} got {t.tolist()[0]:g}")
dist.destroy_process_group()
