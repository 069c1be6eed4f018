"""``state_dict`` / ``load_state_dict``: keys and order, detached shared values,
round trips, strict errors (messages compared with PyTorch's), ``assign`` and
the ``_load_from_state_dict`` override point."""

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from distnn.nn import Parameter
from op_check import requires_torch, torch


def _classes(lib):
    """Equivalent module classes for ``lib`` (distnn or torch)."""

    class Leaf(lib.nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.weight = lib.nn.Parameter(lib.arange(n * 4, dtype=lib.float32).reshape(n, 4))
            self.bias = lib.nn.Parameter(lib.zeros(n))
            self.register_buffer("running", lib.ones(n))
            self.register_buffer("scratch", lib.zeros(n), persistent=False)
            self.register_parameter("unused", None)

    class Net(lib.nn.Module):
        def __init__(self, n=3):
            super().__init__()
            self.scale = lib.nn.Parameter(lib.tensor(2.0))
            self.first = Leaf(n)
            self.stack = lib.nn.Sequential(Leaf(n), Leaf(n))
            self.register_buffer("count", lib.zeros((), dtype=lib.int64))

    return Leaf, Net


Leaf, Net = _classes(distnn)


def _np(t):
    return np.array(t.detach().tolist())


def _randomize(net, seed=0):
    rng = np.random.default_rng(seed)
    with distnn.no_grad():
        for p in net.parameters():
            p.copy_(distnn.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
    return net


# --- saving -----------------------------------------------------------------------------
@requires_torch
@pytest.mark.parametrize("kwargs", [{}, {"prefix": "model."}, {"keep_vars": True}])
def test_keys_and_order_match_torch(kwargs):
    ours = list(_classes(distnn)[1]().state_dict(**kwargs))
    theirs = list(_classes(torch)[1]().state_dict(**kwargs))
    assert ours == theirs
    assert "first.scratch" not in ours and "first.unused" not in ours


def test_values_are_detached_and_share_storage():
    net = Net()
    state = net.state_dict()
    w = state["first.weight"]
    assert type(w) is distnn.Tensor and not w.requires_grad and w.grad_fn is None
    with distnn.no_grad():
        net.first.weight.add_(100)
    assert _np(w)[0, 0] == 100.0  # same storage as the parameter
    assert net.state_dict(keep_vars=True)["first.weight"] is net.first.weight


def test_state_dict_is_ordered_dict_with_metadata():
    state = Net().state_dict()
    assert type(state).__name__ == "OrderedDict"
    assert state._metadata[""] == {"version": 1} and "stack.0" in state._metadata


def test_state_dict_into_given_destination():
    dest = {}
    assert Net().state_dict(destination=dest, prefix="p.") is dest
    assert "p.scale" in dest


# --- loading --------------------------------------------------------------------------------
def test_round_trip_copies_values_in_place():
    src, dst = _randomize(Net(), seed=1), Net()
    params_before = list(dst.parameters())
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert all(a is b for a, b in zip(dst.parameters(), params_before))  # same Parameter objects
    for key, value in src.state_dict().items():
        np.testing.assert_array_equal(_np(dst.state_dict()[key]), _np(value))
    with distnn.no_grad():
        src.first.weight.add_(1)
    assert not np.array_equal(_np(dst.first.weight), _np(src.first.weight))  # copied, not shared
    assert all(p.requires_grad for p in dst.parameters())


def test_loading_converts_dtype_into_the_model_dtype():
    net = Net()
    state = {k: v.double() if v.is_floating_point() else v for k, v in _randomize(Net()).state_dict().items()}
    net.load_state_dict(state)
    assert all(p.dtype == distnn.float32 for p in net.parameters())
    np.testing.assert_allclose(_np(net.first.weight), _np(state["first.weight"]), rtol=1e-6)


def test_zero_dim_parameter_accepts_a_one_element_vector():
    net = Net()
    state = net.state_dict()
    state["scale"] = distnn.tensor([5.0])
    net.load_state_dict(state)
    assert net.scale.shape == () and net.scale.item() == 5.0


def _broken_state(lib):
    state = _classes(lib)[1]().state_dict()
    del state["stack.1.bias"], state["count"]
    state["stack.0.weight"] = lib.zeros(4, 3)
    state["extra"] = lib.ones(1)
    state["stack.9.weight"] = lib.ones(1)
    state["first.running.deep"] = lib.ones(1)
    return state


@requires_torch
def test_strict_error_message_matches_torch():
    with pytest.raises(RuntimeError) as ours:
        _classes(distnn)[1]().load_state_dict(_broken_state(distnn))
    with pytest.raises(RuntimeError) as theirs:
        _classes(torch)[1]().load_state_dict(_broken_state(torch))
    assert str(ours.value) == str(theirs.value)
    assert str(ours.value).startswith("Error(s) in loading state_dict for Net:\n\tMissing key(s) in state_dict:")


def test_size_mismatch_names_both_shapes():
    state = Net().state_dict()
    state["first.bias"] = distnn.zeros(5)
    with pytest.raises(RuntimeError, match=r"size mismatch for first.bias: copying a param with shape "
                                           r"torch.Size\(\[5\]\) from checkpoint, the shape in current "
                                           r"model is torch.Size\(\[3\]\)"):
        Net().load_state_dict(state)


@requires_torch
def test_non_strict_reports_keys_like_torch():
    def run(lib):
        state = _broken_state(lib)
        state["stack.0.weight"] = lib.zeros(3, 4)  # size mismatches raise even when not strict
        return _classes(lib)[1]().load_state_dict(state, strict=False)

    ours, theirs = run(distnn), run(torch)
    assert ours.missing_keys == theirs.missing_keys == ["count", "stack.1.bias"]
    assert ours.unexpected_keys == theirs.unexpected_keys
    assert repr(ours) == repr(theirs)


def test_non_strict_still_raises_on_size_mismatch():
    state = Net().state_dict()
    state["first.weight"] = distnn.zeros(1)
    with pytest.raises(RuntimeError, match="size mismatch for first.weight"):
        Net().load_state_dict(state, strict=False)


def test_non_tensor_value_is_an_error():
    state = Net().state_dict()
    state["first.bias"] = [0.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match='While copying the parameter named "first.bias", expected torch.Tensor'):
        Net().load_state_dict(state)


def test_load_state_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        Net().load_state_dict([("scale", distnn.ones(()))])


def test_assign_replaces_parameters_and_keeps_requires_grad():
    net = Net()
    net.first.bias.requires_grad_(False)
    state = {k: v.clone() for k, v in _randomize(Net()).state_dict().items()}
    old = net.first.weight
    net.load_state_dict(state, assign=True)
    assert net.first.weight is not old and type(net.first.weight) is Parameter
    assert net.first.weight.requires_grad and not net.first.bias.requires_grad
    assert net.first.running is state["first.running"]  # buffers are assigned as given
    np.testing.assert_array_equal(_np(net.first.weight), _np(state["first.weight"]))


def test_load_from_state_dict_override_can_rename_old_keys():
    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = Parameter(distnn.zeros(2))

        def _load_from_state_dict(self, state_dict, prefix, *args):
            old = prefix + "w"
            if old in state_dict:
                state_dict[prefix + "weight"] = state_dict.pop(old)
            super()._load_from_state_dict(state_dict, prefix, *args)

    holder = nn.Sequential(Renamed())
    holder.load_state_dict({"0.w": distnn.tensor([1.0, 2.0])})
    assert holder[0].weight.tolist() == [1.0, 2.0]


def test_extra_state_is_saved_and_restored():
    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = {"k": 1}

        def get_extra_state(self):
            return dict(self.config)

        def set_extra_state(self, state):
            self.config = state

    state = nn.Sequential(WithExtra()).state_dict()
    assert state["0._extra_state"] == {"k": 1}
    state["0._extra_state"] = {"k": 2}
    target = nn.Sequential(WithExtra())
    target.load_state_dict(state)
    assert target[0].config == {"k": 2}
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "0._extra_state"'):
        target.load_state_dict({})


def test_state_dict_and_load_hooks():
    net = Net()
    calls = []
    net.register_state_dict_pre_hook(lambda mod, prefix, keep_vars: calls.append(("pre", prefix)))
    net.register_state_dict_post_hook(lambda mod, sd, prefix, meta: calls.append(("post", len(sd))))
    state = net.state_dict()
    assert calls == [("pre", ""), ("post", len(state))]

    def drop_unexpected(mod, incompatible):
        incompatible.unexpected_keys.clear()

    net.register_load_state_dict_post_hook(drop_unexpected)
    state["junk"] = distnn.ones(1)
    assert net.load_state_dict(state).unexpected_keys == []
