"""Neural-network building blocks: ``Module``, ``Parameter``, layers, losses,
``functional`` and ``init``, with PyTorch's names and behaviour."""

from . import functional, init, parallel, utils  # noqa: F401  (parallel resolves DDP lazily)
from .modules import *  # noqa: F401,F403
from .parameter import Parameter  # noqa: F401
