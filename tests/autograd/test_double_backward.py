"""The double-backward contract, op by op: an op class that sets ``double_backward = True``
passes full-mode ``gradgradcheck``, one that does not refuses a second derivative with
an error naming its node, and a census fails when an op implementation has no case.

The cases are catalogued in ``double_backward_cases`` (tests/). Whether a case goes to
gradgradcheck or to the refusal test is read from its graph: refused if an op in it
claims no double backward.
"""

import re

import numpy as np
import pytest

import distnn
import distnn.nn  # noqa: F401  (its ops join the census)
from distnn.autograd.function import Op
from double_backward_cases import CASES, TOLERANCES

grad = distnn.autograd.grad


# --- graphs ---------------------------------------------------------------------------

def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def implementation(op_class):
    """The class whose ``backward`` ``op_class`` runs: renamed ops share their base's."""
    return next(c for c in op_class.__mro__ if "backward" in c.__dict__)


def _name(cls):
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def _tensors(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in outs if isinstance(o, distnn.Tensor) and o.requires_grad]


def graph_nodes(tensors):
    """Every node reachable from the tensors' ``grad_fn``."""
    seen, stack = {}, [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(edge[0] for edge in node._next if edge is not None)
    return seen.values()


def graph_ops(tensors):
    """The Op classes of the nodes reachable from ``tensors`` (leaves and user Functions left out)."""
    ops = (type(node)._fn for node in graph_nodes(tensors))
    return {fn for fn in ops if isinstance(fn, type) and issubclass(fn, Op)}


def _refused_in(fn, inputs):
    """The node names of the ops in ``fn``'s graph that claim no double backward."""
    try:
        outs = _tensors(fn(*inputs))
    except Exception:  # noqa: BLE001  the gradgradcheck test shows the error
        return ()
    return tuple(sorted(f"{op.__name__}{op._node_suffix}" for op in graph_ops(outs) if not op.double_backward))


_REFUSING = {case_id: _refused_in(fn, inputs) for case_id, fn, inputs in CASES}
CHECKED = [c for c in CASES if not _REFUSING[c[0]]]
REFUSED = [c for c in CASES if _REFUSING[c[0]]]


def _params(cases):
    return [pytest.param(fn, inputs, id=case_id) for case_id, fn, inputs in cases]


# --- the contract -----------------------------------------------------------------------

@pytest.mark.parametrize("fn, inputs", _params(CHECKED))
def test_double_backward_matches_finite_differences(request, fn, inputs):
    tolerance = TOLERANCES.get(request.node.callspec.id, {})
    assert distnn.autograd.gradgradcheck(fn, inputs, **tolerance)


@pytest.mark.parametrize("fn, inputs", _params(REFUSED))
def test_refused_double_backward_names_the_op(request, fn, inputs):
    x = next(t for t in inputs if t.requires_grad)
    (g,) = grad(fn(*inputs).sum(), x, create_graph=True)
    (expected,) = grad(fn(*inputs).sum(), x)  # the first derivative is still given, and right
    np.testing.assert_allclose(g.detach().cpu().numpy(), expected.cpu().numpy())
    names = "|".join(re.escape(n) for n in _REFUSING[request.node.callspec.id])
    with pytest.raises(RuntimeError, match=rf"^({names}) does not support double backward"):
        (g ** 2).sum().backward()


def _first_derivative_ops(outs, inputs):
    """The ops recorded while differentiating ``outs`` with create_graph=True, with
    upstream gradients that require grad, as gradgradcheck passes them."""
    diff = [t for t in inputs if t.requires_grad]
    upstream = [distnn.ones_like(o).requires_grad_(True) for o in outs]
    grads = grad(outs, diff, upstream, create_graph=True, allow_unused=True)
    return graph_ops([g for g in grads if g is not None and g.requires_grad])


# Ops that run only inside a process group of two or more ranks: their refusal is checked
# where such a group exists, by the test named.
REFUSED_ELSEWHERE = {
    "sync_batchnorm._SyncBatchNormFunction":
        "tests/nn/test_sync_batchnorm.py::test_double_backward_is_refused_on_every_rank",
}


def test_every_op_is_covered():
    ids = [case_id for case_id, _, _ in CASES]
    assert len(set(ids)) == len(ids), f"case ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}"
    impls = {}
    for op in _subclasses(Op):
        if op.__module__.startswith("distnn."):  # not the stand-ins that tests define
            impls.setdefault(implementation(op), set()).add(op)
    mixed = sorted(_name(impl) for impl, ops in impls.items()
                   if len({op.double_backward for op in ops | {impl}}) > 1)
    assert not mixed, f"renamed ops that disagree with their implementation on double_backward: {mixed}"

    reached = {"checked": set(), "refused": set()}
    for kind, cases in (("checked", CHECKED), ("refused", REFUSED)):
        for _, fn, inputs in cases:
            outs = _tensors(fn(*inputs))
            for op in graph_ops(outs) | _first_derivative_ops(outs, inputs):
                reached[kind].add(implementation(op))
    claiming = {impl for impl in impls if impl.double_backward}
    unchecked = sorted(_name(impl) for impl in claiming - reached["checked"])
    unrefused = sorted(_name(impl) for impl in set(impls) - claiming - reached["refused"]
                       if _name(impl) not in REFUSED_ELSEWHERE)
    assert not (unchecked or unrefused), (
        f"ops claiming double backward that no gradgradcheck case reaches: {unchecked}; "
        f"ops refusing double backward that no refusal case reaches: {unrefused}")
