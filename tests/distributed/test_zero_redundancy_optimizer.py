"""ZeroRedundancyOptimizer is exact and sharded: on 2, 3 and 4 ranks each rank holds the
state of about 1/world of the parameters, and after every step every rank's parameters
are, bit for bit, the unsharded optimizer's (SGD with momentum, Adam, AdamW); the
consolidated state dict is the unsharded one and loads both ways."""

import json

import pytest

import distnn
from distnn.distributed.optim import ZeroRedundancyOptimizer
from multiproc import check_cases, format_results, json_lines, run_ranks

WORKER = "tests/distributed/workers/zero_redundancy.py"
WORLD_SIZES = (2, 3, 4)
SCENARIOS = ("train", "bucket_view", "checkpoint", "add_param_group", "closure", "zero_grad", "tiny_mixed",
             "subgroup")
OPTIMIZERS = ("sgd_momentum", "sgd_nesterov_decay", "adam", "adamw")
MEMORY_TOLERANCE = 0.10  # the largest shard's state may exceed 1/world of the whole by this fraction

_runs = {}


def _ranks(world):
    """{case: record} per rank, for ``world`` ranks (one worker run per world size)."""
    if world not in _runs:  # kept even when it failed: one broken run, not one per test
        _runs[world] = run_ranks(WORKER, world, args=[json.dumps(SCENARIOS), json.dumps(OPTIMIZERS)], timeout=400)
    results = _runs[world]
    assert all(r.returncode == 0 for r in results), format_results(results)
    check_cases(results, min_cases=len(SCENARIOS) * len(OPTIMIZERS))  # no failures; equal hashes on all ranks
    return [{rec["case"]: rec for rec in json_lines(r.stdout) if "case" in rec} for r in results]


def _records(world, scenario, optimizer):
    return [ranks[f"{scenario}-{optimizer}"] for ranks in _ranks(world)]


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_parameters_equal_the_unsharded_optimizers(world, scenario, optimizer):
    records = _records(world, scenario, optimizer)
    assert [r["max_diff"] for r in records] == [0.0] * world
    assert len({r["hash"] for r in records}) == 1


@pytest.mark.timeout(450)
@pytest.mark.parametrize("scenario", ["train", "bucket_view"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_each_rank_holds_about_one_world_th_of_the_state(world, optimizer, scenario):
    records = _records(world, scenario, optimizer)
    unsharded = records[0]["unsharded_bytes"]
    per_rank = [r["state_bytes"] for r in records]
    print(f"\n{scenario} {optimizer} on {world} ranks: optimizer state bytes per rank {per_rank}, "
          f"unsharded {unsharded}, largest/unsharded {max(per_rank) / unsharded:.3f} (ideal {1 / world:.3f})")
    assert unsharded > 0
    assert sum(per_rank) == unsharded  # every parameter's state lives on exactly one rank
    assert max(per_rank) <= unsharded / world * (1 + MEMORY_TOLERANCE)
    assert [r["outer_state_bytes"] for r in records] == [0] * world  # no unsharded copy behind the shards
    owned = records[0]["owned_by_rank"]
    assert all(r["owned_by_rank"] == owned for r in records)  # the partition is the same on every rank
    assert sorted(i for shard in owned for i in shard) == list(range(records[0]["n_params"]))
    assert all(shard for shard in owned)
    assert all(r["lr"] == r["local_lr"] for r in records)


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_bucket_views_alias_the_parameters(world, optimizer):
    records = _records(world, "bucket_view", optimizer)
    assert all(r["bucket_views"] == r["n_params"] for r in records)
    assert all(r["bucket_views"] == 0 for r in _records(world, "train", optimizer))


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_consolidated_state_dict_is_the_unsharded_one_and_loads_both_ways(world, optimizer):
    records = _records(world, "checkpoint", optimizer)
    to = records[0]["to"]
    assert all(not r["problems"] for r in records), [r["problems"] for r in records]
    assert records[to]["plain_max_diff"] == 0.0
    for rank, r in enumerate(records):
        if rank != to:
            assert "has not been consolidated on this rank" in r["refused"]
            assert f"consolidate_state_dict(to={rank})" in r["refused"]
    loaded = [r["loaded_state_bytes"] for r in records]
    assert all(0 < b < sum(loaded) for b in loaded)  # each rank loaded only its own shard's state


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_add_param_group_keeps_earlier_owners(world, optimizer):
    records = _records(world, "add_param_group", optimizer)
    assert all(r["owners_kept"] for r in records)
    assert all(r["groups"] == [2, 2] for r in records)
    lr = records[0]["local_lrs"]
    assert lr[1] == pytest.approx(lr[0] * 0.3 / 0.5)  # group 0 was halved by the schedule, group 1 not


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_step_returns_the_closures_loss(world, optimizer):
    for r in _records(world, "closure", optimizer):
        assert all(ours == theirs for ours, theirs in r["losses"])


@pytest.mark.timeout(450)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_zero_grad_reaches_every_parameter(world):
    records = _records(world, "zero_grad", "adam")
    assert all(r["zeros"] and r["nones"] for r in records)


@pytest.mark.timeout(450)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_ranks_owning_nothing_and_mixed_dtypes(world, optimizer):
    records = _records(world, "tiny_mixed", optimizer)
    assert sorted(r["owned"] for r in records) == [0] * (world - 2) + [1, 1]
    assert all(r["dtypes"] == ["torch.float32", "torch.float64"] for r in records)
    assert not records[0]["problems"], records[0]["problems"]


@pytest.mark.timeout(450)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_a_subgroup_shards_among_its_members_only(world):
    records = _records(world, "subgroup", "sgd_momentum")
    members = list(range(1, world)) if world > 2 else list(range(world))
    for rank, r in enumerate(records):
        assert r["member"] == (rank in members)
        if r["member"]:
            assert r["group"] == [len(members), members.index(rank), rank]


def test_overlap_with_ddp_is_refused():
    with pytest.raises(NotImplementedError, match="overlap_with_ddp=True"):
        ZeroRedundancyOptimizer([distnn.zeros(2, requires_grad=True)], distnn.optim.SGD, overlap_with_ddp=True, lr=0.1)


@pytest.mark.parametrize("params, error, message", [
    ([], ValueError, "empty parameter list"),
    (None, TypeError, "iterable of Tensors"),
    ([{"lr": 0.1}], ValueError, "must have a 'params' key"),
])
def test_bad_params_are_refused_as_pytorch(params, error, message):
    with pytest.raises(error, match=message):
        ZeroRedundancyOptimizer(params, distnn.optim.SGD, lr=0.1)
