"""DistributedDataParallel's gradient buckets (distnn/distributed/reducer.py) on
in-process worlds (``inprocess.run_threads``, one rank per thread, each running its
own backward while its buckets are reduced on its communication thread). Every rank's
gradients must be bit-identical to every other's and equal, to float round-off, to
the mean of the gradients each rank's batch gives a plain model (computed first, in
the test's thread): with one bucket, a bucket per parameter and a few, under
``no_sync`` accumulation, with parameters some ranks do not use, and with float32 and
float64 parameters. test_ddp.py trains across real processes."""

import numpy as np
import pytest

import distnn
import distnn.distributed as dist
import distnn.nn as nn
import distnn.nn.functional as F
from distnn.distributed import reducer
from distnn.distributed.inprocess import run_threads


class Net(nn.Module):
    """A small MLP. ``sometimes`` takes part only when the forward is told to use it;
    ``never`` never does. ``tail_dtype`` float64 makes the last two layers float64."""

    def __init__(self, tail_dtype="float32", with_never=False):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 16)
        self.sometimes = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)
        if with_never:
            self.never = nn.Linear(3, 3)
        if tail_dtype == "float64":
            self.fc3.double()
            self.head.double()

    def forward(self, x, use_sometimes=True):
        h = self.fc2(F.relu(self.fc1(x))).tanh()
        if use_sometimes:
            h = h + self.sometimes(h)
        h = h.to(self.fc3.weight.dtype)
        return self.head(F.relu(self.fc3(h)))


def make_net(seed, **kwargs):
    distnn.manual_seed(seed)
    return Net(**kwargs)


def batch(rank, step, tail_dtype="float32"):
    rng = np.random.default_rng(1000 * step + rank)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    y = rng.standard_normal((5, 3)).astype(tail_dtype)
    return distnn.from_numpy(x), distnn.from_numpy(y)


def loss_of(model, rank, step, tail_dtype="float32", use_sometimes=True):
    x, y = batch(rank, step, tail_dtype)
    return ((model(x, use_sometimes=use_sometimes) - y) ** 2).mean()


def gradients(model):
    """``{name: a copy of .grad as numpy, or None}`` of ``model`` (a DDP's wrapped module)."""
    module = getattr(model, "module", model)
    return {name: None if p.grad is None else p.grad.numpy().copy() for name, p in module.named_parameters()}


def local_gradients(world_size, steps, use_sometimes=lambda rank: True, **kwargs):
    """Each rank's gradients on a plain copy of rank 0's model, accumulated over ``steps``."""
    out = []
    for rank in range(world_size):
        model = make_net(0, **kwargs)
        for step in steps:
            loss_of(model, rank, step, kwargs.get("tail_dtype", "float32"), use_sometimes(rank)).backward()
        out.append(gradients(model))
    return out


def mean_of(per_rank, name):
    """The mean of every rank's gradient of ``name`` (a rank without one counts zeros), in
    float64, with its round-off bound."""
    grads = [g[name] for g in per_rank if g[name] is not None]
    total = sum(g.astype(np.float64) for g in grads)
    magnitude = sum(np.abs(g.astype(np.float64)) for g in grads)
    return total / len(per_rank), 4 * np.finfo(grads[0].dtype).eps * magnitude + 1e-30


def assert_averaged(results, per_rank, what):
    """Every rank's gradients bit-identical, and the mean of ``per_rank``'s."""
    for name, got in results[0].items():
        for rank, theirs in enumerate(results[1:], 1):
            assert theirs[name].tobytes() == got.tobytes(), f"{what}: {name}: rank {rank}'s differs from rank 0's"
        expected, tol = mean_of(per_rank, name)
        reference_dtype = next(g[name].dtype for g in per_rank if g[name] is not None)
        assert got.dtype == reference_dtype, f"{what}: {name}: Expect: {reference_dtype}, Actual: {got.dtype}"
        bad = np.abs(got - expected) > tol
        assert not bad.any(), (f"{what}: {name}: {int(bad.sum())} of {got.size} elements differ; worst: "
                               f"{np.abs(got - expected).max():.3g} beyond round-off {tol.max():.3g}")


BUCKETS = {  # name: (FIRST_BUCKET_BYTES, bucket_cap_mb)
    "default": (reducer.FIRST_BUCKET_BYTES, 25),
    "per_parameter": (1, 1e-9),
    "a_few": (1024, 1024 / 2 ** 20),
}


@pytest.fixture(params=list(BUCKETS))
def bucket_cap_mb(request, monkeypatch):
    """The ``bucket_cap_mb`` to pass, with the first bucket's cap set to match."""
    first, cap = BUCKETS[request.param]
    monkeypatch.setattr(reducer, "FIRST_BUCKET_BYTES", first)
    return cap


def check_bucket_count(ddp, cap):
    params = list(ddp.module.parameters())
    count, dtypes = len(ddp.reducer.buckets), len({p._data.dtype for p in params})  # one run of each dtype
    expected = {25: range(dtypes, dtypes + 1), 1e-9: range(len(params), len(params) + 1)}.get(
        cap, range(3, len(params)))
    assert count in expected, f"Expect: {expected} buckets for bucket_cap_mb={cap}, Actual: {count}"
    for bucket in ddp.reducer.buckets:
        dtypes = {p._data.dtype for p in bucket.parameters()}
        assert len(dtypes) == 1, f"bucket {bucket.index()} mixes dtypes {sorted(map(str, dtypes))}"


LAYOUTS = [pytest.param(1, [0], id="w1"), pytest.param(2, [0, 0], id="w2"), pytest.param(3, [0, 1, 2], id="w3-sockets"),
           pytest.param(4, [0, 0, 1, 1], id="w4-hosts0011"), pytest.param(5, [0] * 5, id="w5")]


@pytest.mark.parametrize("tail_dtype", ["float32", "float64"])
@pytest.mark.parametrize("world_size, hosts", LAYOUTS)
def test_gradients_are_the_mean_of_every_ranks(world_size, hosts, tail_dtype, bucket_cap_mb):
    """Two steps (gradients cleared between them); replicas that started different take
    rank 0's parameters at construction."""
    nets = [make_net(100 + rank, tail_dtype=tail_dtype) for rank in range(world_size)]
    initial = {name: p.detach().numpy().copy() for name, p in make_net(0, tail_dtype=tail_dtype).named_parameters()}
    nets[0].load_state_dict(make_net(0, tail_dtype=tail_dtype).state_dict())

    def body(rank):
        ddp = dist.DistributedDataParallel(nets[rank], bucket_cap_mb=bucket_cap_mb)
        check_bucket_count(ddp, bucket_cap_mb)
        for name, p in ddp.module.named_parameters():
            assert p.detach().numpy().tobytes() == initial[name].tobytes(), f"rank {rank}: {name} is not rank 0's"
        steps = []
        for step in range(2):
            ddp.zero_grad()
            loss_of(ddp, rank, step, tail_dtype).backward()
            steps.append(gradients(ddp))
        return steps
    results = run_threads(world_size, body, hosts)
    for step in range(2):
        assert_averaged([r[step] for r in results], local_gradients(world_size, [step], tail_dtype=tail_dtype),
                        f"step {step}")


@pytest.mark.parametrize("set_to_none", [None, False], ids=["kept", "zeroed"])
@pytest.mark.parametrize("world_size, hosts", [LAYOUTS[1], LAYOUTS[2], LAYOUTS[4]])
def test_no_sync_accumulates_locally_until_a_synced_backward(world_size, hosts, set_to_none, bucket_cap_mb):
    """Step 0 synced; then (gradients kept, or zeroed in place) step 1 under ``no_sync`` is
    local, and step 2 synced averages everything accumulated since."""
    nets = [make_net(0) for _ in range(world_size)]

    def body(rank):
        ddp = dist.DistributedDataParallel(nets[rank], bucket_cap_mb=bucket_cap_mb)
        loss_of(ddp, rank, 0).backward()
        after = [gradients(ddp)]
        if set_to_none is False:
            ddp.zero_grad(set_to_none=False)
        with ddp.no_sync():
            loss_of(ddp, rank, 1).backward()
        after.append(gradients(ddp))
        loss_of(ddp, rank, 2).backward()
        after.append(gradients(ddp))
        return after
    results = run_threads(world_size, body, hosts)
    assert_averaged([r[0] for r in results], local_gradients(world_size, [0]), "synced step 0")
    mean0 = results[0][0] if set_to_none is None else None

    def plus_mean0(grads):
        return grads if mean0 is None else {name: g + mean0[name] for name, g in grads.items()}
    for rank, step1 in enumerate(local_gradients(world_size, [1])):
        assert_averaged([results[rank][1]], [plus_mean0(step1)], f"no_sync step 1 on rank {rank} (local)")
    assert_averaged([r[2] for r in results], [plus_mean0(g) for g in local_gradients(world_size, [1, 2])],
                    "synced step 2 after no_sync")


def test_parameters_some_ranks_do_not_use_average_with_zeros(bucket_cap_mb):
    """``sometimes`` is used on even ranks only: the others contribute zeros to its mean."""
    world_size = 3
    nets = [make_net(0) for _ in range(world_size)]

    def body(rank):
        ddp = dist.DistributedDataParallel(nets[rank], bucket_cap_mb=bucket_cap_mb, find_unused_parameters=True)
        for step in range(2):
            ddp.zero_grad()
            loss_of(ddp, rank, step, use_sometimes=rank % 2 == 0).backward()
        return gradients(ddp)
    results = run_threads(world_size, body)
    per_rank = local_gradients(world_size, [1], use_sometimes=lambda rank: rank % 2 == 0)
    assert per_rank[1]["sometimes.weight"] is None
    assert_averaged(results, per_rank, "find_unused_parameters")


def test_a_parameter_no_rank_uses_keeps_no_gradient():
    """As torch's DDP with find_unused_parameters=True: a parameter no rank used keeps
    .grad None, so optimizers skip it (weight decay, Adam's moments)."""
    def body(rank):
        ddp = dist.DistributedDataParallel(make_net(0, with_never=True), find_unused_parameters=True)
        loss_of(ddp, rank, 0).backward()
        return gradients(ddp)
    for rank, got in enumerate(run_threads(2, body)):
        assert got["never.weight"] is None and got["never.bias"] is None, (
            f"rank {rank}: Expect: no gradient for never.weight, Actual: {got['never.weight']}")


@pytest.mark.parametrize("world_size", [2, 4])
def test_training_keeps_replicas_identical_and_matches_one_process(world_size):
    """Three SGD steps with momentum, several buckets: every rank's parameters are
    bit-identical after each step, and those of one process on the concatenated batch."""
    nets = [make_net(100 + rank) for rank in range(world_size)]
    nets[0].load_state_dict(make_net(0).state_dict())

    def body(rank):
        ddp = dist.DistributedDataParallel(nets[rank], bucket_cap_mb=1e-9)
        opt = distnn.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        history = []
        for step in range(3):
            opt.zero_grad()
            loss_of(ddp, rank, step).backward()
            opt.step()
            history.append({n: p.detach().numpy().copy() for n, p in ddp.module.named_parameters()})
        return history
    results = run_threads(world_size, body)
    plain = make_net(0)
    opt = distnn.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        opt.zero_grad()
        (sum(loss_of(plain, rank, step) for rank in range(world_size)) / world_size).backward()
        opt.step()
        for name, p in plain.named_parameters():
            for rank in range(world_size):
                got = results[rank][step][name]
                assert got.tobytes() == results[0][step][name].tobytes(), f"step {step}: rank {rank}'s {name}"
            diff = np.abs(results[0][step][name] - p.detach().numpy()).max()
            assert diff <= 1e-6, f"step {step}: {name} differs from one process by {diff}"
