"""The pixel-shuffle part of ``nn.functional``: ``pixel_shuffle`` (channels to space,
as in sub-pixel convolution) and its inverse ``pixel_unshuffle``, each a reshape, a
permute and a reshape, so autograd and both backends come for free."""

import numbers

from ..ops.shape import permute, reshape

__all__ = ["pixel_shuffle", "pixel_unshuffle"]


def _check(name, input, factor, factor_name):
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral):
        raise TypeError(f"{name}(): argument '{factor_name}' (position 2) must be int, not {type(factor).__name__}")
    if input.dim() < 3:
        raise RuntimeError(f"{name} expects input to have at least 3 dimensions, but got input with "
                           f"{input.dim()} dimension(s)")
    if factor <= 0:
        raise RuntimeError(f"{name} expects a positive {factor_name}, but got {factor}")
    return int(factor)


def pixel_shuffle(input, upscale_factor):
    """``(*, C * r * r, H, W) -> (*, C, H * r, W * r)`` with ``r = upscale_factor``."""
    r = _check("pixel_shuffle", input, upscale_factor, "upscale_factor")
    *batch, c, h, w = input.shape
    if c % (r * r) != 0:
        raise RuntimeError("pixel_shuffle expects its input's 'channel' dimension to be divisible by the square "
                           f"of upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    n = len(batch)
    x = reshape(input, *batch, c // (r * r), r, r, h, w)
    x = permute(x, *range(n), n, n + 3, n + 1, n + 4, n + 2)
    return reshape(x, *batch, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """``(*, C, H * r, W * r) -> (*, C * r * r, H, W)`` with ``r = downscale_factor``."""
    r = _check("pixel_unshuffle", input, downscale_factor, "downscale_factor")
    *batch, c, h, w = input.shape
    for side, dim, size in (("height", -2, h), ("width", -1, w)):
        if size % r != 0:
            raise RuntimeError(f"pixel_unshuffle expects {side} to be divisible by downscale_factor, but "
                               f"input.size({dim})={size} is not divisible by {r}")
    n = len(batch)
    x = reshape(input, *batch, c, h // r, r, w // r, r)
    x = permute(x, *range(n), n, n + 2, n + 4, n + 1, n + 3)
    return reshape(x, *batch, c * r * r, h // r, w // r)
