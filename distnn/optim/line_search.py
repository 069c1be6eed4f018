"""The strong Wolfe line search LBFGS runs with ``line_search_fn="strong_wolfe"``:
bracket a step satisfying the strong Wolfe conditions, then zoom in on it by
safeguarded cubic interpolation (PyTorch's port of ``lswolfe.lua``).

Directional derivatives are 0-d arrays (or NumPy scalars) of the parameters'
dtype and losses are Python floats, so every comparison and interpolation is
done at the precision PyTorch does it."""

import numpy as np


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes
    ``g1`` and ``g2``, clamped to ``bounds`` (default: between the two points); the
    middle of the bounds when the cubic has no minimum."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if not d2_square >= 0:  # no real minimum (or NaN)
        return (xmin_bound + xmax_bound) / 2.0
    d2 = np.sqrt(d2_square)
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, xmin_bound), xmax_bound)


class _Bracket:
    """Two trial steps with their losses, gradients and directional derivatives;
    ``low`` indexes the one with the lower loss."""

    def __init__(self, steps, losses, grads, slopes):
        self.t, self.f, self.g, self.gtd = list(steps), list(losses), list(grads), list(slopes)
        self.reorder()

    def reorder(self):
        self.low, self.high = (0, 1) if self.f[0] <= self.f[-1] else (1, 0)

    def set(self, i, t, f, g, gtd):
        self.t[i], self.f[i], self.g[i], self.gtd[i] = t, f, g, gtd


def strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Search along ``d`` from the parameters ``x`` (loss ``f``, flat gradient ``g``,
    slope ``gtd = g . d``) starting at step ``t``. ``obj_func(x, t, d)`` returns the
    loss and flat gradient at ``x + t * d``.

    Returns ``(loss, flat_grad, t, evaluations)`` at the step found."""
    d_norm = abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    evals = 1
    gtd_new = g_new.dot(d)

    # Bracketing: grow the step until an interval must contain a Wolfe point.
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    bracket, done, ls_iter = None, False, 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = _Bracket((t_prev, t), (f_prev, f_new), (g_prev, g_new.copy()), (gtd_prev, gtd_new))
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = _Bracket((t,), (f_new,), (g_new,), (gtd_new,))
            done = True
            break
        if gtd_new >= 0:
            bracket = _Bracket((t_prev, t), (f_prev, f_new), (g_prev, g_new.copy()), (gtd_prev, gtd_new))
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        t_prev, t = t, cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                         bounds=(min_step, max_step))
        f_prev, g_prev, gtd_prev = f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket = _Bracket((0, t), (f, f_new), (g, g_new), (None, None))

    # Zoom: shrink the bracket until its low end satisfies the Wolfe conditions.
    insufficient_progress = False
    while not done and ls_iter < max_ls:
        if abs(bracket.t[1] - bracket.t[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket.t[0], bracket.f[0], bracket.gtd[0],
                              bracket.t[1], bracket.f[1], bracket.gtd[1])
        # A trial too close to an end of the bracket makes little progress; after
        # two such in a row (or one outside it) move it 10% of the width inside.
        hi, lo = max(bracket.t), min(bracket.t)
        eps = 0.1 * (hi - lo)
        if min(hi - t, t - lo) < eps:
            if insufficient_progress or t >= hi or t <= lo:
                t = hi - eps if abs(t - hi) < abs(t - lo) else lo + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket.f[bracket.low]:
            # not enough decrease, or no better than the low end: the new high end
            bracket.set(bracket.high, t, f_new, g_new.copy(), gtd_new)
            bracket.reorder()
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket.t[bracket.high] - bracket.t[bracket.low]) >= 0:
                # the minimum lies on the other side: the old low end becomes the high end
                low = bracket.low
                bracket.set(bracket.high, bracket.t[low], bracket.f[low], bracket.g[low], bracket.gtd[low])
            bracket.set(bracket.low, t, f_new, g_new.copy(), gtd_new)

    low = bracket.low
    return bracket.f[low], bracket.g[low], bracket.t[low], evals
