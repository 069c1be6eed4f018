"""The official DDP tutorial's basic program (pytorch/examples distributed/ddp): the
main process starts WORLD_SIZE processes with ``multiprocessing.spawn``; each sets
MASTER_ADDR/MASTER_PORT itself, joins a "gloo" process group, wraps a ToyModel in
DistributedDataParallel, takes one SGD step on its shard of the batch, and leaves
the group. Written once for either library:

    python tests/programs/ddp_spawn.py distnn|torch PORT

prints one JSON line per rank: {"rank", "grads", "params"} (after the step). Only
rank 0 starts from the job's weights; DDP must hand them to the others.
"""

import importlib
import json
import os
import sys

import numpy as np

WORLD_SIZE, BATCH, LR = 2, 20, 0.001


def toy_model(nn):
    class ToyModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net1 = nn.Linear(10, 10)
            self.relu = nn.ReLU()
            self.net2 = nn.Linear(10, 5)

        def forward(self, x):
            return self.net2(self.relu(self.net1(x)))
    return ToyModel()


def job():
    """The weights, inputs and labels of the job, drawn with numpy: (state, inputs, labels)."""
    rng = np.random.default_rng(0)
    shapes = {"net1.weight": (10, 10), "net1.bias": (10,), "net2.weight": (5, 10), "net2.bias": (5,)}
    state = {name: rng.uniform(-0.3, 0.3, shape).astype(np.float32) for name, shape in shapes.items()}
    inputs, labels = (rng.standard_normal((BATCH, width)).astype(np.float32) for width in (10, 5))
    return state, inputs, labels


def setup(dist, rank, world_size, port):
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def demo_basic(rank, world_size, lib_name, port, results):
    torch = importlib.import_module(lib_name)
    dist = importlib.import_module(f"{lib_name}.distributed")
    from_numpy = torch.from_numpy
    DDP = torch.nn.parallel.DistributedDataParallel
    setup(dist, rank, world_size, port)

    state, inputs, labels = job()
    model = toy_model(torch.nn)
    if rank == 0:
        model.load_state_dict({name: from_numpy(value) for name, value in state.items()})
    ddp_model = DDP(model)

    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=LR)
    optimizer.zero_grad()
    shard = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    outputs = ddp_model(from_numpy(inputs[shard]))
    loss_fn(outputs, from_numpy(labels[shard])).backward()
    grads = {name: p.grad.numpy().tolist() for name, p in ddp_model.module.named_parameters()}
    optimizer.step()
    params = {name: p.detach().numpy().tolist() for name, p in ddp_model.module.named_parameters()}
    results.put(json.dumps({"rank": rank, "grads": grads, "params": params}))
    dist.destroy_process_group()


def run_demo(demo_fn, world_size, lib_name, port):
    mp = importlib.import_module(f"{lib_name}.multiprocessing")
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(demo_fn, args=(world_size, lib_name, port, results), nprocs=world_size, join=True)
    return sorted((results.get() for _ in range(world_size)), key=lambda line: json.loads(line)["rank"])


if __name__ == "__main__":
    for line in run_demo(demo_basic, WORLD_SIZE, sys.argv[1], int(sys.argv[2])):
        print(line, flush=True)
