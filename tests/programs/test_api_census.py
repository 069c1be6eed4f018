"""The API census (bench/api_census.py): every torch/torchvision name the programs of
pytorch/examples and the tutorials use resolves in distnn after a bare
``import distnn`` (checked in a fresh interpreter, as a program starts), except
the names listed as not supported, which README.md's "Not supported yet" names and
which must still be missing (so the list shrinks when one arrives). The names
themselves are checked against PyTorch, so the census lists real torch API."""

import importlib.util
import json
import subprocess
import sys

import pytest

from multiproc import REPO
from programs.program_check import requires_torch, torch

_spec = importlib.util.spec_from_file_location("api_census", REPO / "bench" / "api_census.py")
census = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(census)


@pytest.fixture(scope="module")
def missing():
    """{program: [names distnn lacks]}, from a fresh interpreter."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "api_census.py"), "--json"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("program", sorted(census.PROGRAMS))
def test_program_names_resolve_in_distnn(missing, program):
    unexpected = [name for name in missing[program] if name not in census.NOT_SUPPORTED]
    assert not unexpected, f"{program} uses names distnn lacks: {unexpected}"


def test_names_listed_as_not_supported_are_missing_and_documented(missing):
    lacking = {name for names in missing.values() for name in names}
    arrived = sorted(set(census.NOT_SUPPORTED) - lacking)
    assert not arrived, f"now in distnn, drop from NOT_SUPPORTED and README's list: {arrived}"
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Not supported yet"):]
    section = section[:section.index("\n#", 1)]
    undocumented = [name for name in census.NOT_SUPPORTED if name.rsplit(".", 1)[-1] not in section]
    assert not undocumented, f"README's 'Not supported yet' does not name: {undocumented}"


@requires_torch
def test_census_names_are_torch_api():
    names = {name for program in census.PROGRAMS for name in census.names(program) if name.startswith("torch.")}
    unknown = sorted(name for name in names if not census.resolves(name, torch, None))
    assert not unknown, f"not PyTorch names: {unknown}"
