"""The Transformer modules against PyTorch with PyTorch's weights loaded: encoder and decoder
layers (activations, norm_first, batch_first, eps, bias), their stacks with a final norm,
and ``nn.Transformer``; outputs and the gradients of inputs and every parameter under
causal, padding and both masks; eval and train; float64 tightly; the causal mask, the
mask detection, PyTorch's inference zeros at padding, warnings, names and errors."""

import warnings

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import compare_module, requires_torch
from op_check import DEVICE, const, make_input, torch

pytestmark = [requires_torch,
              # a float causal mask beside a bool padding mask, as programs write them
              pytest.mark.filterwarnings("ignore:Support for mismatched"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True"),
              pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")]

D, HEADS, FF, N, T, S = 8, 2, 12, 2, 4, 5
PAD_T = np.array([[False, False, False, True], [False] * T])
PAD_S = np.array([[False, False, True, True, True], [False] * S])


class Called:
    """``fn(module, lib, *inputs)`` as a module call for compare_module: flags and masks are
    closed over, built with the library the module belongs to."""

    def __init__(self, module, fn):
        self.module, self.fn = module, fn

    def __call__(self, *inputs):
        return self.fn(self.module, distnn if isinstance(self.module, nn.Module) else torch, *inputs)

    def __getattr__(self, name):
        return getattr(self.module, name)


def pair(name, *args, **kwargs):
    """Our module and PyTorch's, built alike; ``activation`` may be a function of the library."""
    made = []
    for lib in (distnn, torch):
        kw = dict(kwargs)
        if callable(kw.get("activation")) and getattr(kw["activation"], "per_library", False):
            kw["activation"] = kw["activation"](lib)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: enable_nested_tensor is True, but ...
            made.append(getattr(lib.nn, name)(*args, **kw))
    return made


def compare(modules, fn, arrays, dtype=np.float32, train=False):
    ours, theirs = modules
    for m in (ours, theirs):
        m.train(train)
    tol = {"rtol": 1e-4, "atol": 2e-5}
    if dtype == np.float64:
        ours, theirs = ours.double(), theirs.double()
        tol = {"rtol": 1e-9, "atol": 1e-11}
    return compare_module(Called(ours, fn), Called(theirs, fn), [a.astype(dtype) for a in arrays], **tol)


def seq(length, seed, batch_first=False):
    return make_input((N, length, D) if batch_first else (length, N, D), seed=seed)


def causal(lib, size, dtype=None):
    """The causal mask, on the test device for distnn (as ``const`` places masks)."""
    device = {"device": DEVICE} if lib is distnn else {}
    return lib.nn.Transformer.generate_square_subsequent_mask(size, dtype=dtype, **device)


def silu(lib):
    return lib.nn.functional.silu


silu.per_library = True


def gelu_module(lib):
    return lib.nn.GELU()


gelu_module.per_library = True


LAYER_CONFIGS = [
    {},
    {"activation": "gelu", "batch_first": True},
    {"norm_first": True},
    {"activation": silu, "layer_norm_eps": 1e-3},
    {"activation": gelu_module, "bias": False, "batch_first": True, "norm_first": True},
]


def _ids(config):
    return ",".join(f"{k}={getattr(v, '__name__', v)}" for k, v in config.items()) or "default"


@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=_ids)
def test_encoder_layer(config):
    bf = config.get("batch_first", False)
    layers = pair("TransformerEncoderLayer", D, HEADS, FF, dropout=0.0, **config)
    compare(layers, lambda m, lib, x: m(x, src_mask=causal(lib, T), src_key_padding_mask=const(lib, PAD_T)),
            [seq(T, 1, bf)], train=True)


@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=_ids)
def test_decoder_layer(config):
    bf = config.get("batch_first", False)
    layers = pair("TransformerDecoderLayer", D, HEADS, FF, dropout=0.0, **config)

    def fn(m, lib, x, mem):
        return m(x, mem, tgt_mask=causal(lib, T), tgt_key_padding_mask=const(lib, PAD_T),
                 memory_key_padding_mask=const(lib, PAD_S), tgt_is_causal=True)
    compare(layers, fn, [seq(T, 1, bf), seq(S, 2, bf)], train=True)


@pytest.mark.parametrize("masks", ["none", "causal", "padding", "both", "causal_hint", "bool_causal"])
def test_encoder_stack(masks):
    """Two layers and a final norm, in eval mode with dropout set (PyTorch disables it)."""
    layer = pair("TransformerEncoderLayer", D, HEADS, FF, dropout=0.2, batch_first=True)
    stack = [cls(lay, 2, norm=lib.nn.LayerNorm(D), enable_nested_tensor=False)
             for cls, lay, lib in ((nn.TransformerEncoder, layer[0], distnn), (torch.nn.TransformerEncoder, layer[1],
                                                                              torch))]

    def fn(m, lib, x):
        kwargs = {
            "none": {},
            "causal": {"mask": causal(lib, T)},
            "padding": {"src_key_padding_mask": const(lib, PAD_T)},
            "both": {"mask": causal(lib, T), "src_key_padding_mask": const(lib, PAD_T)},
            "causal_hint": {"mask": causal(lib, T), "is_causal": True},
            "bool_causal": {"mask": causal(lib, T) != 0},
        }[masks]
        return m(x, **kwargs)
    compare(stack, fn, [seq(T, 1, True)])


def test_decoder_stack():
    layer = pair("TransformerDecoderLayer", D, HEADS, FF, dropout=0.0, norm_first=True)
    stack = [nn.TransformerDecoder(layer[0], 2, nn.LayerNorm(D)), torch.nn.TransformerDecoder(layer[1], 2,
                                                                                             torch.nn.LayerNorm(D))]

    def fn(m, lib, x, mem):
        return m(x, mem, tgt_mask=causal(lib, T), memory_mask=const(lib, make_input((T, S), seed=3) > 0.5),
                 memory_key_padding_mask=const(lib, PAD_S))
    compare(stack, fn, [seq(T, 1), seq(S, 2)], train=True)


@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer(batch_first):
    models = pair("Transformer", D, HEADS, 2, 1, FF, dropout=0.0, batch_first=batch_first)

    def fn(m, lib, src, tgt):
        return m(src, tgt, tgt_mask=causal(lib, T), src_key_padding_mask=const(lib, PAD_S),
                 tgt_key_padding_mask=const(lib, PAD_T), memory_key_padding_mask=const(lib, PAD_S))
    compare(models, fn, [seq(S, 1, batch_first), seq(T, 2, batch_first)], train=True)


def test_transformer_float64_is_tight():
    models = pair("Transformer", D, HEADS, 1, 1, FF, activation="gelu", norm_first=True)
    compare(models, lambda m, lib, src, tgt: m(src, tgt, tgt_mask=causal(lib, T, lib.float64), tgt_is_causal=True),
            [seq(S, 1), seq(T, 2)], dtype=np.float64)


def test_unbatched_encoder_layer():
    layers = pair("TransformerEncoderLayer", D, HEADS, FF, dropout=0.0, batch_first=True)
    compare(layers, lambda m, lib, x: m(x, src_mask=causal(lib, T)), [make_input((T, D), seed=4)])


def test_inference_zeros_padding_as_torch():
    """Eval, no grad, padding only: PyTorch's encoder runs nested tensors and pads with zeros."""
    layer = pair("TransformerEncoderLayer", D, HEADS, FF, batch_first=True)
    ours, theirs = nn.TransformerEncoder(layer[0], 2), torch.nn.TransformerEncoder(layer[1], 2)
    ours.load_state_dict({k: distnn.from_numpy(v.numpy()) for k, v in theirs.state_dict().items()})
    ours.eval(), theirs.eval()
    x = seq(T, 5, True).astype(np.float32)
    with distnn.no_grad(), torch.no_grad():
        got = ours(distnn.from_numpy(x), src_key_padding_mask=distnn.from_numpy(PAD_T)).numpy()
        want = theirs(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(PAD_T)).numpy()
    assert not want[0, 3].any()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_generate_square_subsequent_mask(dtype):
    ours = nn.Transformer.generate_square_subsequent_mask(4, dtype=getattr(distnn, dtype or "float32"))
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=getattr(torch, dtype or "float32"))
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_state_dict_names_and_repr():
    ours, theirs = pair("Transformer", D, HEADS, 2, 1, FF)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    assert ours.encoder.layers[0].self_attn is not ours.encoder.layers[1].self_attn  # deep copies


def test_nested_tensor_warning_as_torch():
    with pytest.warns(UserWarning) as ours:
        nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF), 1)
    with pytest.warns(UserWarning) as theirs:
        torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, HEADS, FF), 1)
    assert str(ours[0].message) == str(theirs[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True), 1)
        nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF), 1, enable_nested_tensor=False)


def test_importable_where_pytorch_has_them():
    from distnn.nn.modules import transformer
    for name in ("Transformer", "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
                 "TransformerDecoderLayer"):
        assert getattr(transformer, name) is getattr(nn, name)


def test_errors():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(D, HEADS, activation="tanh")
    model = nn.Transformer(D, HEADS, 1, 1, FF)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(distnn.zeros(S, 2, D), distnn.zeros(T, 3, D))
    with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal to d_model"):
        model(distnn.zeros(S, 2, D), distnn.zeros(T, 2, D + 1))
