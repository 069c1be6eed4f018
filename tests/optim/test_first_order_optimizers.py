"""Adadelta, Adamax, NAdam, RAdam, ASGD and Rprop: trajectories and state dicts side
by side with PyTorch in float32 and float64, a float64 textbook reference,
hand-computed behaviour (ASGD's averaging, Rprop's sign rule), state-dict round
trips (ours and torch's) and PyTorch's constructor errors."""

import numpy as np
import pytest

import distnn
import distnn.optim as optim
from op_check import requires_torch, torch
from optimizer_check import Ref, feed_grads, initial_arrays, make_params, trajectory, values

STEPS = 12
DTYPES = ["float32", "float64"]

CASES = [
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adadelta", {"rho": 0.95, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.05, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.05, "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "betas": (0.8, 0.99)}),
    ("NAdam", {"lr": 0.05, "eps": 1e-6, "maximize": True}),
    ("RAdam", {}),  # rho_t <= 5 (plain momentum) for 5 steps, then the rectified adaptive step
    ("RAdam", {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.05, "betas": (0.7, 0.8), "eps": 1e-6, "maximize": True}),
    ("ASGD", {}),
    ("ASGD", {"lr": 0.05, "lambd": 0.01, "alpha": 0.5, "t0": 3, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.05, "t0": 0, "maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}),
    ("Rprop", {"lr": 0.1, "maximize": True}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]
NAMES = ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"]
TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}


def assert_same_trajectory(ours, theirs, dtype):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert x.dtype == y.dtype
            np.testing.assert_allclose(x, y, **TOL[dtype], err_msg=f"param {i} after step {t + 1}")


def assert_same_state_dict(sd, tsd, dtype):
    """Same param groups, same state keys per parameter, same dtypes and values."""
    for group in tsd["param_groups"]:
        group["foreach"] = None  # torch was asked for its single-tensor path explicitly
    assert sd["param_groups"] == tsd["param_groups"]
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for idx, tstate in tsd["state"].items():
        assert sorted(sd["state"][idx]) == sorted(tstate)
        for key, tval in tstate.items():
            val = sd["state"][idx][key]
            assert isinstance(val, distnn.Tensor) and tuple(val.shape) == tuple(tval.shape), key
            assert str(val.dtype) == str(tval.dtype), key
            np.testing.assert_allclose(val.numpy(), tval.numpy(), **TOL[dtype], err_msg=key)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_torch_every_step(name, kwargs, dtype):
    arrays = initial_arrays(dtype)
    ours, opt, _ = trajectory(distnn, name, kwargs, arrays, STEPS)
    theirs, topt, _ = trajectory(torch, name, kwargs, arrays, STEPS)
    assert_same_trajectory(ours, theirs, dtype)
    assert_same_state_dict(opt.state_dict(), topt.state_dict(), dtype)


def from_torch(state_dict):
    """torch's state dict with its tensors as distnn tensors (same dtypes)."""
    def convert(v):
        if isinstance(v, torch.Tensor):
            return distnn.tensor(v.detach().numpy().copy())
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(convert(x) for x in v)
        return v
    return convert(state_dict)


@requires_torch
@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[8], CASES[12], CASES[15], CASES[18]],
                         ids=[CASE_IDS[i] for i in (1, 8, 12, 15, 18)])
def test_loads_torch_state_dict_and_continues_like_torch(name, kwargs):
    """torch's state dict, loaded into ours, continues exactly as torch does (both sides
    load it, so both cast their 0-d state to float64 as PyTorch's loader does)."""
    arrays = initial_arrays("float64", seed=2)
    _, topt, tparams = trajectory(torch, name, kwargs, arrays, steps=5)
    params = make_params(distnn, values(tparams))
    opt = getattr(optim, name)(params, **kwargs)
    opt.load_state_dict(from_torch(topt.state_dict()))
    topt.load_state_dict(topt.state_dict())
    for idx, tstate in topt.state_dict()["state"].items():
        for key, tval in tstate.items():
            assert str(opt.state_dict()["state"][idx][key].dtype) == str(tval.dtype), key
    ours, _, _ = trajectory(distnn, name, kwargs, None, steps=5, start=5, opt=opt, params=params)
    theirs, _, _ = trajectory(torch, name, kwargs, None, steps=5, start=5, opt=topt, params=tparams)
    assert_same_trajectory(ours, theirs, "float64")


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    arrays = initial_arrays(seed=5)
    _, opt, params = trajectory(distnn, name, kwargs, arrays, steps=4)
    clone = make_params(distnn, values(params))
    opt2 = getattr(optim, name)(clone, **kwargs)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["params"][0] is clone[0]
    ours, _, _ = trajectory(distnn, name, kwargs, None, steps=4, start=4, opt=opt, params=params)
    loaded, _, _ = trajectory(distnn, name, kwargs, None, steps=4, start=4, opt=opt2, params=clone)
    for x, y in zip(ours, loaded):
        for a, b in zip(x, y):
            np.testing.assert_array_equal(a, b)


def test_loaded_state_is_a_copy():
    p = distnn.ones(3, requires_grad=True)
    opt = optim.ASGD([p], t0=0)
    p.grad = distnn.ones(3)
    opt.step()
    saved = opt.state_dict()
    eta = saved["state"][0]["eta"].item()
    opt.load_state_dict(saved)
    p.grad = distnn.ones(3)
    opt.step()
    assert saved["state"][0]["eta"].item() == eta
    assert opt.state[p]["eta"].item() != eta


@requires_torch
@pytest.mark.parametrize("name", NAMES)
def test_repr_and_defaults_match_torch(name):
    ours = getattr(optim, name)([distnn.zeros(2, requires_grad=True)], lr=0.5)
    theirs = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], lr=0.5)
    assert repr(ours) == repr(theirs)
    assert ours.defaults == theirs.defaults


# --- a float64 textbook reference (no torch needed) -----------------------------------------

DEFAULTS = {
    "Adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "Adamax": {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8},
    "NAdam": {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 4e-3},
    "RAdam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
    "ASGD": {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6},
    "Rprop": {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50)},
}


def reference_update(name, kw, p, g, st, t):
    """One step of the algorithm as PyTorch documents it, in float64 numpy."""
    kw = {**DEFAULTS[name], **kw}
    lr, wd = kw["lr"], kw.get("weight_decay", 0)
    g = -g if kw.get("maximize") else g
    if kw.get("decoupled_weight_decay"):
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    if name == "Adadelta":
        rho, eps = kw["rho"], kw["eps"]
        st["v"] = rho * st.get("v", 0) + (1 - rho) * g * g
        delta = np.sqrt(st.get("u", 0) + eps) / np.sqrt(st["v"] + eps) * g
        st["u"] = rho * st.get("u", 0) + (1 - rho) * delta * delta
        return p - lr * delta
    if name == "Rprop":
        (eta_minus, eta_plus), (lo, hi) = kw["etas"], kw["step_sizes"]
        prod = g * st.get("prev", 0)
        factor = np.where(prod > 0, eta_plus, np.where(prod < 0, eta_minus, 1.0))
        st["size"] = np.clip(st.get("size", lr) * factor, lo, hi)
        g = np.where(prod < 0, 0.0, g)
        st["prev"] = g
        return p - np.sign(g) * st["size"]
    if name == "ASGD":
        eta = float(np.float32(st.get("eta", lr)))  # PyTorch keeps eta and mu as float32 scalars
        p = p * (1 - kw["lambd"] * eta) - eta * g
        mu = float(np.float32(st.get("mu", 1.0)))
        st["ax"] = p.copy() if mu == 1 else st["ax"] + (p - st["ax"]) * mu
        st["eta"] = lr / (1 + kw["lambd"] * lr * t) ** kw["alpha"]
        st["mu"] = 1 / max(1, t - kw["t0"])
        return p
    b1, b2 = kw["betas"]
    st["m"] = b1 * st.get("m", 0) + (1 - b1) * g
    if name == "Adamax":
        st["u"] = np.maximum(b2 * st.get("u", 0), np.abs(g) + kw["eps"])
        return p - lr / (1 - b1 ** t) * st["m"] / st["u"]
    st["v"] = b2 * st.get("v", 0) + (1 - b2) * g * g
    if name == "NAdam":
        def mu(k):
            return b1 * (1 - 0.5 * 0.96 ** (k * kw["momentum_decay"]))
        st["mu_prod"] = np.float32(st.get("mu_prod", 1.0) * np.float32(mu(t)))  # a float32 scalar
        m_hat = (mu(t + 1) * st["m"] / (1 - float(st["mu_prod"]) * mu(t + 1))
                 + (1 - mu(t)) * g / (1 - float(st["mu_prod"])))
        return p - lr * m_hat / (np.sqrt(st["v"] / (1 - b2 ** t)) + kw["eps"])
    m_hat = st["m"] / (1 - b1 ** t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
    if rho_t <= 5:
        return p - lr * m_hat
    rect = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return p - lr * m_hat * rect * np.sqrt(1 - b2 ** t) / (np.sqrt(st["v"]) + kw["eps"])


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_textbook_reference(name, kwargs):
    arrays = initial_arrays("float64", seed=7)
    ours, opt, params = trajectory(distnn, name, kwargs, arrays, STEPS)
    refs = [Ref(a.copy()) for a in arrays]
    states = [{} for _ in refs]
    for t in range(STEPS):
        feed_grads(Ref, refs, t)
        for r, st in zip(refs, states):
            r.value = reference_update(name, kwargs, r.value, r.grad, st, t + 1)
        for i, r in enumerate(refs):
            np.testing.assert_allclose(ours[t][i], r.value, rtol=1e-10, atol=1e-12,
                                       err_msg=f"param {i} after step {t + 1}")
    if name == "ASGD":
        for p, st in zip(params, states):
            np.testing.assert_allclose(opt.state[p]["ax"].numpy(), st["ax"], rtol=1e-10, atol=1e-12)


# --- hand-computed behaviour (no torch needed) ------------------------------------------------

def test_asgd_ax_is_the_average_of_the_iterates_after_t0():
    """mu = 1 / (step - t0) makes ax the running mean of the iterates from step t0 + 2."""
    p = distnn.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.ASGD([p], lr=0.1, lambd=0.0, t0=2)
    iterates = []
    for k in range(1, 8):
        p.grad = distnn.tensor([0.5 * k, -0.25])
        opt.step()
        iterates.append(p.detach().numpy().copy())
        expected = np.mean(iterates[3:], axis=0) if k >= 4 else iterates[-1]
        np.testing.assert_allclose(opt.state[p]["ax"].numpy(), expected, rtol=1e-6)
    assert opt.state[p]["mu"].item() == pytest.approx(1 / 5)
    assert opt.state[p]["eta"].item() == pytest.approx(0.1, rel=1e-6)  # lambd = 0: constant


def test_rprop_grows_shrinks_and_skips_after_a_sign_flip():
    p = distnn.zeros(3, requires_grad=True)
    opt = optim.Rprop([p], lr=0.1, etas=(0.5, 2.0), step_sizes=(0.01, 0.3))
    trail = []
    for g in ([1.0, 1.0, 0.0], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [1.0, 1.0, 2.0]):
        p.grad = distnn.tensor(g)
        opt.step()
        trail.append((p.detach().numpy().tolist(), opt.state[p]["step_size"].numpy().tolist()))
    a, b, c = 0.1, 0.05, 0.1
    expected = [  # sizes: 0.1 -> x2 while the sign holds (capped at 0.3), x0.5 on a flip
        ([-a, -a, 0.0], [0.1, 0.1, 0.1]),
        ([-a - 0.2, -a, -c], [0.2, b, 0.1]),         # flip on 2: size halves, no step
        ([-a - 0.5, -a - b, -c - 0.2], [0.3, b, 0.2]),  # after a flip the product is 0: size kept
        ([-a - 0.8, -a - b - 0.1, -c - 0.5], [0.3, 0.1, 0.3]),
    ]
    for (pv, sv), (pe, se) in zip(trail, expected):
        np.testing.assert_allclose(pv, pe, rtol=1e-6)
        np.testing.assert_allclose(sv, se, rtol=1e-6)


def test_state_dict_layout():
    w = distnn.ones(2, 2, requires_grad=True)
    keys = {"Adadelta": ["acc_delta", "square_avg", "step"], "Adamax": ["exp_avg", "exp_inf", "step"],
            "NAdam": ["exp_avg", "exp_avg_sq", "mu_product", "step"], "RAdam": ["exp_avg", "exp_avg_sq", "step"],
            "ASGD": ["ax", "eta", "mu", "step"], "Rprop": ["prev", "step", "step_size"]}
    for name, expected in keys.items():
        opt = getattr(optim, name)([w])
        w.grad = distnn.ones(2, 2)
        opt.step()
        state = opt.state_dict()["state"][0]
        assert sorted(state) == expected, name
        assert state["step"].dtype == distnn.float32 and state["step"].item() == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped(name):
    a, b = distnn.ones(3, requires_grad=True), distnn.ones(3, requires_grad=True)
    opt = getattr(optim, name)([a, b], lr=0.1)
    a.grad = distnn.ones(3)
    version = b._version
    opt.step()
    assert np.all(a.detach().numpy() < 1.0)
    assert b.detach().numpy().tolist() == [1.0, 1.0, 1.0]
    assert b._version == version and b not in opt.state


@pytest.mark.parametrize("name", NAMES)
def test_step_with_closure_returns_its_loss(name):
    p = distnn.ones(2, requires_grad=True)
    opt = getattr(optim, name)([p])

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    assert p._version > 0


# --- construction errors (PyTorch's messages; checked against torch when it is there) -------

@pytest.mark.parametrize("name,kwargs,match", [
    ("Adadelta", {"lr": -1}, "Invalid learning rate: -1"),
    ("Adadelta", {"rho": 1.5}, "Invalid rho value: 1.5"),
    ("Adadelta", {"rho": -0.1}, "Invalid rho value: -0.1"),
    ("Adadelta", {"eps": -1e-6}, "Invalid epsilon value: -1e-06"),
    ("Adadelta", {"weight_decay": -1}, "Invalid weight_decay value: -1"),
    ("Adamax", {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ("Adamax", {"eps": -1}, "Invalid epsilon value: -1"),
    ("NAdam", {"momentum_decay": -0.1}, "Invalid momentum_decay value: -0.1"),
    ("NAdam", {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    ("RAdam", {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1: 1.0"),
    ("RAdam", {"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
    ("ASGD", {"lr": -0.1}, "Invalid learning rate: -0.1"),
    ("ASGD", {"weight_decay": -1}, "Invalid weight_decay value: -1"),
    ("Rprop", {"etas": (1.5, 1.2)}, "Invalid eta values: 1.5, 1.2"),
    ("Rprop", {"etas": (0.5, 0.9)}, "Invalid eta values: 0.5, 0.9"),
    ("Rprop", {"lr": -1}, "Invalid learning rate: -1"),
])
def test_invalid_options(name, kwargs, match):
    with pytest.raises(ValueError) as ours:
        getattr(optim, name)([distnn.ones(2, requires_grad=True)], **kwargs)
    assert str(ours.value) == match
    if torch is not None:
        with pytest.raises(ValueError) as theirs:
            getattr(torch.optim, name)([torch.ones(2, requires_grad=True)], **kwargs)
        assert str(theirs.value) == match


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_and_speed_flags_are_refused(name):
    with pytest.raises(TypeError, match="unexpected keyword argument 'nesterov'"):
        getattr(optim, name)([distnn.ones(2, requires_grad=True)], nesterov=True)
    with pytest.raises(NotImplementedError, match="capturable=True"):
        getattr(optim, name)([distnn.ones(2, requires_grad=True)], capturable=True)
