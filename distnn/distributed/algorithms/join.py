"""The generic join context manager for uneven inputs, as ``torch.distributed.algorithms.join``:
``Join``, ``Joinable`` and ``JoinHook``.

Every iteration, each rank that still has data calls ``Join.notify_join_context``
(DDP's forward does), which all-reduces a 1. A rank that has run out leaves its
loop and, in ``Join.__exit__``, all-reduces a 0 in step with that: while the sum
is non-zero someone is still training, and the joined rank runs every joinable's
``main_hook`` to shadow that iteration's collectives. Once the sum is 0 every rank
has joined, and each runs its ``post_hook`` (DDP's copies the last joiner's model
to all). With ``throw_on_early_termination`` the first rank to run out makes every
rank raise instead.
"""

import warnings
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from .. import collective_ops

__all__ = ["JoinHook", "Joinable", "Join"]


class JoinHook:
    """Two entry points of a joined rank: ``main_hook`` (called while some rank still
    trains, to shadow one iteration's collectives) and ``post_hook(is_last_joiner)``
    (once all have joined)."""

    def main_hook(self):
        """Shadow one training iteration's collectives of the ranks still training."""

    def post_hook(self, is_last_joiner):
        """Run once every rank has joined; ``is_last_joiner`` says whether this rank was
        among the last to."""


class Joinable(ABC):
    """A class whose collectives a joined rank can shadow: implements ``join_hook``,
    ``join_device`` and ``join_process_group``, and calls ``Join.notify_join_context``
    before each iteration's collectives."""

    @abstractmethod
    def __init__(self):
        super().__init__()
        self._join_config = _JoinConfig.construct_disabled_join_config()

    @abstractmethod
    def join_hook(self, **kwargs):
        """The ``JoinHook`` of this joinable; ``kwargs`` are those given to ``Join``."""

    @property
    @abstractmethod
    def join_device(self):
        """The device the join context's own all-reduces use."""

    @property
    @abstractmethod
    def join_process_group(self):
        """The process group the join context's own all-reduces use."""


class _JoinConfig(NamedTuple):
    enable: bool
    throw_on_early_termination: bool
    is_first_joinable: bool

    @staticmethod
    def construct_disabled_join_config():
        return _JoinConfig(enable=False, throw_on_early_termination=False, is_first_joinable=False)


class Join:
    """Context manager around a training loop whose ranks may run different numbers of
    iterations. ``joinables``: the participating ``Joinable`` objects (hooks run in this
    order); ``enable=False`` turns it into a no-op; ``throw_on_early_termination=True``
    makes every rank raise RuntimeError once any rank runs out of inputs. Extra keyword
    arguments go to every ``join_hook`` (e.g. DDP's ``divide_by_initial_world_size``)."""

    WARN_THRESHOLD = 1000

    def __init__(self, joinables, enable=True, throw_on_early_termination=False, **kwargs):
        if len(joinables) == 0:
            raise ValueError("The join context manager requires at least one joinable")
        self._joinables = list(joinables)
        self._join_hooks = [joinable.join_hook(**kwargs) for joinable in self._joinables]
        self._enable = enable
        self._throw_on_early_termination = throw_on_early_termination
        for i, joinable in enumerate(self._joinables):
            joinable._join_config = _JoinConfig(enable=enable, throw_on_early_termination=throw_on_early_termination,
                                                is_first_joinable=i == 0)
        groups = [joinable.join_process_group for joinable in self._joinables]
        if any(g is not groups[0] for g in groups):
            raise ValueError(f"Expect: one process group among the joinables, Actual: {groups}")
        self._process_group = groups[0]
        self._device = self._joinables[0].join_device
        self._rank = collective_ops.get_rank(self._process_group)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if not self._enable or kind is not None:
                return False  # an exception raised in the loop propagates as it is
            is_last_joiner = True
            shadowed = 0
            while self._get_num_nonjoined_procs() > 0:
                if shadowed == self.WARN_THRESHOLD:
                    warnings.warn(f"Detected uneven input skew of greater than {self.WARN_THRESHOLD}. This means "
                                  f"that rank {self._rank} has at least {self.WARN_THRESHOLD} fewer inputs than "
                                  "other currently-active ranks. This level of skew could lead to performance "
                                  "degradation during training.", stacklevel=2)
                if self._throw_on_early_termination:
                    self._notify_procs_to_terminate()
                for hook in self._join_hooks:
                    hook.main_hook()
                is_last_joiner = False
                shadowed += 1
            for hook in self._join_hooks:
                hook.post_hook(is_last_joiner)
            return False
        finally:
            for joinable in self._joinables:
                joinable._join_config = _JoinConfig.construct_disabled_join_config()

    def _get_num_nonjoined_procs(self):
        """Shadow the 1s the ranks still training all-reduce: their count."""
        count = np.zeros(1, np.float32)
        collective_ops.all_reduce(count, group=self._process_group)
        return int(count[0])

    def _notify_procs_to_terminate(self):
        ones = np.ones(1, np.float32)
        collective_ops.all_reduce(ones, group=self._process_group)
        raise RuntimeError(f"Rank {self._rank} exhausted all inputs.")

    @staticmethod
    def notify_join_context(joinable):
        """Called by a joinable before its per-iteration collectives: all-reduce a 1 to
        say this rank has not joined (first joinable only); with
        ``throw_on_early_termination``, raise RuntimeError if some rank has. Returns
        ``(work, array)`` of that all-reduce (its sum: the ranks not joined), or None."""
        if not hasattr(joinable, "_join_config"):
            raise AssertionError(f"Check that the {type(joinable).__name__} constructor calls the "
                                 "``Joinable`` constructor")
        config = joinable._join_config
        if not config.is_first_joinable or not config.enable:
            return None
        group = joinable.join_process_group
        ones = np.ones(1, np.float32)
        work = collective_ops.all_reduce(ones, group=group, async_op=True)
        if config.throw_on_early_termination:
            joined = np.zeros(1, np.float32)
            collective_ops.all_reduce(joined, group=group)
            if joined[0]:
                raise RuntimeError("Detected at least one rank that exhausted inputs. Throwing across all ranks.")
        return work, ones
