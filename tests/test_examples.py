"""The seed tutorials (examples/two_layer_net.py, rnn.py, hooks.py) run under
distnn and print what PyTorch prints for the same script: the same shapes,
module reprs and hook output. Numbers differ (different random draws), so they
are masked; everything else must match line for line."""

import re
import subprocess
import sys

import pytest

from multiproc import REPO

EXAMPLES = ["two_layer_net.py", "rnn.py", "hooks.py"]
_NUMBER = re.compile(r"-?\d+\.\d+(e[-+]?\d+)?")


def run_source(source, tmp_path, name):
    script = tmp_path / name
    script.write_text(source)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                             "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def normalise(output):
    """Mask the numbers and the library's own type names."""
    text = output.replace("distnn.tensor.Tensor", "torch.Tensor").replace("distnn.nn.parameter", "torch.nn.parameter")
    return [_NUMBER.sub("<num>", line) for line in text.splitlines()]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_matches_torch_output(name, tmp_path):
    source = (REPO / "examples" / name).read_text()
    ours = run_source(source, tmp_path, name)
    assert ours.strip(), "example printed nothing"
    torch = pytest.importorskip("torch")
    del torch
    theirs = run_source(source.replace("import distnn", "import torch").replace("from distnn", "from torch"),
                        tmp_path, "torch_" + name)
    assert normalise(ours) == normalise(theirs)


def test_two_layer_net_learns():
    out = subprocess.run([sys.executable, str(REPO / "examples" / "two_layer_net.py")], capture_output=True,
                         text=True, timeout=120, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                      "PATH": "/usr/bin:/bin"})
    losses = [float(line.split()[1]) for line in out.stdout.splitlines() if re.match(r"^\d+ ", line)]
    assert len(losses) == 500 and losses[-1] < losses[0] / 100
