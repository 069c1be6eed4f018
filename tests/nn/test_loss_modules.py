"""Loss modules against PyTorch: every reduction, class weights as buffers, and the
legacy ``size_average``/``reduce`` arguments with their deprecation warning."""

import numpy as np
import pytest

import distnn
import distnn.nn as nn
from layer_check import compare_module, make_pair, requires_torch, torch
from op_check import make_input

X = make_input((4, 5), seed=1).astype(np.float32)
Y = make_input((4, 5), seed=2).astype(np.float32)
PROB = make_input((4, 5), low=0.05, high=0.95, seed=3).astype(np.float32)
BINARY = (make_input((4, 5), seed=4) > 0).astype(np.float32)
CLASSES = np.array([1, 0, 4, 2], dtype=np.int64)
SIGNS = np.where(make_input((4,), seed=5) > 0, 1.0, -1.0).astype(np.float32)
LOG_P = np.log(np.exp(X) / np.exp(X).sum(1, keepdims=True)).astype(np.float32)
CLASS_W = np.array([0.5, 1.0, 2.0, 1.5, 0.2], dtype=np.float32)

# (module name, constructor kwargs, inputs); the target is every input after the first
CASES = [
    ("MSELoss", {}, [X, Y]),
    ("L1Loss", {}, [X, Y]),
    ("SmoothL1Loss", {"beta": 0.5}, [X, Y]),
    ("HuberLoss", {"delta": 0.5}, [X, Y]),
    ("NLLLoss", {}, [LOG_P, CLASSES]),
    ("NLLLoss", {"ignore_index": 0}, [LOG_P, CLASSES]),
    ("CrossEntropyLoss", {}, [X, CLASSES]),
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 4}, [X, CLASSES]),
    ("CrossEntropyLoss", {}, [X, PROB]),
    ("BCELoss", {}, [PROB, BINARY]),
    ("BCEWithLogitsLoss", {}, [X, BINARY]),
    ("KLDivLoss", {}, [LOG_P, PROB]),
    ("KLDivLoss", {"log_target": True}, [LOG_P, np.log(PROB)]),
    ("PoissonNLLLoss", {}, [X, np.abs(Y) * 3]),
    ("PoissonNLLLoss", {"log_input": False, "full": True}, [PROB, np.abs(Y) * 3]),
    ("GaussianNLLLoss", {}, [X, Y, PROB]),
    ("SoftMarginLoss", {}, [X, np.sign(Y)]),
    ("MultiLabelSoftMarginLoss", {}, [X, BINARY]),
    ("MarginRankingLoss", {"margin": 0.2}, [X[:, 0].copy(), Y[:, 0].copy(), SIGNS]),
    ("HingeEmbeddingLoss", {"margin": 0.5}, [X, np.sign(Y)]),
    ("CosineEmbeddingLoss", {"margin": 0.1}, [X, Y, SIGNS]),
    ("TripletMarginLoss", {}, [X, Y, PROB]),
    ("TripletMarginLoss", {"margin": 0.5, "p": 1.0, "swap": True}, [X, Y, PROB]),
]


# the deprecation note both libraries print for KLDivLoss(reduction="mean")
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")


def _ids(case):
    return f"{case[0]}{case[1] or ''}".replace(" ", "")


class _InputsOnlyGrad:
    """Calls the loss with targets that take no gradient (as in training)."""

    def __init__(self, loss, n_grad):
        self.loss, self.n_grad = loss, n_grad

    def __call__(self, *inputs):
        return self.loss(*inputs[:self.n_grad], *(t.detach() for t in inputs[self.n_grad:]))

    def __getattr__(self, name):
        return getattr(self.loss, name)


@requires_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch(case, reduction):
    name, kwargs, arrays = case
    ours, theirs = make_pair(name, reduction=reduction, **kwargs)
    assert repr(ours) == repr(theirs)
    n_grad = {"MarginRankingLoss": 2, "CosineEmbeddingLoss": 2, "TripletMarginLoss": 3}.get(name, 1)
    compare_module(_InputsOnlyGrad(ours, n_grad), _InputsOnlyGrad(theirs, n_grad), arrays,
                   rtol=1e-5, atol=1e-6)


@requires_torch
def test_kl_div_batchmean():
    ours, theirs = make_pair("KLDivLoss", reduction="batchmean")
    compare_module(_InputsOnlyGrad(ours, 1), _InputsOnlyGrad(theirs, 1), [LOG_P, PROB])


@requires_torch
@pytest.mark.parametrize("name,kwargs,arrays", [
    ("CrossEntropyLoss", {"weight": CLASS_W}, [X, CLASSES]),
    ("NLLLoss", {"weight": CLASS_W}, [LOG_P, CLASSES]),
    ("BCELoss", {"weight": CLASS_W}, [PROB, BINARY]),
    ("BCEWithLogitsLoss", {"weight": CLASS_W, "pos_weight": CLASS_W[::-1].copy()}, [X, BINARY]),
    ("MultiLabelSoftMarginLoss", {"weight": CLASS_W}, [X, BINARY]),
])
def test_weights_are_buffers(name, kwargs, arrays):
    ours = getattr(nn, name)(**{k: distnn.from_numpy(v) for k, v in kwargs.items()})
    theirs = getattr(torch.nn, name)(**{k: torch.from_numpy(v) for k, v in kwargs.items()})
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == sorted(kwargs)
    assert list(ours.parameters()) == []
    compare_module(_InputsOnlyGrad(ours, 1), _InputsOnlyGrad(theirs, 1), arrays)


@requires_torch
@pytest.mark.parametrize("size_average,reduce,expected", [
    (False, None, "sum"), (True, None, "mean"), (None, False, "none"), (False, True, "sum"), (True, False, "none"),
])
def test_legacy_arguments(size_average, reduce, expected):
    with pytest.warns(UserWarning, match=f"size_average and reduce args will be deprecated, please use "
                                         f"reduction='{expected}' instead."):
        ours = nn.MSELoss(size_average=size_average, reduce=reduce)
    with pytest.warns(UserWarning):
        theirs = torch.nn.MSELoss(size_average=size_average, reduce=reduce)
    assert ours.reduction == theirs.reduction == expected
    compare_module(_InputsOnlyGrad(ours, 1), _InputsOnlyGrad(theirs, 1), [X, Y])


def test_seed_tutorial_sum_loss():
    """``MSELoss(size_average=False)`` from the two-layer-net tutorial sums squared errors."""
    with pytest.warns(UserWarning):
        loss_fn = nn.MSELoss(size_average=False)
    loss = loss_fn(distnn.tensor([[1.0, 2.0], [3.0, 4.0]]), distnn.zeros(2, 2))
    assert loss.dim() == 0 and loss.item() == pytest.approx(30.0)


@pytest.mark.parametrize("name", ["NLLLoss", "CrossEntropyLoss", "BCELoss", "L1Loss", "KLDivLoss", "SmoothL1Loss"])
def test_legacy_reduce_false_keeps_elements(name):
    with pytest.warns(UserWarning, match="reduction='none'"):
        loss = getattr(nn, name)(reduce=False)
    assert loss.reduction == "none"


def test_huber_has_no_legacy_arguments():
    with pytest.raises(TypeError):
        nn.HuberLoss(size_average=False)
    with pytest.raises(TypeError, match="delta must be a float or int"):
        nn.HuberLoss(delta="1")


def test_repr_and_attributes():
    loss = nn.CrossEntropyLoss(ignore_index=3, label_smoothing=0.2)
    assert repr(loss) == "CrossEntropyLoss()"
    assert (loss.ignore_index, loss.label_smoothing, loss.reduction, loss.weight) == (3, 0.2, "mean", None)
    assert repr(nn.MSELoss()) == "MSELoss()"


def test_cross_entropy_module_in_training_step():
    x = distnn.randn(8, 10, requires_grad=True)
    target = distnn.randint(0, 10, (8,))
    loss = nn.CrossEntropyLoss()(x, target)
    loss.backward()
    assert loss.dim() == 0 and tuple(x.grad.shape) == (8, 10)
    np.testing.assert_allclose(x.grad.numpy().sum(1), np.zeros(8), atol=1e-6)  # softmax - one_hot rows
