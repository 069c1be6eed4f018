"""LBFGS and its strong Wolfe line search: losses, parameters and the whole state
side by side with PyTorch in float64 (least squares, a tiny sine-fitting MLP),
convergence on a time-series model, state-dict round trips and PyTorch's errors."""

import numpy as np
import pytest

import distnn
import distnn.nn as nn
import distnn.optim as optim
from distnn.optim.line_search import cubic_interpolate, strong_wolfe
from op_check import requires_torch, torch

LINE_SEARCHES = [None, "strong_wolfe"]
STATE_KEYS = ["H_diag", "al", "d", "func_evals", "n_iter", "old_dirs", "old_stps", "prev_flat_grad",
              "prev_loss", "ro", "t"]


def least_squares(lib, seed=0):
    """Parameters and loss of a 2-output linear regression, plus an unused parameter
    (its gradient stays None: LBFGS counts it as zeros)."""
    rng = np.random.default_rng(seed)
    x, w_true = rng.standard_normal((20, 3)), rng.standard_normal((3, 2))
    y = x @ w_true + 0.1 * rng.standard_normal((20, 2))
    params = [lib.tensor(a, requires_grad=True) for a in (rng.standard_normal((3, 2)), np.zeros(2), np.ones(2))]
    X, Y = lib.tensor(x), lib.tensor(y)

    def loss_fn():
        return ((X @ params[0] + params[1] - Y) ** 2).mean()
    return params, loss_fn


def sine_mlp(lib, seed=0):
    """A 1-8-1 tanh network fitting sin(x) on [-3, 3]."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, 40).reshape(-1, 1)
    arrays = (rng.standard_normal((1, 8)), 0.1 * rng.standard_normal(8), 0.5 * rng.standard_normal((8, 1)),
              np.zeros(1))
    params = [lib.tensor(a, requires_grad=True) for a in arrays]
    X, Y = lib.tensor(x), lib.tensor(np.sin(x))

    def loss_fn():
        return ((lib.tanh(X @ params[0] + params[1]) @ params[2] + params[3] - Y) ** 2).mean()
    return params, loss_fn


def rosenbrock(lib):
    """The banana valley from (-1.5, 2): line searches must bracket and zoom."""
    xy = lib.tensor([-1.5, 2.0], dtype=lib.float64, requires_grad=True)

    def loss_fn():
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2
    return [xy], loss_fn


def run(lib, problem, steps, **kwargs):
    params, loss_fn = problem(lib)
    opt = lib.optim.LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(steps)]
    return losses, params, opt, closure


def assert_same_state(ours, theirs, rtol, path="state"):
    """Same structure and types (Tensor, list, number, None), values within ``rtol``."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, distnn.Tensor), path
        assert str(ours.dtype) == str(theirs.dtype) and tuple(ours.shape) == tuple(theirs.shape), path
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=rtol, atol=rtol * 1e-3, err_msg=path)
    elif isinstance(theirs, (list, dict)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), path
        keys = sorted(theirs) if isinstance(theirs, dict) else range(len(theirs))
        if isinstance(theirs, dict):
            assert sorted(ours) == keys, path
        for k in keys:
            assert_same_state(ours[k], theirs[k], rtol, f"{path}[{k!r}]")
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=rtol), path
    else:
        assert ours == theirs, path


CASES = [
    (least_squares, 3, {}),
    (least_squares, 3, {"history_size": 3, "max_iter": 6}),
    (least_squares, 4, {"lr": 0.5, "max_iter": 8, "max_eval": 5, "tolerance_change": 1e-4}),
    (rosenbrock, 3, {"max_iter": 10, "history_size": 5}),
    (rosenbrock, 2, {"lr": 2, "max_iter": 10, "max_eval": 40}),
    (sine_mlp, 4, {"max_iter": 5, "history_size": 4}),
    (sine_mlp, 3, {"lr": 0.3, "max_iter": 10, "history_size": 6, "tolerance_grad": 1e-3}),
    (sine_mlp, 2, {"lr": 0.01, "tolerance_change": 0.05}),
]
CASE_IDS = [f"{p.__name__}-{steps}x-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
            for p, steps, kw in CASES]


@requires_torch
@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
@pytest.mark.parametrize("problem,steps,kwargs", CASES, ids=CASE_IDS)
def test_matches_torch_in_float64(problem, steps, kwargs, line_search_fn):
    kwargs = dict(kwargs, line_search_fn=line_search_fn)
    losses, params, opt, _ = run(distnn, problem, steps, **kwargs)
    tlosses, tparams, topt, _ = run(torch, problem, steps, **kwargs)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-9)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-7, atol=1e-9)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd["param_groups"] == tsd["param_groups"]
    assert sorted(sd["state"]) == [0] and sorted(sd["state"][0]) == STATE_KEYS
    assert_same_state(sd["state"], tsd["state"], rtol=1e-6)


@requires_torch
@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_loads_torch_state_dict_and_continues_like_torch(line_search_fn):
    kwargs = {"max_iter": 4, "history_size": 3, "line_search_fn": line_search_fn}
    _, tparams, topt, tclosure = run(torch, sine_mlp, 2, **kwargs)
    params, loss_fn = sine_mlp(distnn)
    with distnn.no_grad():
        for p, tp in zip(params, tparams):
            p.copy_(distnn.tensor(tp.detach().numpy()))
    opt = optim.LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.load_state_dict(to_distnn(topt.state_dict()))
    assert_same_state(opt.state_dict()["state"], topt.state_dict()["state"], rtol=0)
    for _ in range(2):
        assert opt.step(closure).item() == pytest.approx(topt.step(tclosure).item(), rel=1e-9)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-7, atol=1e-9)


def to_distnn(value):
    if isinstance(value, torch.Tensor):
        return distnn.tensor(value.detach().numpy().copy())
    if isinstance(value, dict):
        return {k: to_distnn(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_distnn(v) for v in value]
    return value


def float32_least_squares(lib):
    rng = np.random.default_rng(1)
    X = lib.tensor(rng.standard_normal((20, 3)).astype(np.float32))
    Y = lib.tensor(rng.standard_normal((20, 2)).astype(np.float32))
    params = [lib.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in ((3, 2), (2,))]
    return params, lambda: ((X @ params[0] + params[1] - Y) ** 2).mean()


@requires_torch
@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_float32_first_step_matches_torch(line_search_fn):
    """float32 stays float32 and agrees while rounding has not steered the runs apart."""
    _, params, opt, _ = run(distnn, float32_least_squares, 1, max_iter=4, line_search_fn=line_search_fn)
    _, tparams, _, _ = run(torch, float32_least_squares, 1, max_iter=4, line_search_fn=line_search_fn)
    state = opt.state[params[0]]
    assert state["d"].dtype == distnn.float32 and state["H_diag"].dtype == distnn.float32
    for p, tp in zip(params, tparams):
        assert p.dtype == distnn.float32
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-4, atol=1e-5)


@requires_torch
def test_repr_and_defaults_match_torch():
    ours = optim.LBFGS([distnn.zeros(2, requires_grad=True)], max_iter=8)
    theirs = torch.optim.LBFGS([torch.zeros(2, requires_grad=True)], max_iter=8)
    assert repr(ours) == repr(theirs)
    assert ours.defaults == theirs.defaults and ours.defaults["max_eval"] == 10


# --- no torch needed ------------------------------------------------------------------------------

@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_time_series_fit_converges_to_the_least_squares_optimum(line_search_fn):
    """An autoregressive model (nn.Linear over the last 6 values) of a noisy
    two-tone series; LBFGS reaches the loss of the exact least-squares solution."""
    rng = np.random.default_rng(0)
    t = np.arange(300)
    series = (np.sin(0.3 * t) + 0.5 * np.sin(0.11 * t) + 0.05 * rng.standard_normal(300)).astype(np.float32)
    lags = 6
    windows = np.stack([series[i:i + lags] for i in range(len(series) - lags)])
    targets = series[lags:, None]
    model = nn.Linear(lags, 1)
    opt = optim.LBFGS(model.parameters(), lr=1, max_iter=20, history_size=10, line_search_fn=line_search_fn)
    X, Y = distnn.tensor(windows), distnn.tensor(targets)

    def closure():
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    for _ in range(4):
        last = opt.step(closure).item()
    design = np.hstack([windows, np.ones((len(windows), 1))]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, targets.astype(np.float64), rcond=None)
    optimum = float(np.mean((design @ coef - targets) ** 2))
    assert first > 10 * optimum
    assert last == pytest.approx(optimum, rel=1e-3)
    assert opt.state[model.weight]["n_iter"] > 0  # the state lives under the first parameter


def test_state_dict_round_trip_continues_identically():
    kwargs = {"max_iter": 5, "history_size": 3, "line_search_fn": "strong_wolfe"}
    _, params, opt, closure = run(distnn, sine_mlp, 2, **kwargs)
    clone_params, loss_fn = sine_mlp(distnn)
    with distnn.no_grad():
        for c, p in zip(clone_params, params):
            c.copy_(p)
    clone = optim.LBFGS(clone_params, **kwargs)
    clone.load_state_dict(opt.state_dict())
    assert sorted(clone.state[clone_params[0]]) == STATE_KEYS
    saved = opt.state_dict()["state"][0]
    assert clone.state[clone_params[0]]["old_dirs"][0] is not saved["old_dirs"][0]  # copied

    def clone_closure():
        clone.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(2):
        assert clone.step(clone_closure).item() == opt.step(closure).item()
    for c, p in zip(clone_params, params):
        np.testing.assert_array_equal(c.detach().numpy(), p.detach().numpy())


def test_stops_at_once_when_the_gradient_is_below_tolerance_grad():
    p = distnn.ones(3, requires_grad=True)
    opt = optim.LBFGS([p], tolerance_grad=1e-3)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p * 1e-5).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(3e-5)
    assert calls == [1] and p.detach().numpy().tolist() == [1.0, 1.0, 1.0]
    assert opt.state[p] == {"func_evals": 1, "n_iter": 0}


@pytest.mark.parametrize("line_search_fn", LINE_SEARCHES)
def test_max_eval_bounds_the_closure_calls(line_search_fn):
    _, _, opt, _ = run(distnn, sine_mlp, 1, max_iter=50, max_eval=7, line_search_fn=line_search_fn)
    state = opt.state_dict()["state"][0]
    # the line search may overshoot by its last bracketing/zoom evaluations, as in PyTorch
    assert 7 <= state["func_evals"] <= 7 + 25
    if line_search_fn is None:
        assert state["func_evals"] == 7 and state["n_iter"] == 6


SLICES = {  # (f, gradient) of 2-d test functions, picked to reach the search's rarer branches
    "wavy": (lambda x: np.sum(np.sin(30 * x) + 10 * x ** 2), lambda x: 30 * np.cos(30 * x) + 20 * x),
    "steep": (lambda x: np.sum(np.exp(3 * x) - 1e-3 * x), lambda x: 3 * np.exp(3 * x) - 1e-3),
    "ramp": (lambda x: np.sum(x + 1e-4 * x ** 2), lambda x: 1 + 2e-4 * x),
    "bowl": (lambda x: np.sum(x ** 2), lambda x: 2 * x),
}


@requires_torch
@pytest.mark.parametrize("fn,t0,max_ls", [
    ("wavy", 1.0, 25),     # too little decrease: zoom, with trials pushed away from the ends
    ("steep", 100.0, 25),  # the bracket shrinks below tolerance_change
    ("bowl", 0.97, 25),    # overshoot: enough decrease but the slope turned positive
    ("ramp", 0.01, 2),     # the step keeps growing until the search runs out of iterations
    ("wavy", 0.001, 25),   # the first step already satisfies the conditions
])
def test_strong_wolfe_matches_torch(fn, t0, max_ls):
    from torch.optim.lbfgs import _strong_wolfe  # the reference implementation (private)

    f, grad = SLICES[fn]
    x0 = np.array([2.0, 1.0])
    d = -grad(x0)

    def ours(x, t, d):
        return float(f(x + t * d)), grad(x + t * d)

    def theirs(x, t, d):
        x = x.numpy() + float(t) * d.numpy()
        return float(f(x)), torch.tensor(grad(x))

    with np.errstate(over="ignore"):
        loss, g, t, evals = strong_wolfe(ours, x0, t0, d, float(f(x0)), grad(x0), grad(x0).dot(d), max_ls=max_ls)
    tx0, td = torch.tensor(x0), torch.tensor(d)
    tloss, tg, tt, tevals = _strong_wolfe(theirs, tx0, t0, td, float(f(x0)), torch.tensor(grad(x0)),
                                          torch.tensor(grad(x0)).dot(td), max_ls=max_ls)
    assert evals == tevals
    assert float(t) == pytest.approx(float(tt), rel=1e-9)
    assert loss == pytest.approx(tloss, rel=1e-9)
    np.testing.assert_allclose(g, tg.numpy(), rtol=1e-8)


def test_cubic_interpolate():
    # f(x) = (x - 1)^2 through x = 0 and 3: the cubic is the parabola, minimum at 1
    assert cubic_interpolate(0.0, 1.0, -2.0, 3.0, 4.0, 4.0) == pytest.approx(1.0)
    assert cubic_interpolate(3.0, 4.0, 4.0, 0.0, 1.0, -2.0) == pytest.approx(1.0)
    # clamped to the bounds; no real minimum gives the middle of the bounds
    assert cubic_interpolate(0.0, 1.0, -2.0, 3.0, 4.0, 4.0, bounds=(2.0, 5.0)) == 2.0
    assert cubic_interpolate(0.0, 0.0, 2.0, 1.0, 1.0, 2.0, bounds=(0.0, 4.0)) == 2.0


# --- errors -----------------------------------------------------------------------------------------

def test_step_needs_a_closure():
    opt = optim.LBFGS([distnn.ones(2, requires_grad=True)])
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'closure'"):
        opt.step()


def test_one_param_group_only():
    groups = [{"params": [distnn.ones(2, requires_grad=True)]}, {"params": [distnn.ones(2, requires_grad=True)]}]
    message = r"^LBFGS doesn't support per-parameter options \(parameter groups\)$"
    with pytest.raises(ValueError, match=message):
        optim.LBFGS(groups)
    opt = optim.LBFGS(groups[:1])
    opt.add_param_group(groups[1])  # accepted, as in PyTorch, but step refuses
    with pytest.raises(ValueError, match=message):
        opt.step(lambda: 0.0)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"lr": -1}, ValueError, "^Invalid learning rate: -1$"),
    ({"momentum": 0.9}, TypeError, "unexpected keyword argument 'momentum'"),
])
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        optim.LBFGS([distnn.ones(2, requires_grad=True)], **kwargs)
    if torch is not None:
        with pytest.raises(exc, match=match.replace("^", "")):
            torch.optim.LBFGS([torch.ones(2, requires_grad=True)], **kwargs)


def test_unknown_line_search_is_refused_at_step():
    p = distnn.ones(2, requires_grad=True)
    opt = optim.LBFGS([p], line_search_fn="backtracking")

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        opt.step(closure)
