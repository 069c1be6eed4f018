"""The core's imports point one way: tensor <- autograd <- ops <- tensor methods.

Each core module is imported alone, in a fresh interpreter whose distnn packages
are empty stand-ins (so no package ``__init__`` pulls the rest in), and may load
only the modules of the layers below it. The whole package's module-level
imports, package initialisation included, must form no cycle.
"""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "distnn"

BOTTOM = {"distnn.backend", "distnn.dtypes", "distnn._dims", "distnn._tensor_str"}
TENSOR = BOTTOM | {"distnn.tensor"}
GRAPH = TENSOR | {"distnn.autograd.grad_mode", "distnn.autograd.views", "distnn.autograd.node"}
RECORDING = GRAPH | {"distnn.autograd.function"}

# module -> everything it may load (itself included)
ALLOWED = {
    "distnn.tensor": TENSOR,
    "distnn.autograd.grad_mode": {"distnn.autograd.grad_mode"},
    "distnn.autograd.views": TENSOR | {"distnn.autograd.views", "distnn.autograd.grad_mode"},
    "distnn.autograd.node": TENSOR | {"distnn.autograd.node"},
    "distnn.autograd.function": RECORDING,
    "distnn.autograd.engine": GRAPH | {"distnn.autograd.engine"},
    "distnn.autograd.graph_xp": BOTTOM | {"distnn.autograd.graph_xp"},
    "distnn.autograd.graph_engine": RECORDING | {"distnn.autograd.engine", "distnn.autograd.graph_xp",
                                                  "distnn.autograd.graph_engine"},
    "distnn.creation": TENSOR | {"distnn.creation", "distnn.random"},
}

_IMPORT_ALONE = """
import importlib, json, pathlib, sys, types
root = pathlib.Path(sys.argv[1])
for package in ("distnn", "distnn.autograd", "distnn.ops"):
    stub = types.ModuleType(package)
    stub.__path__ = [str(root.joinpath(*package.split(".")[1:]))]
    sys.modules[package] = stub
importlib.import_module(sys.argv[2])
stubs = {"distnn", "distnn.autograd", "distnn.ops"}
print(json.dumps(sorted(m for m in sys.modules if m.startswith("distnn") and m not in stubs)))
"""


def _import_alone(module):
    proc = subprocess.run([sys.executable, "-c", _IMPORT_ALONE, str(ROOT), module],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_core_module_imports_alone_with_only_the_layers_below(module):
    loaded = _import_alone(module)
    assert module in loaded
    assert loaded <= ALLOWED[module], f"{module} also loads {sorted(loaded - ALLOWED[module])}"


def test_tensor_alone_wraps_data_without_any_method_from_above():
    """The leaf module makes tensors; arithmetic arrives only with _tensor_methods."""
    probe = ("import numpy\nt = sys.modules['distnn.tensor']._wrap(numpy.arange(3.0))\n"
             "print(json.dumps([list(t.shape), hasattr(t, '__add__'), hasattr(t, 'sum')]))")
    code = _IMPORT_ALONE.rsplit("print(", 1)[0] + probe
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), "distnn.tensor"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[3], False, False]


def test_engine_backpropagates_with_nothing_above_it_loaded():
    probe = """
import numpy
from distnn.autograd.node import AccumulateGrad, Node
from distnn.autograd.engine import run_backward
from distnn.tensor import _wrap
x = _wrap(numpy.array([1.0, 2.0]), requires_grad=True)
class Double(Node):
    _next = ((AccumulateGrad(x), 0, (2,), x._data.dtype),)
    def run(self, grads):
        return (grads[0] * 2,)
run_backward([(Double(), 0, numpy.array([1.0, 3.0]))])
print(json.dumps([x.grad._data.tolist(), sorted(m for m in sys.modules if m.startswith("distnn.ops"))]))
"""
    code = _IMPORT_ALONE.rsplit("importlib.import_module", 1)[0] + probe
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[2.0, 6.0], ["distnn.ops"]]  # the stub package, no op module


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path, modules):
    """The distnn modules ``path`` imports at module level (not inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules}


def _ancestors(module):
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_module_level_imports_form_no_cycle():
    """Importing a module first runs the ``__init__`` of each package above it, so those
    count as imports too (except packages the importer is itself inside)."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    edges = {}
    for name, path in paths.items():
        targets = set()
        for target in _module_level_imports(path, paths):
            targets.add(target)
            targets.update(_ancestors(target))
        edges[name] = targets - _ancestors(name) - {name}
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        if module in visiting:
            cycle = visiting[visiting.index(module):] + [module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        for target in sorted(edges[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert "distnn.tensor" in done and len(done) == len(paths)


def test_no_late_imports_or_injected_globals_in_the_core():
    """What held the old cycle together: imports at the bottom of a module, and
    placeholders (``_ops = None``) another module filled in."""
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        assert "noqa: E402" not in text, path
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is None:
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                assert not any(n in ("_ops", "_wrap", "Tensor", "_autograd") for n in names), (path, names)
