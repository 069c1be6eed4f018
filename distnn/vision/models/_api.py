"""Pretrained-weight names shaped like torchvision's ``WeightsEnum``, and the one
check every model builder makes: distnn downloads no weights, so any request for
them is refused with an error that says what to do instead."""

from enum import Enum

__all__ = ["WeightsEnum", "check_no_weights"]


class WeightsEnum(Enum):
    """Members name torchvision's published checkpoints (the value is its URL), so
    programs that mention them import; passing one to a builder is refused."""

    @property
    def url(self):
        return self.value

    def get_state_dict(self, *args, **kwargs):
        raise RuntimeError(_refusal(type(self).__name__.split("_Weights")[0].lower(), f"{self!r}"))

    def __repr__(self):
        return f"{type(self).__name__}.{self.name}"


def _refusal(builder, given):
    return (f"{builder}: pretrained weights are not available in distnn (it downloads no models), got "
            f"{given}. Pass weights=None for a randomly initialised model; to use trained weights, "
            "convert a state_dict to arrays yourself and call model.load_state_dict() (the parameter names "
            "and shapes are torchvision's).")


def check_no_weights(builder, weights, kwargs):
    """Accept ``weights=None`` (and the legacy ``pretrained=False``); refuse the rest.
    Pops ``pretrained`` from ``kwargs``."""
    if kwargs.pop("pretrained", False):
        raise ValueError(_refusal(builder, "pretrained=True"))
    if weights is not None:
        raise ValueError(_refusal(builder, f"weights={weights!r}"))
