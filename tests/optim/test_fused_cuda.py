"""The fused CUDA steps of SGD, Adam and AdamW (distnn/optim/fused_cuda.py): the
same optimizer on the CPU and on the GPU, from the same values and gradients,
step for step, parameters and state alike; one kernel launch per parameter and
step; the array path where a parameter is not contiguous; resuming from a CPU
state dict. test_fused_cuda_emulated.py runs the same kernels on the CPU."""

import numpy as np
import pytest

import distnn
import distnn.optim as optim
from distnn.optim import fused_cuda
from optimizer_check import feed_grads, initial_arrays, make_params, values

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not distnn.cuda.is_available(), reason="needs CuPy and a CUDA GPU")]

STEPS = 3
CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "maximize": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]
DTYPES = ["float32", "float64"]
TOL = {"float32": {"rtol": 1e-6, "atol": 1e-7}, "float64": {"rtol": 1e-13, "atol": 1e-15}}


def kernel_name(name, kwargs):
    if name == "SGD":
        return "distnn_sgd_momentum" if kwargs.get("momentum", 0) else "distnn_sgd"
    return "distnn_adam"


@pytest.fixture
def launches(monkeypatch):
    """The names of the fused kernels launched."""
    names = []
    launch = fused_cuda._launch
    monkeypatch.setattr(fused_cuda, "_launch", lambda name, *args: (names.append(name), launch(name, *args)))
    return names


def arrays_with_a_big_one(dtype):
    """optimizer_check's small shapes plus one of 77K elements: many blocks of the kernel's grid."""
    big = np.random.default_rng(1).uniform(-1, 1, size=(257, 300)).astype(dtype)
    return initial_arrays(dtype) + [big]


def gpu_params(arrays):
    return [distnn.tensor(a.copy(), device="cuda", requires_grad=True) for a in arrays]


def values_of_gpu(params):
    return [p.detach().cpu().numpy() for p in params]


def step_both(cpu, gpu, cpu_opt, gpu_opt, t, tol):
    """One step of each optimizer with the same gradients (feed_grads's, from the CPU values)."""
    feed_grads(distnn, cpu, t)
    for c, g in zip(cpu, gpu):
        g.grad = c.grad.to("cuda")
    cpu_opt.step()
    gpu_opt.step()
    for i, (c, g) in enumerate(zip(values(cpu), values_of_gpu(gpu))):
        assert c.dtype == g.dtype
        np.testing.assert_allclose(g, c, **tol, err_msg=f"param {i} after step {t + 1}")


def assert_same_state(cpu_opt, gpu_opt, tol):
    """Same groups, same state keys, dtypes and values; moments on the GPU, ``step`` a CPU scalar."""
    sd, gsd = cpu_opt.state_dict(), gpu_opt.state_dict()
    assert gsd["param_groups"] == sd["param_groups"]
    assert sorted(gsd["state"]) == sorted(sd["state"])
    for idx, state in sd["state"].items():
        assert sorted(gsd["state"][idx]) == sorted(state)
        for key, val in state.items():
            gval = gsd["state"][idx][key]
            assert gval.device.type == ("cpu" if key == "step" else "cuda"), key
            assert gval.dtype == val.dtype and tuple(gval.shape) == tuple(val.shape), key
            np.testing.assert_allclose(gval.cpu().numpy(), val.numpy(), **tol, err_msg=f"{key} of param {idx}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_the_cpu_step_for_step(name, kwargs, dtype, launches):
    arrays = arrays_with_a_big_one(dtype)
    cpu, gpu = make_params(distnn, arrays), gpu_params(arrays)
    cpu_opt, gpu_opt = getattr(optim, name)(cpu, **kwargs), getattr(optim, name)(gpu, **kwargs)
    for t in range(STEPS):
        step_both(cpu, gpu, cpu_opt, gpu_opt, t, TOL[dtype])
    assert_same_state(cpu_opt, gpu_opt, TOL[dtype])
    assert launches == [kernel_name(name, kwargs)] * (STEPS * len(arrays))


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
                                         ("AdamW", {"lr": 0.05, "amsgrad": True})])
def test_a_non_contiguous_parameter_takes_the_array_path(name, kwargs, launches):
    arrays = [a for a in initial_arrays() if a.ndim == 2]
    cpu = [distnn.tensor(a).t().detach().requires_grad_() for a in arrays]
    gpu = [distnn.tensor(a, device="cuda").t().detach().requires_grad_() for a in arrays]
    assert not any(p._data.flags.c_contiguous for p in gpu)
    cpu_opt, gpu_opt = getattr(optim, name)(cpu, **kwargs), getattr(optim, name)(gpu, **kwargs)
    for t in range(STEPS):
        step_both(cpu, gpu, cpu_opt, gpu_opt, t, TOL["float32"])
    assert_same_state(cpu_opt, gpu_opt, TOL["float32"])
    assert launches == []


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
                                         ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
                                         ("AdamW", {"lr": 0.05})])
def test_resumes_from_a_cpu_state_dict(name, kwargs, launches):
    arrays = arrays_with_a_big_one("float32")
    cpu = make_params(distnn, arrays)
    cpu_opt = getattr(optim, name)(cpu, **kwargs)
    for t in range(STEPS):
        feed_grads(distnn, cpu, t)
        cpu_opt.step()
    gpu = gpu_params(values(cpu))
    gpu_opt = getattr(optim, name)(gpu, **kwargs)
    gpu_opt.load_state_dict(cpu_opt.state_dict())
    step_both(cpu, gpu, cpu_opt, gpu_opt, STEPS, TOL["float32"])
    assert_same_state(cpu_opt, gpu_opt, TOL["float32"])
    assert launches == [kernel_name(name, kwargs)] * len(arrays)
