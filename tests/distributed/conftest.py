"""Fixtures of the distributed tests: ``algorithms``, a spy on the all-reduce algorithms."""

import pytest

from distnn.distributed import collectives, hierarchical

ALGORITHMS = {"_recursive_doubling_all_reduce": "recursive_doubling", "_direct_all_reduce": "direct",
              "ring_all_reduce": "ring", "_shm_one_round": "shm_one_round", "_shm_two_rounds": "shm_two_rounds"}


@pytest.fixture
def algorithms(monkeypatch):
    """The all-reduce algorithms that ran, as (name, global ranks of the exchange): those of
    ``collectives`` and the two-level one of ``hierarchical`` (whose lanes run the former)."""
    used = set()

    def spy(original, name):
        def run(ex, *args):
            used.add((name, tuple(ex.members)))
            return original(ex, *args)
        return run
    for function, name in ALGORITHMS.items():
        monkeypatch.setattr(collectives, function, spy(getattr(collectives, function), name))
    monkeypatch.setattr(hierarchical, "all_reduce", spy(hierarchical.all_reduce, "hierarchical"))
    return used
