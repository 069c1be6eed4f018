"""``dim`` arguments read the way PyTorch reads them: one dim as a non-negative axis,
a dim list as a sorted tuple of axes. Imports nothing from distnn, so tensor.py and
every op family can share it."""


def normalize_dim(dim, ndim):
    """One dim (negative allowed) checked against ``ndim``; a 0-d tensor accepts 0 and -1."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def normalize_dims(dim, ndim, *, empty_means_all=True):
    """``dim`` (an int, a list or tuple of them, or None for every axis) as a sorted tuple
    of axes. A repeated dim is an error and a 0-d tensor has no axes, as for every PyTorch
    dim list; an empty list means every axis for reductions (the default) and none for ops
    like ``squeeze`` and ``flip`` (``empty_means_all=False``)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        if not dim:
            return tuple(range(ndim)) if empty_means_all else ()
        axes = [normalize_dim(d, ndim) for d in dim]
        if len(set(axes)) != len(axes):
            repeated = next(a for i, a in enumerate(axes) if a in axes[:i])
            raise RuntimeError(f"dim {repeated} appears multiple times in the list of dims")
    else:
        axes = [normalize_dim(dim, ndim)]
    return tuple(sorted(axes)) if ndim else ()
