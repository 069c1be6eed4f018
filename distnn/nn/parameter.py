"""``Parameter``: a leaf Tensor that a ``Module`` registers as one of its weights.

It shares storage (and the version counter) with the tensor it is built
from, as ``torch.nn.Parameter`` does; every op on it returns a plain Tensor.
"""

from .. import backend
from ..tensor import Tensor, _init, _wrap


class Parameter(Tensor):
    """A Tensor that is a module parameter: ``Parameter(data=None, requires_grad=True)``.

    Assigning one as a Module attribute registers it, so it appears in
    ``parameters()`` and ``state_dict()``.
    """

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = Tensor()
        elif not isinstance(data, Tensor):
            raise TypeError(f"Expect: Parameter(data: Tensor), Actual: {type(data).__name__}")
        param = Tensor.__new__(cls)
        _init(param, data._data)
        param._vc = data._vc  # a view of ``data``'s storage, like ``data.detach()``
        if requires_grad:
            param.requires_grad_(True)
        return param

    def __init__(self, data=None, requires_grad=True):
        """Everything happens in ``__new__``; this only keeps ``Tensor.__init__`` from running."""

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(_wrap(self._data.copy()), self.requires_grad)
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        # copy.copy / DataLoader workers only; nothing in distnn pickles parameters.
        return (_rebuild_parameter, (backend.to_numpy(self._data), self.requires_grad))


def _rebuild_parameter(array, requires_grad):
    return Parameter(_wrap(array), requires_grad)
