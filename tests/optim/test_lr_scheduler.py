"""LR schedulers: the learning-rate (and momentum) sequence over 30 steps equals
PyTorch's; hand-checked values, state-dict round trips and errors without torch."""

import math
import warnings

import pytest

import distnn
import distnn.optim as optim
from distnn.optim import lr_scheduler as sched
from op_check import requires_torch, torch

STEPS = 30

SCHEDULERS = [
    ("StepLR", {"step_size": 7}),
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [4, 10, 10, 20], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 10}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001}),
    ("LambdaLR", {"lr_lambda": lambda epoch: 0.95 ** epoch}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS + 1}),
    ("OneCycleLR", {"max_lr": [0.5, 0.2], "total_steps": STEPS + 1, "anneal_strategy": "linear"}),
    ("OneCycleLR", {"max_lr": 0.5, "epochs": 4, "steps_per_epoch": 8, "three_phase": True, "pct_start": 0.25}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS + 1, "cycle_momentum": False}),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(SCHEDULERS)]


def make_optimizer(lib, opt_name="SGD", lrs=(0.1, 0.05)):
    params = [lib.zeros(2, requires_grad=True) for _ in lrs]
    kwargs = {"momentum": 0.9} if opt_name == "SGD" else {}
    return getattr(lib.optim, opt_name)([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], **kwargs)


def schedule(lib, name, kwargs, opt_name="SGD", steps=STEPS):
    """lr, momentum/beta1 and get_last_lr() after construction and after each step."""
    opt = make_optimizer(lib, opt_name)
    scheduler = getattr(lib.optim.lr_scheduler, name)(opt, **kwargs)
    key = "betas" if opt_name == "Adam" else "momentum"
    seq = []
    for _ in range(steps + 1):
        seq.append(([g["lr"] for g in opt.param_groups], [g[key] for g in opt.param_groups],
                    list(scheduler.get_last_lr())))
        opt.step()
        scheduler.step()
    return seq, scheduler


@requires_torch
@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=IDS)
@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_sequence_equals_torch(name, kwargs, opt_name):
    ours, scheduler = schedule(distnn, name, kwargs, opt_name)
    theirs, tscheduler = schedule(torch, name, kwargs, opt_name)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"step {step}: {a} != torch {b}"
    assert scheduler.last_epoch == tscheduler.last_epoch
    assert scheduler.base_lrs == tscheduler.base_lrs


@requires_torch
@pytest.mark.parametrize("kwargs", [
    {},
    {"mode": "max", "factor": 0.5, "patience": 2, "threshold_mode": "abs", "threshold": 0.05},
    {"patience": 1, "cooldown": 2, "min_lr": [0.02, 0.001]},
    {"patience": 0, "factor": 0.5, "eps": 0.01},
])
def test_reduce_on_plateau_equals_torch(kwargs):
    metrics = [1.0, 0.9, 0.91, 0.92, 0.89, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.3] * 2
    lrs = {}
    for lib in (distnn, torch):
        opt = make_optimizer(lib)
        scheduler = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        seq = []
        for m in metrics:
            scheduler.step(m if lib is torch else distnn.tensor(m))
            seq.append((list(scheduler.get_last_lr()), scheduler.num_bad_epochs, scheduler.cooldown_counter))
        lrs[lib.__name__] = seq
    assert lrs["distnn"] == lrs["torch"]


@requires_torch
def test_resuming_with_last_epoch_equals_torch():
    seqs = []
    for lib in (distnn, torch):
        opt = make_optimizer(lib)
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
        s = lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, last_epoch=4)
        seq = [s.get_last_lr()]
        for _ in range(8):
            opt.step()
            s.step()
            seq.append(s.get_last_lr())
        seqs.append(seq)
    assert seqs[0] == seqs[1]


# --- behaviour checked by hand ----------------------------------------------------------------------

def lr_sequence(scheduler, steps):
    out = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        out.append(scheduler.get_last_lr()[0])
    return out


def test_step_lr_by_hand():
    s = sched.StepLR(make_optimizer(distnn, lrs=(1.0,)), step_size=2, gamma=0.5)
    assert lr_sequence(s, 5) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_multistep_lr_by_hand():
    s = sched.MultiStepLR(make_optimizer(distnn, lrs=(1.0,)), milestones=[1, 3, 3], gamma=0.5)
    assert lr_sequence(s, 4) == [1.0, 0.5, 0.5, 0.125, 0.125]


def test_cosine_follows_the_closed_form():
    s = sched.CosineAnnealingLR(make_optimizer(distnn, lrs=(1.0,)), T_max=8, eta_min=0.1)
    got = lr_sequence(s, 16)
    want = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(17)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_lambda_and_exponential_by_hand():
    opt = make_optimizer(distnn, lrs=(2.0, 1.0))
    s = sched.LambdaLR(opt, lr_lambda=[lambda e: e + 1, lambda e: 0.5])
    opt.step()
    s.step()
    assert s.get_last_lr() == [4.0, 0.5]
    s2 = sched.ExponentialLR(make_optimizer(distnn, lrs=(1.0,)), gamma=0.5)
    assert lr_sequence(s2, 3) == [1.0, 0.5, 0.25, 0.125]


def test_scheduler_sets_initial_lr_and_base_lrs():
    opt = make_optimizer(distnn)
    s = sched.StepLR(opt, step_size=1, gamma=0.1)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05]
    assert s.base_lrs == [0.1, 0.05] and s.last_epoch == 0


def test_resuming_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(make_optimizer(distnn), step_size=2, last_epoch=3)


def test_one_cycle_shape_and_momentum():
    opt = make_optimizer(distnn, lrs=(0.1,))
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.5, div_factor=10.0,
                         final_div_factor=100.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    lrs = lr_sequence(s, 9)  # warm up over steps 0..4, anneal over 4..9
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 4
    assert lrs[-1] == pytest.approx(0.1 / 100)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    s.step()
    with pytest.raises(ValueError, match="Tried to step 11 times. The specified number of total steps is 10"):
        s.step()


def test_one_cycle_cycles_adam_beta1():
    opt = make_optimizer(distnn, "Adam", lrs=(0.1,))
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    for _ in range(2):
        opt.step()
        s.step()
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.85)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_lr": 1.0}, "either total_steps OR"),
    ({"max_lr": 1.0, "total_steps": 0}, "Expected positive integer total_steps, but got 0"),
    ({"max_lr": 1.0, "total_steps": 10, "pct_start": 1.5}, "pct_start, but got 1.5"),
    ({"max_lr": 1.0, "total_steps": 10, "anneal_strategy": "step"}, "instead got step"),
    ({"max_lr": [1.0], "total_steps": 10}, "max_lr must have the same length as optimizer.param_groups"),
])
def test_one_cycle_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sched.OneCycleLR(make_optimizer(distnn), **kwargs)


def test_one_cycle_needs_momentum():
    opt = optim.Adagrad([distnn.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="must support momentum or beta1"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=10)


def test_reduce_on_plateau_by_hand():
    opt = make_optimizer(distnn, lrs=(1.0,))
    s = sched.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1)
    got = []
    for m in [5, 4, 4, 4, 4, 4, 4]:
        s.step(m)
        got.append(s.get_last_lr()[0])
    # 5 best, 4 best, bad 1, bad 2 -> halve (cooldown 1), cooldown, bad 1, bad 2 -> halve
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


@pytest.mark.parametrize("kwargs,match", [({"factor": 1.0}, "Factor should be < 1.0"),
                                          ({"mode": "up"}, "mode up is unknown"),
                                          ({"threshold_mode": "pct"}, "threshold mode pct is unknown"),
                                          ({"min_lr": [0.1]}, "expected 2 min_lrs, got 1")])
def test_reduce_on_plateau_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sched.ReduceLROnPlateau(make_optimizer(distnn), **kwargs)


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        sched.StepLR([], step_size=1)


@pytest.mark.parametrize("name,kwargs", SCHEDULERS + [("ReduceLROnPlateau", {"patience": 1})], ids=IDS + ["plateau"])
def test_state_dict_round_trip(name, kwargs):
    def run(scheduler, opt, steps, start=0):
        out = []
        for t in range(start, start + steps):
            opt.step()
            scheduler.step(1.0 + (t % 3)) if name == "ReduceLROnPlateau" else scheduler.step()
            out.append(scheduler.get_last_lr())
        return out

    opt = make_optimizer(distnn)
    scheduler = getattr(sched, name)(opt, **kwargs)
    run(scheduler, opt, 8)
    saved_sched, saved_opt = scheduler.state_dict(), opt.state_dict()
    assert "optimizer" not in saved_sched
    assert all(type(v) in (int, float, str, bool, list, dict, type(None)) for v in saved_sched.values())
    expected = run(scheduler, opt, 6, start=8)

    opt2 = make_optimizer(distnn)
    scheduler2 = getattr(sched, name)(opt2, **kwargs)
    opt2.load_state_dict(saved_opt)
    scheduler2.load_state_dict(saved_sched)
    assert run(scheduler2, opt2, 6, start=8) == expected


def test_warns_when_stepped_before_the_optimizer():
    opt = make_optimizer(distnn)
    s = sched.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        s.step()
    opt2 = make_optimizer(distnn)
    s2 = sched.StepLR(opt2, step_size=2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2.step()
