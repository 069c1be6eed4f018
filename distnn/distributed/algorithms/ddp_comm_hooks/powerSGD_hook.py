"""PowerSGD gradient compression (Vogels et al., 2019) as a DDP communication hook,
with torch's ``PowerSGDState`` and ``powerSGD_hook`` semantics.

Until ``start_powerSGD_iter`` steps have run the hook averages plainly. Then, per
bucket: the local error of the last step is added (error feedback); each gradient
viewed as an n x m matrix M (its first dim by the rest) is compressed when
``(n + m) * rank * min_compression_rate < n * m``, the rest (1-D tensors, small
ones) are averaged uncompressed in one all-reduce. For each compressed M: P = M Q
(Q random and orthogonalized on the first step, then the last step's Q, with
``warm_start``), P summed over ranks and orthogonalized (Gram-Schmidt up to rank 2,
QR above, as torch), Q = M^T P summed and divided by the world size, and M becomes
P Q^T. The difference between what went in and what came out is the next step's error.

The first Q comes from ``state.rng`` as in torch (a seed drawn from
``numpy.random.RandomState(random_seed)``), through distnn's generator: the same on
every rank, not torch's numbers. The uncompressed and P all-reduces start when the
bucket is ready; Q's when DDP waits for the bucket at the end of backward.
"""

import logging
from collections import defaultdict

import numpy as np

from ....backend import array_module
from ....creation import randn
from ....futures import collect_all, work_future
from ....random import Generator
from ....tensor import _wrap
from ... import collective_ops
from . import default_hooks

__all__ = ["PowerSGDState", "powerSGD_hook"]

logger = logging.getLogger(__name__)


def _orthogonalize(matrices, epsilon=0):
    """Orthonormalize the columns of each matrix of the batch ``matrices`` (b, n, r), r <= n,
    in place: Gram-Schmidt for rank <= 2 or float16, QR otherwise (as torch)."""
    if matrices.ndim != 3 or matrices.shape[2] > matrices.shape[1]:
        raise ValueError(f"Expect: a batch of n x r matrices with r <= n, Actual: shape {matrices.shape}")
    if matrices.shape[2] <= 2 or matrices.dtype == np.float16:
        _orthogonalize_gram_schmidt(matrices, epsilon)
    else:
        xp = array_module(matrices)
        matrices[...] = xp.linalg.qr(matrices, mode="reduced")[0]


def _orthogonalize_gram_schmidt(matrices, epsilon=0):
    """Gram-Schmidt on each matrix's columns; ``epsilon`` keeps an all-zero column from
    dividing by zero (with 0, such a column becomes NaN, as in torch)."""
    xp = array_module(matrices)
    num_cols = matrices.shape[2]
    for i in range(num_cols):
        col = matrices[:, :, i:i + 1]
        norm = xp.sqrt(xp.sum(col * col, axis=1, keepdims=True))
        col /= norm if epsilon == 0 else norm + epsilon
        if i + 1 < num_cols:
            rest = matrices[:, :, i + 1:]
            rest -= xp.sum(col * rest, axis=1, keepdims=True) * col


def _should_compress(num_rows, num_cols, matrix_approximation_rank, min_compression_rate):
    """(worth compressing, elements uncompressed, elements compressed) of an n x m matrix."""
    uncompressed_size = num_rows * num_cols
    compressed_size = (num_rows + num_cols) * matrix_approximation_rank
    return compressed_size * min_compression_rate < uncompressed_size, uncompressed_size, compressed_size


def _report_compression_stats(bucket, state):
    if bucket.is_last() and state.iter >= state.next_stats_report:
        stats = state.compression_stats()
        logger.info("Compression stats: iter %s, total before compression %s, total after compression %s, "
                    "rate %s", state.iter, stats[1], stats[2], stats[0])
        state.next_stats_report = state.iter + state.compression_stats_logging_frequency


class PowerSGDState:
    """PowerSGD's hyperparameters and per-bucket state (errors, P and Q), as torch's.

    ``matrix_approximation_rank``: the rank r of the factors (1-4 usually); plain
    averaging for the first ``start_powerSGD_iter`` steps; a matrix is compressed only
    when that saves ``min_compression_rate`` x; ``use_error_feedback`` carries each
    step's compression error into the next; ``warm_start`` reuses the last Q;
    ``orthogonalization_epsilon`` guards against zero columns; ``random_seed`` seeds
    the first Q; ``batch_tensors_with_same_shape`` compresses same-shaped gradients of
    a bucket in one batched product."""

    __slots__ = ["process_group", "matrix_approximation_rank", "start_powerSGD_iter", "min_compression_rate",
                 "orthogonalization_epsilon", "use_error_feedback", "warm_start", "batch_tensors_with_same_shape",
                 "rng", "error_dict", "p_memory_dict", "q_memory_dict", "iter", "total_numel_before_compression",
                 "total_numel_after_compression", "compression_stats_logging_frequency", "next_stats_report"]

    def __init__(self, process_group, matrix_approximation_rank=1, start_powerSGD_iter=1_000,
                 min_compression_rate=2, use_error_feedback=True, warm_start=True, orthogonalization_epsilon=0,
                 random_seed=0, compression_stats_logging_frequency=10_000, batch_tensors_with_same_shape=False):
        if (use_error_feedback or warm_start) and start_powerSGD_iter <= 1:
            raise ValueError("Expect `start_powerSGD_iter` > 1 if `use_error_feedback` or `warm_start` is enabled, "
                             "because PowerSGD can only be applied after the first two iterations in DDP.")
        self.process_group = process_group
        self.matrix_approximation_rank = matrix_approximation_rank
        self.start_powerSGD_iter = start_powerSGD_iter
        self.min_compression_rate = min_compression_rate
        self.use_error_feedback = use_error_feedback
        self.warm_start = warm_start
        self.orthogonalization_epsilon = orthogonalization_epsilon
        self.rng = np.random.RandomState(random_seed)
        self.error_dict = {}
        self.p_memory_dict = {}
        self.q_memory_dict = {}
        self.iter = 0
        self.total_numel_before_compression = 0
        self.total_numel_after_compression = 0
        self.compression_stats_logging_frequency = max(1, compression_stats_logging_frequency)
        self.next_stats_report = 0
        self.batch_tensors_with_same_shape = batch_tensors_with_same_shape

    def __getstate__(self):
        """Everything but the process group (which cannot be saved)."""
        return {slot: getattr(self, slot) for slot in self.__slots__ if slot != "process_group"}

    def __setstate__(self, state):
        self.process_group = None  # the default group
        for slot, value in state.items():
            setattr(self, slot, value)

    def maybe_increase_iter(self, bucket):
        """Count a step when its last bucket is processed."""
        if bucket.is_last():
            self.iter += 1
        if self.iter == self.start_powerSGD_iter:
            logger.info("Start to apply PowerSGD after %s iterations.", self.iter)

    def compression_stats(self):
        """(compression rate, elements before compression, elements after) so far."""
        before, after = self.total_numel_before_compression, self.total_numel_after_compression
        return (before / after if after > 0 else 0), before, after


def powerSGD_hook(state, bucket):
    """Average the bucket with PowerSGD compression (see the module docstring); returns
    a Future of the bucket's new contents."""
    group = state.process_group
    world_size = collective_ops.get_world_size(group)
    input_tensor = bucket.buffer()
    if state.iter < state.start_powerSGD_iter:
        state.maybe_increase_iter(bucket)
        return default_hooks._allreduce_fut(group, input_tensor)

    flat = input_tensor._data
    xp, dtype = array_module(flat), flat.dtype
    index = bucket.index()
    input_copy = None
    if state.use_error_feedback:
        if index in state.error_dict:
            flat += state.error_dict[index]._data
        else:
            logger.info("A zero tensor of length %s that represents local error is created.", flat.size)
            state.error_dict[index] = _wrap(xp.zeros(flat.size, dtype))
        input_copy = flat.copy()

    to_compress, uncompressed = [], []
    total_ps, total_qs = 0, 0
    for grad in (g._data for g in bucket.gradients()):
        matrix = grad.reshape(grad.shape[0] if grad.ndim else 1, -1)
        n, m = matrix.shape
        rank = min(n, m, state.matrix_approximation_rank)
        worth, before, after = _should_compress(n, m, rank, state.min_compression_rate)
        state.total_numel_before_compression += before
        if worth:
            to_compress.append(matrix)
            total_ps += n * rank
            total_qs += m * rank
            state.total_numel_after_compression += after
        else:
            uncompressed.append(grad)
            state.total_numel_after_compression += before
    _report_compression_stats(bucket, state)

    uncompressed_memory = (xp.concatenate([g.reshape(-1) for g in uncompressed]) if uncompressed
                           else xp.zeros(0, dtype))
    need_randomize_qs = not state.warm_start or index not in state.p_memory_dict
    if need_randomize_qs:
        state.p_memory_dict[index] = _wrap(xp.empty(total_ps, dtype))
        state.q_memory_dict[index] = _wrap(xp.empty(total_qs, dtype))
    p_memory, q_memory = state.p_memory_dict[index]._data, state.q_memory_dict[index]._data

    shape_to_tensors = defaultdict(list)
    for matrix in to_compress:
        shape_to_tensors[matrix.shape].append(matrix)
    batches = []
    for same_shape in shape_to_tensors.values():
        if state.batch_tensors_with_same_shape and len(same_shape) > 1:
            batches.append(xp.stack(same_shape))
        else:
            batches += [matrix[None] for matrix in same_shape]

    ps, qs = [], []
    p_idx = q_idx = 0
    for batch in batches:
        b, n, m = batch.shape
        rank = min(n, m, state.matrix_approximation_rank)
        ps.append(p_memory[p_idx:p_idx + b * n * rank].reshape(b, n, rank))
        qs.append(q_memory[q_idx:q_idx + b * m * rank].reshape(b, m, rank))
        p_idx += b * n * rank
        q_idx += b * m * rank

    if need_randomize_qs:
        generator = Generator().manual_seed(state.rng.randint(1_000_000_000))
        for q in qs:
            q[...] = xp.asarray(randn(*q.shape, generator=generator, dtype=input_tensor.dtype)._data)
            _orthogonalize(q, state.orthogonalization_epsilon)
    else:
        for q in qs:
            _orthogonalize(q, state.orthogonalization_epsilon)
    for batch, q, p in zip(batches, qs, ps):
        xp.matmul(batch, q, out=p)

    # P = M Q does not depend on the uncompressed average: both all-reduces start now.
    uncompressed_work = collective_ops.all_reduce(uncompressed_memory, group=group, async_op=True)
    p_work = collective_ops.all_reduce(p_memory, group=group, async_op=True)

    def compute_qs(fut):
        for reduced in fut.value():
            reduced.value()  # raises the all-reduce's error, if any
        uncompressed_memory[...] /= world_size
        offset = 0
        for grad in uncompressed:
            grad[...] = uncompressed_memory[offset:offset + grad.size].reshape(grad.shape)
            offset += grad.size
        for p in ps:
            _orthogonalize(p, state.orthogonalization_epsilon)
        for batch, p, q in zip(batches, ps, qs):
            xp.matmul(batch.transpose(0, 2, 1), p, out=q)
        return collective_ops.all_reduce(q_memory, group=group, async_op=True)

    def decompress(fut):
        fut.value().wait()
        q_memory[...] /= world_size
        for p, q, batch in zip(ps, qs, batches):
            xp.matmul(p, q.transpose(0, 2, 1), out=batch)
        if state.batch_tensors_with_same_shape:
            for batch in batches:
                if batch.shape[0] > 1:
                    for i, original in enumerate(shape_to_tensors[batch.shape[1:]]):
                        original[...] = batch[i]
        if state.use_error_feedback:
            state.error_dict[index] = _wrap(input_copy - flat)
        if not state.warm_start:
            state.p_memory_dict.clear()
            state.q_memory_dict.clear()
        state.maybe_increase_iter(bucket)
        return input_tensor

    both = collect_all([work_future(uncompressed_work, None), work_future(p_work, None)])
    return both.then(compute_qs).then(decompress)
