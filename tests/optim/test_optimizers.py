"""Optimizers: trajectories side by side with PyTorch (every step), hand-computed
steps, param groups, state-dict round trips and the errors PyTorch raises."""

import numpy as np
import pytest

import distnn
import distnn.optim as optim
from op_check import requires_torch, torch
from optimizer_check import Float32Ref, feed_grads, initial_arrays, make_params, trajectory, values

# A tiny two-layer model's parameter shapes and a quadratic pulling them to a target.
STEPS = 10

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "maximize": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "maximize": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "maximize": True, "alpha": 0.9}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1, "maximize": True, "eps": 1e-6}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]
NAMES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


def assert_same_trajectory(ours, theirs):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=f"param {i} after step {t + 1}")


@requires_torch
@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_torch_every_step(name, kwargs):
    arrays = initial_arrays()
    ours, opt, params = trajectory(distnn, name, kwargs, arrays, STEPS)
    theirs, topt, tparams = trajectory(torch, name, kwargs, arrays, STEPS)
    assert_same_trajectory(ours, theirs)
    # the state itself: same keys, same values, step as a float32 scalar
    sd, tsd = opt.state_dict(), topt.state_dict()
    for group in tsd["param_groups"]:
        group["foreach"] = None  # torch was asked for its single-tensor path explicitly
    assert sd["param_groups"] == tsd["param_groups"]
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for idx, tstate in tsd["state"].items():
        assert sorted(sd["state"][idx]) == sorted(tstate)
        for key, tval in tstate.items():
            val = sd["state"][idx][key]
            assert isinstance(val, distnn.Tensor)
            assert str(val.dtype) == str(tval.dtype), key
            np.testing.assert_allclose(val.numpy(), tval.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


@requires_torch
@pytest.mark.parametrize("name", NAMES)
def test_param_groups_with_own_options_match_torch(name):
    groups = [{"params": [0, 1], "lr": 0.02}, {"params": [2, 3], "lr": 0.005, "weight_decay": 0.1}]
    arrays = initial_arrays(seed=3)
    ours, opt, _ = trajectory(distnn, name, {"lr": 0.01}, arrays, STEPS, groups=groups)
    theirs, _, _ = trajectory(torch, name, {"lr": 0.01}, arrays, STEPS, groups=groups)
    assert_same_trajectory(ours, theirs)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.005]
    assert opt.param_groups[0]["weight_decay"] == opt.defaults["weight_decay"]


@requires_torch
@pytest.mark.parametrize("name", NAMES)
def test_repr_matches_torch(name):
    ours = getattr(optim, name)([distnn.zeros(2, requires_grad=True)], lr=0.5)
    theirs = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], lr=0.5)
    assert repr(ours) == repr(theirs)


# --- a float64 textbook reference (no torch needed) -----------------------------------------

def reference_update(name, kw, p, g, st, t):
    """One step of the algorithm as PyTorch documents it, in float64 numpy."""
    defaults = {"SGD": {"lr": 1e-3}, "Adam": {"lr": 1e-3}, "AdamW": {"lr": 1e-3, "weight_decay": 1e-2},
                "RMSprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}, "Adagrad": {"lr": 1e-2, "eps": 1e-10}}
    kw = {**defaults[name], **kw}
    lr, wd = kw["lr"], kw.get("weight_decay", 0)
    g = -g if kw.get("maximize") else g
    if name in ("Adam", "AdamW"):
        b1, b2 = kw.get("betas", (0.9, 0.999))
        if name == "AdamW" or kw.get("decoupled_weight_decay"):
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        st["m"] = b1 * st.get("m", 0) + (1 - b1) * g
        st["v"] = b2 * st.get("v", 0) + (1 - b2) * g * g
        v = st["vmax"] = np.maximum(st.get("vmax", 0), st["v"]) if kw.get("amsgrad") else st["v"]
        return p - lr / (1 - b1 ** t) * st["m"] / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + kw.get("eps", 1e-8))
    g = g + wd * p
    if name == "SGD":
        mom = kw.get("momentum", 0)
        if mom:
            st["buf"] = g if t == 1 else mom * st["buf"] + (1 - kw.get("dampening", 0)) * g
            g = g + mom * st["buf"] if kw.get("nesterov") else st["buf"]
        return p - lr * g
    if name == "RMSprop":
        a, mom = kw["alpha"], kw.get("momentum", 0)
        st["v"] = a * st.get("v", 0) + (1 - a) * g * g
        if kw.get("centered"):
            st["ga"] = a * st.get("ga", 0) + (1 - a) * g
            avg = np.sqrt(st["v"] - st["ga"] ** 2) + kw["eps"]
        else:
            avg = np.sqrt(st["v"]) + kw["eps"]
        if mom:
            st["buf"] = mom * st.get("buf", 0) + g / avg
            return p - lr * st["buf"]
        return p - lr * g / avg
    st["sum"] = st.get("sum", kw.get("initial_accumulator_value", 0)) + g * g
    clr = lr / (1 + (t - 1) * kw.get("lr_decay", 0))
    return p - clr * g / (np.sqrt(st["sum"]) + kw["eps"])


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_textbook_reference(name, kwargs):
    arrays = initial_arrays(seed=7)
    ours, _, _ = trajectory(distnn, name, kwargs, arrays, STEPS)
    refs = [Float32Ref(a.astype(np.float64)) for a in arrays]
    states = [{} for _ in refs]
    for t in range(STEPS):
        feed_grads(Float32Ref, refs, t)
        for r, st in zip(refs, states):
            r.value = reference_update(name, kwargs, r.value, r.grad, st, t + 1)
        for i, r in enumerate(refs):
            np.testing.assert_allclose(ours[t][i], r.value, rtol=1e-4, atol=1e-5,
                                       err_msg=f"param {i} after step {t + 1}")


# --- hand-computed steps (no torch needed) ------------------------------------------------

def _adam_step(p, m, v, g, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = (v ** 0.5) / (1 - b2 ** t) ** 0.5 + eps
    return p - lr / (1 - b1 ** t) * m / denom, m, v


def _expected_two_steps(name):
    """Parameter value after gradients 2 then 1, starting from 1.0, by the textbook formulas."""
    if name == "SGD":   # lr=0.1, momentum=0.9: buf=2 -> p=0.8; buf=0.9*2+1=2.8 -> p=0.52
        return 1.0 - 0.1 * 2 - 0.1 * 2.8
    if name == "Adam":
        p, m, v = _adam_step(1.0, 0.0, 0.0, 2.0, 1, 0.1)
        return _adam_step(p, m, v, 1.0, 2, 0.1)[0]
    if name == "AdamW":  # decay the weights first, then the Adam step
        p, m, v = _adam_step(1.0 * (1 - 0.1 * 0.01), 0.0, 0.0, 2.0, 1, 0.1)
        return _adam_step(p * (1 - 0.1 * 0.01), m, v, 1.0, 2, 0.1)[0]
    if name == "RMSprop":  # alpha=0.99, lr=0.01
        v1 = 0.01 * 4
        p = 1.0 - 0.01 * 2 / (v1 ** 0.5 + 1e-8)
        v2 = 0.99 * v1 + 0.01 * 1
        return p - 0.01 * 1 / (v2 ** 0.5 + 1e-8)
    if name == "Adagrad":  # lr=0.1, lr_decay=0.5: second step's lr is 0.1 / 1.5
        p = 1.0 - 0.1 * 2 / (4 ** 0.5 + 1e-10)
        return p - 0.1 / 1.5 * 1 / (5 ** 0.5 + 1e-10)
    raise AssertionError(name)


HAND_KWARGS = {"SGD": {"lr": 0.1, "momentum": 0.9}, "Adam": {"lr": 0.1}, "AdamW": {"lr": 0.1},
               "RMSprop": {"lr": 0.01}, "Adagrad": {"lr": 0.1, "lr_decay": 0.5}}


@pytest.mark.parametrize("name", NAMES)
def test_hand_computed_steps(name):
    p = distnn.tensor([1.0], requires_grad=True)
    opt = getattr(optim, name)([p], **HAND_KWARGS[name])
    for g in (2.0, 1.0):
        p.grad = distnn.tensor([g])
        opt.step()
    assert p.dtype == distnn.float32
    np.testing.assert_allclose(p.detach().numpy(), [_expected_two_steps(name)], rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_state_dtypes_follow_the_parameter(name):
    p = distnn.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    opt = getattr(optim, name)([p], lr=0.1, **({"momentum": 0.9} if name in ("SGD", "RMSprop") else {}))
    p.grad = distnn.ones(2, 3)
    opt.step()
    for key, value in opt.state[p].items():
        assert value.dtype == distnn.float32, key
        assert tuple(value.shape) == (() if key == "step" else (2, 3)), key
    if name != "SGD":
        assert opt.state[p]["step"].item() == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped(name):
    a, b = distnn.ones(3, requires_grad=True), distnn.ones(3, requires_grad=True)
    opt = getattr(optim, name)([a, b], lr=0.1)
    a.grad = distnn.ones(3)
    version = b._version
    opt.step()
    assert np.all(a.detach().numpy() < 1.0)
    assert b.detach().numpy().tolist() == [1.0, 1.0, 1.0]
    assert b._version == version
    if name != "Adagrad":  # Adagrad creates its state at construction, as in PyTorch
        assert b not in opt.state


def test_step_bumps_the_version_so_autograd_sees_the_change():
    p = distnn.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = distnn.ones(3)
    before = p._version
    opt.step()
    assert p._version == before + 1


def test_zero_grad():
    p = distnn.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = distnn.ones(3)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.tolist() == [0.0, 0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_closure_runs_with_grad_enabled_and_returns_loss():
    p = distnn.ones(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    seen = []

    def closure():
        seen.append(distnn.is_grad_enabled())
        p.grad = distnn.tensor([1.0, -1.0])
        return 7.0

    with distnn.no_grad():
        assert opt.step(closure) == 7.0
    assert seen == [True]
    assert p.detach().numpy().tolist() == [0.5, 1.5]


# --- state dicts -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    arrays = initial_arrays(seed=5)
    _, opt, params = trajectory(distnn, name, kwargs, arrays, steps=4)
    saved = opt.state_dict()
    clone = make_params(distnn, values(params))
    opt2 = getattr(optim, name)(clone, **kwargs)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["params"][0] is clone[0]
    for t in range(4, 8):
        feed_grads(distnn, params, t)
        feed_grads(distnn, clone, t)
        opt.step()
        opt2.step()
        for x, y in zip(values(params), values(clone)):
            np.testing.assert_array_equal(x, y)


def test_state_dict_layout_is_plain_data():
    w, b = distnn.ones(2, 2, requires_grad=True), distnn.ones(2, requires_grad=True)
    opt = optim.Adam([{"params": [w]}, {"params": [b], "lr": 0.1}])
    w.grad, b.grad = distnn.ones(2, 2), distnn.ones(2)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sorted(sd["state"]) == [0, 1]
    assert sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]

    def plain(v):
        if isinstance(v, dict):
            return all(plain(k) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str, distnn.Tensor))
    assert plain(sd)


def test_load_state_dict_casts_copies_and_accepts_serialized_forms():
    p = distnn.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    buf = distnn.tensor(np.array([1.0, 2.0, 3.0]), dtype=distnn.float64)
    saved = {"state": {"0": {"momentum_buffer": buf}},            # a text key, as JSON would give
             "param_groups": [{"lr": 0.2, "momentum": 0.9, "dampening": 0, "weight_decay": 0,
                               "nesterov": False, "maximize": False, "params": ["0"]}]}
    opt.load_state_dict(saved)
    loaded = opt.state[p]["momentum_buffer"]
    assert loaded.dtype == distnn.float32 and loaded.tolist() == [1.0, 2.0, 3.0]
    assert opt.param_groups[0]["lr"] == 0.2 and opt.param_groups[0]["foreach"] is None
    p.grad = distnn.zeros(3)
    opt.step()
    assert buf.tolist() == [1.0, 2.0, 3.0]  # the saved tensor was copied, not updated in place


def test_load_state_dict_turns_listed_betas_back_into_a_tuple():
    p = distnn.ones(2, requires_grad=True)
    opt = optim.Adam([p])
    sd = opt.state_dict()
    sd["param_groups"][0]["betas"] = [0.5, 0.6]
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["betas"] == (0.5, 0.6)


def _sgd_state(shape=(3,), groups=1, sizes=(1,)):
    params = [[distnn.ones(*shape, requires_grad=True) for _ in range(n)] for n in sizes[:groups]]
    opt = optim.SGD([{"params": ps} for ps in params], lr=0.1, momentum=0.9)
    for ps in params:
        for p in ps:
            p.grad = distnn.ones(*shape)
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize("saved,match", [
    (lambda: _sgd_state(groups=2, sizes=(1, 1)), r"different number of parameter groups \(Expect: 1, Actual: 2\)"),
    (lambda: _sgd_state(sizes=(2,)), r"doesn't match the size .*Expect: 1 params, Actual: 2"),
    (lambda: _sgd_state(shape=(4,)), r"'momentum_buffer' of parameter 0 has the wrong shape \(Expect: \(3,\), "
                                     r"Actual: \(4,\)\)"),
])
def test_load_state_dict_rejects_mismatches(saved, match):
    opt = optim.SGD([distnn.ones(3, requires_grad=True)], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(saved())


def test_load_state_dict_needs_both_keys():
    opt = optim.SGD([distnn.ones(3, requires_grad=True)])
    with pytest.raises(KeyError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


# --- construction errors ------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_negative_lr_is_rejected(name):
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        getattr(optim, name)([distnn.ones(2, requires_grad=True)], lr=-1)


@pytest.mark.parametrize("name,kwargs,match", [
    ("SGD", {"momentum": -0.1}, "Invalid momentum value: -0.1"),
    ("SGD", {"weight_decay": -1}, "Invalid weight_decay value: -1"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov momentum requires"),
    ("Adam", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("AdamW", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    ("Adam", {"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
    ("RMSprop", {"alpha": -0.5}, "Invalid alpha value: -0.5"),
    ("Adagrad", {"lr_decay": -1}, "Invalid lr_decay value: -1"),
    ("Adagrad", {"initial_accumulator_value": -1}, "Invalid initial_accumulator_value value: -1"),
])
def test_invalid_options(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)([distnn.ones(2, requires_grad=True)], **kwargs)


def test_param_in_two_groups_is_rejected():
    p, q = distnn.ones(2, requires_grad=True), distnn.ones(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [q, p]})
    opt.add_param_group({"params": q, "lr": 0.5})
    assert opt.param_groups[1]["params"] == [q] and opt.param_groups[1]["momentum"] == 0


@pytest.mark.parametrize("params,exc,match", [
    (lambda: [], ValueError, "empty parameter list"),
    (lambda: distnn.ones(2, requires_grad=True), TypeError, "iterable of Tensors or dicts"),
    (lambda: [np.ones(2)], TypeError, "can only optimize Tensors"),
    (lambda: [distnn.ones(2, requires_grad=True) * 2], ValueError, "can't optimize a non-leaf Tensor"),
    (lambda: {distnn.ones(2, requires_grad=True)}, TypeError, "ordered collections"),
])
def test_bad_params(params, exc, match):
    spec = params()
    if isinstance(spec, set):
        spec = [{"params": spec}]
    with pytest.raises(exc, match=match):
        optim.SGD(spec, lr=0.1)


def test_unsupported_speed_flags_are_refused():
    with pytest.raises(NotImplementedError, match="fused=True"):
        optim.Adam([distnn.ones(2, requires_grad=True)], fused=True)


def test_named_parameters_keep_their_names():
    w = distnn.ones(2, requires_grad=True)
    opt = optim.SGD([("weight", w)], lr=0.1)
    assert opt.param_groups[0]["params"] == [w]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["weight"]
