"""Differentiable operations, one file per family; each op is an ``Op`` on raw arrays
followed by its functional form. ``TENSOR_METHODS`` lists the functions that
``Tensor`` also exposes as methods (``x.sum()`` is ``ops.sum(x)``)."""

from . import (activation, classification_loss, conv, conversion, dropouts, elementwise, embedding, gather_scatter,
               index, join, linalg, loss, minmax, normalization, padding, pool, reduce, sampling, scan, shape,
               softmaxes, sorting, triangular)
from .activation import *  # noqa: F401,F403
from .classification_loss import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .conversion import *  # noqa: F401,F403
from .dropouts import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .gather_scatter import *  # noqa: F401,F403
from .index import *  # noqa: F401,F403
from .join import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .minmax import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .padding import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from .scan import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .softmaxes import *  # noqa: F401,F403
from .sorting import *  # noqa: F401,F403
from .triangular import *  # noqa: F401,F403

_FAMILIES = (activation, classification_loss, conv, conversion, dropouts, elementwise, embedding, gather_scatter,
             index, join, linalg, loss, minmax, normalization, padding, pool, reduce, sampling, scan, shape,
             softmaxes, sorting, triangular)
TENSOR_METHODS = tuple(name for family in _FAMILIES for name in family.TENSOR_METHODS)
