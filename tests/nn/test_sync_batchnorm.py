"""SyncBatchNorm is batch norm over the union of every rank's batch: N ranks, each on its
own slice (uneven, one sample, or none), give the outputs, input gradients, summed
weight and bias gradients and running statistics of one process on the concatenated
batch, checked against distnn's BatchNorm and PyTorch's. Without a process group, in
eval mode, it is plain BatchNorm; convert_sync_batchnorm keeps the model's tensors."""

import json

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from multiproc import format_results, json_lines, run_ranks

WORKER = "tests/distributed/workers/sync_batchnorm.py"
WORLD_SIZES = (2, 3, 4)


def _counts(kind, world):
    """Per-rank batch sizes of a case's kind, for ``world`` ranks."""
    return {"even": [4] * world, "uneven": [3, 5, 2, 6][:world], "empty": [4, 0, 3, 2][:world],
            "ones": [1] * world, "refused": [1] + [0] * (world - 1)}[kind]


# id: (features (C, *spatial), counts kind, dtype, momentum, affine, bias, track_running_stats)
CASES = {
    "2d_even": ((5,), "even", "float32", 0.1, True, True, True),
    "2d_one_sample_per_rank": ((4,), "ones", "float32", 0.1, True, True, True),
    "2d_empty_rank": ((3,), "empty", "float32", 0.3, True, True, True),
    "3d_uneven_cumulative": ((3, 7), "uneven", "float32", None, True, True, True),
    "4d_uneven": ((3, 4, 5), "uneven", "float32", 0.1, True, True, True),
    "4d_uneven_float64": ((2, 3, 3), "uneven", "float64", 0.1, True, True, True),
    "4d_weight_only": ((3, 4, 4), "uneven", "float32", 0.1, True, False, True),
    "5d_uneven_no_affine": ((2, 3, 2, 3), "uneven", "float32", 0.1, False, True, True),
    "3d_untracked": ((4, 6), "uneven", "float32", 0.1, True, True, False),
}
STEPS = 3
TOLERANCE = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-11, atol=1e-11)}


def _case(name, world):
    features, kind, dtype, momentum, affine, bias, track = CASES[name]
    return {"id": name, "features": list(features), "counts": _counts(kind, world), "dtype": dtype,
            "momentum": momentum, "affine": affine, "bias": bias, "track": track, "steps": STEPS,
            "seed": sorted(CASES).index(name)}


_runs = {}


def _ranks(world):
    """Every case's per-rank records for ``world`` ranks (one worker run per world size)."""
    if world not in _runs:  # kept even when it failed: one broken run, not one per test
        cases = [_case(name, world) for name in CASES] + [
            {**_case("2d_even", world), "id": "refused", "counts": _counts("refused", world)}]
        _runs[world] = run_ranks(WORKER, world, args=["cases", json.dumps(cases)], timeout=240)
    results = _runs[world]
    assert all(r.returncode == 0 for r in results), format_results(results)
    return [{rec["case"]: rec for rec in json_lines(r.stdout) if "case" in rec} for r in results]


def _lib(name):
    return pytest.importorskip("torch") if name == "torch" else distnn


def full_batch(lib, case, inputs):
    """One process's BatchNorm on the concatenated batch: the same records a rank makes,
    for the whole batch (eval mode: each rank's slice, as each rank evaluates locally)."""
    features, dtype = case["features"], getattr(lib, case["dtype"])
    cls = {1: "BatchNorm1d", 2: "BatchNorm1d", 3: "BatchNorm2d", 4: "BatchNorm3d"}[len(features)]
    bn = getattr(lib.nn, cls)(features[0], momentum=case["momentum"], affine=case["affine"],
                              track_running_stats=case["track"], dtype=dtype, bias=case["bias"])
    with lib.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(lib.tensor(inputs["weight"], dtype=dtype))
        if bn.bias is not None:
            bn.bias.copy_(lib.tensor(inputs["bias"], dtype=dtype))
    steps = []
    for x, dy in zip(inputs["x"], inputs["dy"]):
        x = lib.tensor(x, dtype=dtype, requires_grad=True)
        y = bn(x)
        (y * lib.tensor(dy, dtype=dtype)).sum().backward()
        steps.append({"out": y.detach().numpy(), "grad_input": x.grad.numpy(),
                      "grad_weight": None if bn.weight is None else bn.weight.grad.numpy().copy(),
                      "grad_bias": None if bn.bias is None else bn.bias.grad.numpy().copy(),
                      "running_mean": None if bn.running_mean is None else bn.running_mean.numpy().copy(),
                      "running_var": None if bn.running_var is None else bn.running_var.numpy().copy(),
                      "num_batches_tracked": None if bn.num_batches_tracked is None
                      else int(bn.num_batches_tracked)})
        bn.zero_grad()
    bn.eval()
    x_eval, bounds = lib.tensor(inputs["x"][-1], dtype=dtype), np.cumsum([0] + case["counts"])
    with lib.no_grad():
        evals = [bn(x_eval[lo:hi]).numpy() for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    return steps, np.concatenate(evals)


def _stacked(per_rank, key, case, dtype):
    """The ranks' slices of ``key`` put back in rank order (empty slices included)."""
    tail = tuple(case["features"])
    return np.concatenate([np.asarray(rec[key], dtype).reshape((n,) + tail)
                           for rec, n in zip(per_rank, case["counts"])])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("oracle", ["distnn", "torch"])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_ranks_match_one_process_on_the_full_batch(world, name, oracle):
    case = _case(name, world)
    records = [ranks[name] for ranks in _ranks(world)]
    failed = [f"rank {r}: {rec.get('fail') or rec.get('error')}" for r, rec in enumerate(records)
              if "steps" not in rec]
    assert not failed, "\n".join(failed)
    sent = records[0]["inputs"]
    inputs = {"x": [np.asarray(a, case["dtype"]) for a in sent["x"]],
              "dy": [np.asarray(a, case["dtype"]) for a in sent["dy"]],
              "weight": np.asarray(sent["weight"], case["dtype"]), "bias": np.asarray(sent["bias"], case["dtype"])}
    steps, eval_out = full_batch(_lib(oracle), case, inputs)
    tol = TOLERANCE[case["dtype"]]
    for step, expected in enumerate(steps):
        ours = [rec["steps"][step] for rec in records]
        assert {s["grad_fn"] for s in ours} == {"SyncBatchNormBackward"}
        for key in ("out", "grad_input"):
            np.testing.assert_allclose(_stacked(ours, key, case, case["dtype"]), expected[key], **tol,
                                       err_msg=f"{key} at step {step}")
        for key in ("grad_weight", "grad_bias"):  # per rank; DDP's all-reduce would sum them
            if expected[key] is None:
                assert all(s[key] is None for s in ours), key
            else:
                total = np.sum([np.asarray(s[key], case["dtype"]) for s in ours], axis=0)
                np.testing.assert_allclose(total, expected[key], **tol, err_msg=f"{key} at step {step}")
        for key in ("running_mean", "running_var"):
            if expected[key] is None:
                assert all(s[key] is None for s in ours), key
            else:
                assert all(s[key] == ours[0][key] for s in ours), f"{key} differs between ranks"
                np.testing.assert_allclose(np.asarray(ours[0][key], case["dtype"]), expected[key], **tol,
                                           err_msg=f"{key} at step {step}")
        assert [s["num_batches_tracked"] for s in ours] == [expected["num_batches_tracked"]] * world
    eval_ours = np.concatenate([np.asarray(rec["eval_out"], case["dtype"]).reshape((-1,) + eval_out.shape[1:])
                                for rec in records])
    np.testing.assert_allclose(eval_ours, eval_out, **tol, err_msg="eval mode")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_one_value_per_channel_in_the_whole_group_is_refused_on_every_rank(world):
    errors = [ranks["refused"].get("error") for ranks in _ranks(world)]
    assert all(e and "Expected more than 1 value per channel when training, got 1 over the "
               f"{world} ranks" in e for e in errors), errors


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world", WORLD_SIZES)
def test_ddp_with_converted_batchnorm_matches_one_process(world):
    """DDP averages gradients of per-rank mean losses; with statistics synchronised too,
    training on B/world per rank is training on B."""
    def train(world_size, *flags):
        results = run_ranks(WORKER, world_size, args=["ddp", 4, 12, *flags], timeout=240)
        assert all(r.returncode == 0 for r in results), format_results(results)
        return [next(rec for rec in json_lines(r.stdout) if rec.get("case") == "ddp") for r in results]

    reference = train(1, "--plain")[0]
    ours = train(world)
    assert "SyncBatchNorm" in ours[0]["kinds"] and "BatchNorm2d" not in ours[0]["kinds"]
    assert "BatchNorm2d" in reference["kinds"]
    for rank, rec in enumerate(ours):
        assert set(rec["state"]) == set(reference["state"])
        for name, value in reference["state"].items():
            np.testing.assert_allclose(np.asarray(rec["state"][name]), np.asarray(value), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name} on rank {rank} of {world}")


# --- one process: plain BatchNorm -------------------------------------------------------------

@pytest.mark.parametrize("oracle", ["distnn", "torch"])
@pytest.mark.parametrize("features", [(5,), (3, 7), (3, 4, 5), (2, 3, 2, 3)], ids=["2d", "3d", "4d", "5d"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_without_a_process_group_it_is_batchnorm(features, momentum, oracle):
    case = {"features": list(features), "counts": [6], "dtype": "float32", "momentum": momentum, "affine": True,
            "bias": True, "track": True}
    rng = np.random.default_rng(3)
    shape = (6,) + features
    inputs = {"x": [rng.standard_normal(shape).astype(np.float32) + 2 for _ in range(3)],
              "dy": [rng.standard_normal(shape).astype(np.float32) for _ in range(2)],
              "weight": rng.uniform(0.5, 1.5, features[0]).astype(np.float32),
              "bias": rng.uniform(-1, 1, features[0]).astype(np.float32)}
    expected, expected_eval = full_batch(_lib(oracle), case, inputs)
    bn = nn.SyncBatchNorm(features[0], momentum=momentum)
    with distnn.no_grad():
        bn.weight.copy_(distnn.tensor(inputs["weight"]))
        bn.bias.copy_(distnn.tensor(inputs["bias"]))
    assert not bn._needs_sync()
    for x, dy, want in zip(inputs["x"], inputs["dy"], expected):
        x = distnn.tensor(x, requires_grad=True)
        y = bn(x)
        (y * distnn.tensor(dy)).sum().backward()
        for key, got in (("out", y.detach()), ("grad_input", x.grad), ("grad_weight", bn.weight.grad),
                         ("grad_bias", bn.bias.grad), ("running_mean", bn.running_mean),
                         ("running_var", bn.running_var)):
            np.testing.assert_allclose(got.numpy(), want[key], rtol=2e-5, atol=2e-5, err_msg=key)
        assert int(bn.num_batches_tracked) == want["num_batches_tracked"]
        bn.zero_grad()
    bn.eval()
    np.testing.assert_allclose(bn(distnn.tensor(inputs["x"][-1])).detach().numpy(), expected_eval,
                               rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape, message", [((4,), "expected at least 2D input (got 1D input)"),
                                            ((4, 0, 3), "SyncBatchNorm number of input channels should be "
                                                        "non-zero")])
def test_bad_input_is_refused_as_pytorch(shape, message):
    bn = nn.SyncBatchNorm(shape[1] if len(shape) > 1 else 4)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bn(distnn.zeros(shape))


def _model(lib):
    inner = lib.nn.Sequential(lib.nn.Conv2d(3, 4, 3), lib.nn.BatchNorm2d(4, momentum=None),
                              lib.nn.InstanceNorm2d(4, affine=True))
    return lib.nn.Sequential(lib.nn.Linear(3, 5), lib.nn.BatchNorm1d(5, affine=False), inner,
                             lib.nn.BatchNorm3d(2, track_running_stats=False, eps=1e-3),
                             lib.nn.BatchNorm1d(6, bias=False))


@pytest.mark.parametrize("oracle", ["distnn", "torch"])
def test_convert_sync_batchnorm_keeps_every_tensor_and_flag(oracle):
    lib = _lib(oracle)
    model = _model(lib)
    model[2][1].weight.requires_grad_(False)
    model[2][1].running_mean.fill_(0.25)
    model[2].eval()
    before = {name: t for name, t in model.named_parameters()}
    buffers = {name: t for name, t in model.named_buffers()}
    flags = {name: m.training for name, m in model.named_modules()}
    group = object()
    converted = lib.nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=group)
    assert converted is model
    kinds = [type(m).__name__ for _, m in converted.named_modules()]
    assert kinds == ["Sequential", "Linear", "SyncBatchNorm", "Sequential", "Conv2d", "SyncBatchNorm",
                     "InstanceNorm2d", "SyncBatchNorm", "SyncBatchNorm"]
    assert {name: id(t) for name, t in converted.named_parameters()} == {n: id(t) for n, t in before.items()}
    assert {name: id(t) for name, t in converted.named_buffers()} == {name: id(t) for name, t in buffers.items()}
    assert converted[2][1].weight.requires_grad is False and converted[2][1].bias.requires_grad is True
    assert {name: m.training for name, m in converted.named_modules()} == flags
    syncs = [m for m in converted.modules() if type(m).__name__ == "SyncBatchNorm"]
    assert all(m.process_group is group for m in syncs)
    assert [(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, m.bias is not None)
            for m in syncs] == [(5, 1e-5, 0.1, False, True, False), (4, 1e-5, None, True, True, True),
                                (2, 1e-3, 0.1, True, False, True), (6, 1e-5, 0.1, True, True, False)]


def test_convert_matches_pytorch_reprs_and_state_dicts():
    torch = pytest.importorskip("torch")
    ours = nn.SyncBatchNorm.convert_sync_batchnorm(_model(distnn))
    theirs = torch.nn.SyncBatchNorm.convert_sync_batchnorm(_model(torch))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_a_batchnorm_given_directly_comes_back_converted():
    bn = nn.BatchNorm2d(3)
    bn.weight.requires_grad_(False)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert type(sync) is nn.SyncBatchNorm and sync is not bn
    assert sync.weight is bn.weight and sync.running_var is bn.running_var
    assert sync.weight.requires_grad is False
    other = nn.Linear(2, 2)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(other) is other


def test_double_backward_is_refused_on_every_rank():
    """Its op claims no double backward: the first derivative (with create_graph) is given
    and equals the plain one, and differentiating it again names the op on every rank. It
    runs only in a group of two or more, so the catalogue of double-backward cases
    (tests/autograd/test_double_backward.py) leaves it to this test."""
    from distnn.autograd import grad
    from distnn.distributed.inprocess import run_threads

    def body(rank):
        distnn.manual_seed(rank)
        layer = nn.SyncBatchNorm(3)
        x = distnn.randn(4, 3, 5, requires_grad=True)
        (g,) = grad(layer(x).pow(2).sum(), x, create_graph=True)
        (expected,) = grad(layer(x).pow(2).sum(), x)
        np.testing.assert_allclose(g.detach().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        with pytest.raises(RuntimeError, match=r"^SyncBatchNormBackward does not support double backward"):
            (g ** 2).sum().backward()
        return True
    assert run_threads(2, body) == [True, True]
