"""The oracles the programs that import torchvision need (``torchvision``, and Pillow
as ``pil_image``), taken from tests/vision, which knows how to import torchvision
over a CPU-only torch."""

from vision.conftest import pil_image, torchvision  # noqa: F401  (fixtures)
