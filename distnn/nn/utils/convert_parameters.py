"""Flattening parameters into one vector and back: ``parameters_to_vector``
(differentiable, a concatenation of views) and ``vector_to_parameters``
(each parameter's storage becomes a slice of the vector, as in PyTorch)."""

from ... import ops
from ...tensor import Tensor, _typename

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _check_param_device(param, old_device):
    if old_device is not None and param.device != old_device:
        raise TypeError("Found two parameters on different devices, this is currently not supported. "
                        f"Expect: {old_device}, Actual: {param.device}")
    return param.device


def parameters_to_vector(parameters):
    """One 1-D tensor holding every parameter's elements, in order."""
    device = None
    flat = []
    for param in parameters:
        device = _check_param_device(param, device)
        flat.append(ops.reshape(param, -1))
    return ops.cat(flat)


def vector_to_parameters(vec, parameters):
    """Point each parameter's data at its slice of ``vec`` (the inverse of ``parameters_to_vector``)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {_typename(vec)}")
    device = None
    pointer = 0
    for param in parameters:
        device = _check_param_device(param, device)
        n = param.numel()
        if pointer + n > vec.numel():
            raise RuntimeError(f"vector of {vec.numel()} elements is too short for the parameters: "
                               f"Expect: at least {pointer + n} elements")
        param.data = ops.reshape(vec[pointer:pointer + n], tuple(param.shape)).data
        pointer += n
