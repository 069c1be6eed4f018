"""Reverse-mode automatic differentiation: ``backward``, ``grad``, grad modes,
user-defined ``Function``s and ``gradcheck``.

Layers, each importing only those before it: ``grad_mode``, ``views``, ``node``
(the graph), ``function`` (recording: ``Function``, ``Op``), ``engine`` (first
order, on arrays), ``graph_xp`` and ``graph_engine`` (``create_graph=True``),
``api`` (``backward``, ``grad``), ``gradcheck``.
"""

from .api import Variable, backward, grad
from .function import Function, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import gradcheck, gradgradcheck
from .node import Node

__all__ = ["backward", "grad", "Variable", "Function", "Node", "no_grad", "enable_grad",
           "set_grad_enabled", "inference_mode", "is_grad_enabled", "gradcheck", "gradgradcheck",
           "once_differentiable"]
