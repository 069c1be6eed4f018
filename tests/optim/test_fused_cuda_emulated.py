"""The fused optimizer kernels (distnn/optim/fused_cuda.py) run on the CPU
(cuda_emulation: g++, one thread for the grid) against the CPU optimizers, step for
step from the same values and gradients: the same bits in the parameter and in every
state array, as the kernels promise (no fma, the array path's order of operations)."""

import numpy as np
import pytest

import distnn
import distnn.optim as optim
from cuda_emulation import HAVE_COMPILER, emulated
from distnn.optim import fused_cuda

pytestmark = pytest.mark.skipif(not HAVE_COMPILER, reason="needs g++ to build the kernels for the CPU")

SGD_CASES = [{"lr": 0.1}, {"lr": 0.1, "weight_decay": 0.1, "maximize": True}, {"lr": 0.05, "momentum": 0.9},
             {"lr": 0.05, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1},
             {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True}]
ADAM_CASES = [("Adam", {}), ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
              ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
              ("AdamW", {"lr": 0.05}), ("AdamW", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True, "maximize": True})]
STEPS = 3


def _start(dtype):
    rng = np.random.default_rng(0)
    start = rng.uniform(-1, 1, (7, 33)).astype(dtype)
    return rng, start, distnn.tensor(start.copy(), requires_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_kernels_give_the_array_paths_bits(monkeypatch, dtype, kwargs):
    emulated(monkeypatch)
    rng, param, p = _start(dtype)
    opt = optim.SGD([p], **kwargs)
    momentum = kwargs.get("momentum", 0)
    buf = None
    for _ in range(STEPS):
        grad = rng.uniform(-1, 1, param.shape).astype(dtype)
        p.grad = distnn.tensor(grad)
        opt.step()
        first = momentum != 0 and buf is None
        if first:
            buf = np.empty_like(param)
        fused_cuda.sgd_step(param, grad, buf, first=first, lr=kwargs["lr"], momentum=momentum,
                            dampening=kwargs.get("dampening", 0), weight_decay=kwargs.get("weight_decay", 0),
                            nesterov=kwargs.get("nesterov", False), maximize=kwargs.get("maximize", False))
        np.testing.assert_array_equal(param, p.detach().numpy())
        if momentum:
            np.testing.assert_array_equal(buf, opt.state[p]["momentum_buffer"].numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", ADAM_CASES)
def test_adam_kernel_gives_the_array_paths_bits(monkeypatch, dtype, name, kwargs):
    emulated(monkeypatch)
    rng, param, p = _start(dtype)
    opt = getattr(optim, name)([p], **kwargs)
    group = opt.param_groups[0]
    amsgrad = group["amsgrad"]
    moments = [np.zeros_like(param) for _ in range(2 + amsgrad)]
    lr, (beta1, beta2) = group["lr"], group["betas"]
    for step in range(1, STEPS + 1):
        grad = rng.uniform(-1, 1, param.shape).astype(dtype)
        p.grad = distnn.tensor(grad)
        opt.step()
        fused_cuda.adam_step(param, grad, *moments[:2], moments[2] if amsgrad else None, lr=lr, beta1=beta1,
                             beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                             decoupled=group["decoupled_weight_decay"], maximize=group["maximize"],
                             bias_correction2_sqrt=(1 - beta2 ** step) ** 0.5, step_size=lr / (1 - beta1 ** step))
        np.testing.assert_array_equal(param, p.detach().numpy())
        for key, got in zip(("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), moments):
            np.testing.assert_array_equal(got, opt.state[p][key].numpy(), err_msg=key)
