"""Oracles for the distnn.vision tests: ``torchvision`` (optional; tests that need it
skip without it) and Pillow (optional; likewise).

torchvision's wheels on PyPI are CUDA builds; over a CPU-only torch their compiled
ops (nms, roi_align...) fail to load and ``import torchvision`` raises while it
registers them. The pure-Python parts used here as oracles (models, utils,
transforms, datasets) do not need those ops, so the import is retried with the two
registration modules stubbed out.
"""

import sys
import types

import pytest

_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def _import_torchvision():
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    try:
        import torchvision
        return torchvision
    except ImportError:
        return None
    except RuntimeError:  # compiled ops missing: see the module docstring
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for name in _REGISTRATIONS:
            sys.modules[name] = types.ModuleType(name)
        try:
            import torchvision
            return torchvision
        except Exception:
            return None


_torchvision = _import_torchvision()

try:
    from PIL import Image as _PILImage
except ImportError:
    _PILImage = None


@pytest.fixture(scope="session")
def torchvision():
    if _torchvision is None:
        pytest.skip("torchvision (test oracle) not importable")
    return _torchvision


@pytest.fixture(scope="session")
def pil_image():
    """``PIL.Image``, or a skip when Pillow is not installed."""
    if _PILImage is None:
        pytest.skip("Pillow not installed (pip install 'distnn[images]')")
    return _PILImage
