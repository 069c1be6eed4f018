"""Embedding's backward on a GPU without atomics: each looked-up row's gradient summed
into its table row in lookup order, as numpy's ``add.at`` does on the CPU, so the GPU
gives the CPU's bits, and the same bits every run. CuPy's ``add.at`` adds with atomics,
in whatever order the threads arrive. A stable argsort of the indices groups each
table row's lookups in their order; a thread per (run of one row, column) sums its run.
"""

import numpy as np

from .cuda_source import Source, index_type, types

_SOURCE = Source(r"""
// grad[row, c] = g[order[k], c] + g[order[k + 1], c] + ... over the run k, k + 1, ... of lookups
// of one row (order: a stable argsort of rows); a thread per (lookup, column), kept by a run's first.
extern "C" __global__ void distnn_embedding_backward(const T* g, const long long* rows, const long long* order,
                                                     T* grad, I n, I cols) {
    GRID_STRIDE_LOOP(i, n * cols) {
        I k = i / cols, c = i - k * cols;
        long long row = rows[order[k]];
        if (k > 0 && rows[order[k - 1]] == row) continue;
        T acc = (T)0;
        for (I j = k; j < n && rows[order[j]] == row; ++j) acc += g[order[j] * cols + c];
        grad[row * cols + c] = acc;
    }
}
""")


def rows_to_table(xp, g, flat, weight_shape):
    """The (rows, cols) table gradient from ``g`` (one row per entry of the flat indices
    ``flat``, in range); rows never looked up are 0."""
    rows = flat.astype(np.int64, copy=False)
    order = xp.argsort(rows, kind="stable")
    values = xp.ascontiguousarray(g.reshape(rows.size, -1))
    grad = xp.zeros(weight_shape, g.dtype)
    index = index_type(values, grad)
    _SOURCE.launch("distnn_embedding_backward", types(g.dtype, index), values.size,
                   (values, rows, order, grad, index(rows.size), index(values.shape[1])))
    return grad
