"""What the comm-hook and join workers train, the same for distnn and torch: an MLP's
initial weights, each rank's batches, and the hook and join configurations, all from
fixed NumPy seeds (the workers build their own model from these arrays)."""

from pathlib import Path

import numpy as np

HOOK_SIZES = (20, 32, 16, 10)  # three Linear layers: every weight compressible by PowerSGD at rank <= 3
JOIN_SIZES = (8, 16, 4)  # Linear, BatchNorm1d, ReLU, Linear: buffers exercise join's broadcasts
BATCH = 16
LR = 0.1

POWERSGD = {  # name -> PowerSGDState keyword arguments
    "powersgd_rank1": dict(matrix_approximation_rank=1, start_powerSGD_iter=3),
    "powersgd_rank3_qr": dict(matrix_approximation_rank=3, start_powerSGD_iter=2, min_compression_rate=1),
    "powersgd_plain": dict(matrix_approximation_rank=2, start_powerSGD_iter=2, use_error_feedback=False,
                           warm_start=False, random_seed=5),
    "powersgd_batched": dict(matrix_approximation_rank=1, start_powerSGD_iter=2, batch_tensors_with_same_shape=True,
                             orthogonalization_epsilon=1e-8),
}
HOOKS = ("none", "allreduce", "fp16", "bf16", *POWERSGD)
# join runs -> (divide_by_initial_world_size, comm hook): joined ranks run the hook on zeros
JOIN_RUNS = {"initial": (True, None), "active": (False, None), "allreduce_hook": (True, "allreduce"),
             "powersgd": (False, "powersgd")}
JOIN_POWERSGD = dict(matrix_approximation_rank=1, start_powerSGD_iter=2)


def linear_weights(sizes, seed=7):
    """[(weight (out, in), bias (out,)), ...] as PyTorch's default init would draw them."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(fan_in)
        layers.append((rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32),
                       rng.uniform(-bound, bound, fan_out).astype(np.float32)))
    return layers


def batch(rank, step, features, classes):
    """Rank ``rank``'s inputs for ``step`` and their classes, which a fixed linear teacher
    assigns (so there is something to learn and the loss falls)."""
    x = np.random.default_rng(1000 * rank + step).standard_normal((BATCH, features)).astype(np.float32)
    teacher = np.random.default_rng(99).standard_normal((features, classes)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int64)


def join_batches(rank):
    """Uneven inputs: rank r has 3 + 2r batches, so rank 0 joins first and the last rank last."""
    return 3 + 2 * rank


def sgd_step(lib, model, opt, rank, i, sizes):
    """One step of ``opt`` on rank ``rank``'s batch ``i`` of layer ``sizes``, in ``lib``
    (distnn or torch: the same calls); returns the loss."""
    x, y = batch(rank, i, sizes[0], sizes[-1])
    opt.zero_grad()
    loss = lib.nn.functional.cross_entropy(model(lib.from_numpy(x)), lib.from_numpy(y))
    loss.backward()
    opt.step()
    return loss.item()


def save(path, model, losses, **extra):
    """``model``'s parameters (as ``param.<name>``), the losses and ``extra`` arrays, to ``path``."""
    state = {f"param.{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    np.savez(Path(path), losses=np.array(losses), **state, **extra)


def params(run):
    """The parameters among a loaded ``save`` file's arrays."""
    return {k: v for k, v in run.items() if k.startswith("param.")}

