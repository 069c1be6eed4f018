"""Containers: Sequential, ModuleList, ModuleDict, ParameterList and ParameterDict
(indexing, mutation, registration and reprs, side by side with PyTorch)."""

from collections import OrderedDict

import pytest

import distnn
import distnn.nn as nn
from distnn.nn import Parameter
from op_check import requires_torch, torch


def _layers(lib):
    """Test-local layers for ``lib``: ``Scale(k)`` multiplies by k, ``Shift(k)`` adds k."""

    class Scale(lib.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k
            self.weight = lib.nn.Parameter(lib.full((1,), float(k)))

        def forward(self, x):
            return x * self.weight

        def extra_repr(self):
            return f"k={self.k}"

    class Shift(lib.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            return x + self.k

        def extra_repr(self):
            return f"k={self.k}"

    return Scale, Shift


Scale, Shift = _layers(distnn)


def _keys(container):
    return list(container._modules)


# --- Sequential ---------------------------------------------------------------------------
def test_sequential_chains_forward():
    seq = nn.Sequential(Scale(2), Shift(1), Scale(3))
    assert seq(distnn.tensor([1.0, 2.0])).tolist() == [9.0, 15.0]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "2.weight"]


def test_sequential_from_ordered_dict_keeps_names():
    seq = nn.Sequential(OrderedDict([("scale", Scale(2)), ("shift", Shift(1))]))
    assert _keys(seq) == ["scale", "shift"] and seq.scale is seq[0]
    assert seq(distnn.tensor([1.0])).tolist() == [3.0]


@pytest.mark.parametrize("idx,k", [(0, 1), (2, 3), (-1, 3), (-3, 1)])
def test_sequential_integer_index(idx, k):
    assert nn.Sequential(Scale(1), Scale(2), Scale(3))[idx].k == k


@pytest.mark.parametrize("idx", [3, -4])
def test_sequential_index_out_of_range(idx):
    with pytest.raises(IndexError, match=f"index {idx} is out of range"):
        nn.Sequential(Scale(1), Scale(2), Scale(3))[idx]


@pytest.mark.parametrize("sl", [slice(1, None), slice(None, None, -1), slice(0, 3, 2), slice(5, 9)])
def test_sequential_slice_is_a_sequential_with_the_same_children(sl):
    mods = [Scale(1), Scale(2), Scale(3)]
    part = nn.Sequential(*mods)[sl]
    assert type(part) is nn.Sequential
    assert list(part) == mods[sl]
    assert _keys(part) == [str(i) for i in range(3)][sl]  # original keys kept, as in torch


def test_sequential_mutation_renumbers():
    a, b, c, d = Scale(1), Scale(2), Scale(3), Scale(4)
    seq = nn.Sequential(a, b)
    assert seq.append(c) is seq and list(seq) == [a, b, c]
    seq.insert(1, d)
    assert list(seq) == [a, d, b, c] and _keys(seq) == ["0", "1", "2", "3"]
    seq.insert(-1, Shift(0))
    assert [type(m).__name__ for m in seq] == ["Scale", "Scale", "Scale", "Shift", "Scale"]
    del seq[3]
    assert list(seq) == [a, d, b, c] and _keys(seq) == ["0", "1", "2", "3"]
    assert seq.pop(1) is d and list(seq) == [a, b, c]
    del seq[0:2]
    assert list(seq) == [c] and _keys(seq) == ["0"]
    seq.extend([a, b])
    assert list(seq) == [c, a, b] and len(seq) == 3
    seq[1] = d
    assert seq[1] is d


def test_sequential_insert_errors():
    seq = nn.Sequential(Scale(1))
    with pytest.raises(IndexError, match="Index out of range: 3"):
        seq.insert(3, Scale(2))
    with pytest.raises(AssertionError, match="module should be of type"):
        seq.insert(0, "not a module")


def test_sequential_add_and_mul():
    a, b = Scale(1), Scale(2)
    joined = nn.Sequential(a) + nn.Sequential(b)
    assert list(joined) == [a, b]
    seq = nn.Sequential(a)
    seq += nn.Sequential(b)
    assert list(seq) == [a, b]
    assert list(nn.Sequential(a, b) * 2) == [a, b, a, b]
    with pytest.raises(ValueError, match="add operator supports only objects of Sequential class"):
        nn.Sequential(a) + [b]
    with pytest.raises(ValueError, match="Non-positive multiplication factor 0"):
        nn.Sequential(a) * 0


def test_sequential_rejects_non_module():
    with pytest.raises(TypeError, match="is not a Module subclass"):
        nn.Sequential(Scale(1), 3)


# --- ModuleList ---------------------------------------------------------------------------
def test_module_list_behaves_like_a_list_and_registers():
    a, b, c = Scale(1), Scale(2), Scale(3)
    ml = nn.ModuleList([a, b])
    assert len(ml) == 2 and list(ml) == [a, b] and ml[-1] is b
    ml += [c]
    assert list(ml) == [a, b, c]
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "1.weight", "2.weight"]
    assert type(ml[1:]) is nn.ModuleList and list(ml[1:]) == [b, c]
    ml.insert(0, c)
    assert list(ml) == [c, a, b, c]
    ml[0] = b
    assert ml[0] is b
    del ml[0]
    assert list(ml) == [a, b, c] and _keys(ml) == ["0", "1", "2"]
    assert ml.pop(-1) is c and list(ml) == [a, b]
    assert list(ml + nn.ModuleList([c])) == [a, b, c]
    assert ml.extend([c]) is ml and len(ml) == 3
    with pytest.raises(IndexError, match="index 3 is out of range"):
        ml[3]
    with pytest.raises(TypeError, match="ModuleList.extend should be called with an iterable"):
        ml.extend(5)


def test_module_list_in_a_model_is_trained():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Scale(2), Scale(3)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    net = Net()
    net(distnn.tensor([1.0])).sum().backward()
    assert [p.grad.tolist() for p in net.parameters()] == [[3.0], [2.0]]


# --- ModuleDict ---------------------------------------------------------------------------
def test_module_dict_api():
    a, b, c = Scale(1), Scale(2), Scale(3)
    md = nn.ModuleDict({"a": a, "b": b})
    assert md["a"] is a and "b" in md and len(md) == 2
    assert list(md) == ["a", "b"] and list(md.keys()) == ["a", "b"]
    assert list(md.values()) == [a, b] and list(md.items()) == [("a", a), ("b", b)]
    md["c"] = c
    md.update([("d", Shift(1))])
    md.update(nn.ModuleDict({"e": Shift(2)}))
    assert list(md) == ["a", "b", "c", "d", "e"]
    assert md.pop("a") is a and "a" not in md
    del md["b"]
    assert list(md) == ["c", "d", "e"]
    assert [n for n, _ in md.named_parameters()] == ["c.weight"]
    md.clear()
    assert len(md) == 0


@pytest.mark.parametrize("bad,error,message", [
    (5, TypeError, "ModuleDict.update should be called with an iterable"),
    ([("a", Scale(1), 3)], ValueError, "element #0 has length 3; 2 is required"),
    ([5], TypeError, "element #0 should be Iterable"),
])
def test_module_dict_update_errors(bad, error, message):
    with pytest.raises(error, match=message):
        nn.ModuleDict().update(bad)


# --- ParameterList / ParameterDict -----------------------------------------------------
def test_parameter_list_wraps_tensors_and_registers():
    p = Parameter(distnn.ones(2))
    pl = nn.ParameterList([p, distnn.zeros(3)])
    assert len(pl) == 2 and pl[0] is p and type(pl[1]) is Parameter and pl[1].requires_grad
    pl.append(distnn.ones(1))
    pl.extend([distnn.ones(4)])
    assert [tuple(x.shape) for x in pl] == [(2,), (3,), (1,), (4,)]
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2", "3"]
    assert [tuple(x.shape) for x in pl[1:3]] == [(3,), (1,)] and type(pl[1:3]) is nn.ParameterList
    assert pl[-1] is pl[3]
    pl[0] = distnn.zeros(5)
    assert tuple(pl[0].shape) == (5,) and type(pl[0]) is Parameter
    with pytest.raises(TypeError, match="ParameterList.extend should be called with an iterable"):
        pl.extend(distnn.ones(2))
    with pytest.raises(RuntimeError, match="ParameterList should not be called"):
        pl(1)


def test_parameter_dict_api():
    p = Parameter(distnn.ones(2))
    pd = nn.ParameterDict({"b": distnn.zeros(3), "a": p})
    assert list(pd) == ["a", "b"]  # a plain dict is added in sorted key order, as in torch
    assert pd["a"] is p and type(pd["b"]) is Parameter
    pd["c"] = distnn.ones(1)
    assert list(pd.keys()) == ["a", "b", "c"] and len(pd) == 3 and "c" in pd
    assert [n for n, _ in pd.named_parameters()] == ["a", "b", "c"]
    assert pd.get("zzz", 7) == 7 and pd.setdefault("a") is p
    assert pd.pop("b").shape == (3,) and list(pd) == ["a", "c"]
    key, value = pd.popitem()
    assert key == "c" and list(pd) == ["a"]
    merged = pd | nn.ParameterDict({"z": value})
    assert list(merged) == ["a", "z"] and list(pd) == ["a"]
    assert list(reversed(merged)) == ["z", "a"]
    assert list(pd.copy().values())[0] is p
    with pytest.raises(TypeError, match="not a string"):
        pd[3] = distnn.ones(1)
    with pytest.raises(RuntimeError, match="ParameterDict should not be called"):
        pd(1)
    pd.clear()
    assert len(pd) == 0 and list(pd.parameters()) == []


# --- reprs against torch ---------------------------------------------------------------------
def _repr_cases():
    def seq(lib):
        S, T = _layers(lib)
        return lib.nn.Sequential(S(1), lib.nn.Sequential(T(2), S(3)), lib.nn.Sequential())

    def seq_dict(lib):
        S, T = _layers(lib)
        return lib.nn.Sequential(OrderedDict([("first", S(1)), ("second", T(2))]))

    def module_list(lib):
        S, T = _layers(lib)
        return lib.nn.ModuleList([S(1), S(1), S(1), T(2), S(1), lib.nn.Sequential(T(1), T(2)),
                                  lib.nn.Sequential(T(1), T(2))])

    def module_dict(lib):
        S, T = _layers(lib)
        return lib.nn.ModuleDict({"conv": S(1), "act": lib.nn.ModuleList([T(1)])})

    def param_list(lib):
        return lib.nn.ParameterList([lib.nn.Parameter(lib.ones(3, 4)), lib.ones(2, dtype=lib.float64)])

    def param_list_one(lib):
        return lib.nn.ParameterList([lib.ones(3, 4)])

    def param_dict(lib):
        return lib.nn.ParameterDict({"w": lib.ones(3, 4), "b": lib.zeros(4, dtype=lib.float64)})

    def empty(lib):
        return lib.nn.ModuleList()

    return [seq, seq_dict, module_list, module_dict, param_list, param_list_one, param_dict, empty]


@requires_torch
@pytest.mark.parametrize("build", _repr_cases(), ids=lambda f: f.__name__)
def test_container_repr_matches_torch(build):
    assert repr(build(distnn)) == repr(build(torch))
