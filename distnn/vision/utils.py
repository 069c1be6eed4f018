"""``make_grid`` and ``save_image`` as in ``torchvision.utils``: tile a batch of
images into one image (same arithmetic, so the same pixels as torchvision), and
write it to a PNG, JPEG, ... file through Pillow (the optional ``images`` extra),
the format chosen from the file name.
"""

import math

import numpy as np

from .. import backend
from ..tensor import Tensor, _wrap

__all__ = ["make_grid", "save_image"]


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """Tile a B x C x H x W batch (or a list of C x H x W images) ``nrow`` per row,
    ``padding`` pixels of ``pad_value`` apart, into one C x H' x W' tensor. One-
    channel images become three-channel; ``normalize`` maps ``value_range`` (by
    default the min and max, of each image with ``scale_each``) to [0, 1]."""
    data = _batch_array(tensor)
    xp = backend.array_module(data)
    if data.ndim == 2:  # a single H x W image
        data = data[None]
    if data.ndim == 3:  # a single image
        if data.shape[0] == 1:
            data = xp.concatenate((data, data, data), 0)
        data = data[None]
    if data.ndim == 4 and data.shape[1] == 1:
        data = xp.concatenate((data, data, data), 1)
    if normalize is True:
        if value_range is not None and not isinstance(value_range, tuple):
            raise TypeError("value_range has to be a tuple (min, max) if specified. min and max are numbers")
        data = data.copy()
        for image in (data if scale_each is True else [data]):
            _normalize_in_place(image, value_range)
    if data.shape[0] == 1:
        return _wrap(data[0])
    nmaps = data.shape[0]
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(float(nmaps) / xmaps))
    height, width = int(data.shape[2] + padding), int(data.shape[3] + padding)
    grid = xp.full((data.shape[1], height * ymaps + padding, width * xmaps + padding), pad_value, dtype=data.dtype)
    for k in range(nmaps):
        y, x = divmod(k, xmaps)
        top, left = y * height + padding, x * width + padding
        grid[:, top:top + height - padding, left:left + width - padding] = data[k]
    return _wrap(grid)


def _batch_array(tensor):
    """The images' array (detached), from a tensor or a list of same-sized tensors."""
    if isinstance(tensor, Tensor):
        return tensor._data
    if isinstance(tensor, list):
        for t in tensor:
            if not isinstance(t, Tensor):
                raise TypeError(f"tensor or list of tensors expected, got a list containing {type(t)}")
        if not tensor:
            raise ValueError("make_grid: Expect: at least one image, Actual: an empty list")
        shapes = {tuple(t.shape) for t in tensor}
        if len(shapes) > 1:
            raise ValueError(f"stack expects each tensor to be equal size, but got {sorted(shapes)}")
        xp = backend.array_module(tensor[0]._data)
        return xp.stack([t._data for t in tensor])
    raise TypeError(f"tensor or list of tensors expected, got {type(tensor)}")


def _normalize_in_place(image, value_range):
    # torchvision's clamp_, sub_, div_ with Python-float bounds, in the image's dtype
    low, high = value_range if value_range is not None else (float(image.min()), float(image.max()))
    dtype = image.dtype.type
    image.clip(dtype(low), dtype(high), out=image)
    image -= dtype(low)
    image /= dtype(max(high - low, 1e-5))


def save_image(tensor, fp, format=None, **kwargs):
    """Write ``make_grid(tensor, **kwargs)`` (values in [0, 1]) as an 8-bit image to
    ``fp``, a path (format from its extension) or a binary file object (pass
    ``format``). Needs Pillow: ``pip install 'distnn[images]'``."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("save_image needs Pillow to write image files: install the 'images' extra "
                          "(pip install 'distnn[images]') or pip install pillow") from None
    grid = backend.to_numpy(make_grid(tensor, **kwargs)._data)
    channels = grid.shape[0]
    if channels not in (3, 4):
        raise ValueError(f"save_image: Expect: 1, 3 or 4 channels (grey, RGB or RGBA), Actual: {channels}")
    # torchvision's mul(255).add_(0.5).clamp_(0, 255) then a truncating cast to uint8
    work = grid.dtype.type if grid.dtype.kind == "f" else np.float32
    scaled = grid.astype(work) * work(255) + work(0.5)
    pixels = np.clip(scaled, 0, 255).transpose(1, 2, 0).astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(pixels)).save(fp, format=format)
