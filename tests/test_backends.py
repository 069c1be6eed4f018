"""``distnn.backends``: the flags start at torch 2.13's defaults, read back what is set,
refuse non-bools as torch does, and ``cudnn.flags`` restores them; what each query
says of distnn (no cuDNN, no MPS) is checked against what it has."""

import importlib.util

import pytest

import distnn
from distnn import backends
from distnn.backends import cuda, cudnn
from op_check import requires_torch, torch

CUDNN_FLAGS = ("enabled", "benchmark", "deterministic", "allow_tf32")


@pytest.fixture(autouse=True)
def _restore_flags(monkeypatch):
    """Every flag, ours and torch's, back to what it was after each test."""
    monkeypatch.delenv("CUPY_TF32", raising=False)
    libs = [distnn] + ([torch] if torch is not None else [])
    saved = [(lib, {f: getattr(lib.backends.cudnn, f) for f in CUDNN_FLAGS},
              lib.backends.cuda.matmul.allow_tf32) for lib in libs]
    yield
    monkeypatch.delenv("CUPY_TF32", raising=False)  # a test may have set it
    for lib, flags, tf32 in saved:
        for name, value in flags.items():
            setattr(lib.backends.cudnn, name, value)
        lib.backends.cuda.matmul.allow_tf32 = tf32


@requires_torch
def test_defaults_are_torchs():
    for name in CUDNN_FLAGS:
        assert getattr(backends.cudnn, name) == getattr(torch.backends.cudnn, name), name
    assert backends.cuda.matmul.allow_tf32 == torch.backends.cuda.matmul.allow_tf32 is False


def test_queries_say_what_distnn_has():
    assert backends.mps.is_available() is False and backends.mps.is_built() is False
    assert backends.cudnn.is_available() is False and backends.cudnn.version() is None
    assert backends.cudnn.is_acceptable(distnn.zeros(1)) is False
    assert backends.cuda.is_built() is (importlib.util.find_spec("cupy") is not None)


@pytest.mark.parametrize("name", CUDNN_FLAGS)
def test_cudnn_flags_read_back(name):
    for value in (True, False, True):
        setattr(distnn.backends.cudnn, name, value)
        assert getattr(cudnn, name) is value


def test_matmul_allow_tf32_reads_back():
    distnn.backends.cuda.matmul.allow_tf32 = True
    assert cuda.matmul.allow_tf32 is True


@requires_torch
@pytest.mark.parametrize("owner, name", [("cudnn", f) for f in CUDNN_FLAGS] + [("cuda.matmul", "allow_tf32")])
@pytest.mark.parametrize("value", [1, None, "x"])
def test_non_bool_refused_as_torch(owner, name, value):
    def target(lib):
        obj = lib.backends
        for part in owner.split("."):
            obj = getattr(obj, part)
        return obj

    with pytest.raises(RuntimeError, match="expects a bool, but got") as theirs:
        setattr(target(torch), name, value)
    with pytest.raises(RuntimeError) as ours:
        setattr(target(distnn), name, value)
    assert str(ours.value).split(" expects")[1] == str(theirs.value).split(" expects")[1]


@requires_torch
def test_cudnn_flags_context_as_torch():
    def run(lib):
        c = lib.backends.cudnn
        c.allow_tf32, c.deterministic = False, True
        with c.flags(enabled=True, benchmark=True):
            inside = [getattr(c, f) for f in CUDNN_FLAGS]
        return inside, [getattr(c, f) for f in CUDNN_FLAGS]

    assert run(distnn) == run(torch)


def test_matmul_unknown_attribute():
    with pytest.raises(AttributeError, match="Unknown attribute fp64_mode"):
        cuda.matmul.fp64_mode = True
    with pytest.raises(AttributeError, match="Unknown attribute fp64_mode"):
        cuda.matmul.fp64_mode


def test_tf32_off_refused_when_cupy_uses_tf32(monkeypatch):
    monkeypatch.setenv("CUPY_TF32", "1")
    cuda.matmul.allow_tf32 = True
    cudnn.allow_tf32 = True
    for owner in (cuda.matmul, cudnn):
        with pytest.raises(RuntimeError, match="CUPY_TF32"):
            owner.allow_tf32 = False
        assert owner.allow_tf32 is True


@requires_torch
def test_mkldnn_switch_as_torchs():
    """``enabled`` starts True, reads back, refuses non-bools, and ``flags`` restores it;
    ``is_available`` says whether oneDNN's library loaded."""
    from distnn.ops import onednn

    def run(lib):
        m = lib.backends.mkldnn
        start = m.enabled
        m.enabled = False
        off = m.enabled
        m.enabled = True
        return start, off, m.enabled

    assert run(distnn) == run(torch) == (True, False, True)  # (torch's flags() warns about TF32 on GPUs)
    with backends.mkldnn.flags(enabled=False):
        assert backends.mkldnn.enabled is False
    assert backends.mkldnn.enabled is True
    with pytest.raises(RuntimeError, match="set_enabled_mkldnn expects a bool, but got int"):
        backends.mkldnn.enabled = 1
    assert backends.mkldnn.is_available() is (onednn.library() is not None)
