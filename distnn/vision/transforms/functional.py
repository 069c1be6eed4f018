"""The image operations behind ``transforms``, named as in
``torchvision.transforms.functional``.

An image is a numpy array H x W [x C] (what distnn's datasets hand out where
torchvision has a PIL image), a Tensor [..., C, H, W], or a PIL image when
Pillow is installed; every function returns the kind it was given. Arrays follow
Pillow's arithmetic (a uint8 bilinear resize rounds exactly as Pillow does, PIL
images are resized by Pillow itself), tensors follow torch's ``interpolate``.
"""

from enum import Enum

import numpy as np

from ... import backend
from ...datasets.transforms import Normalize, ToTensor, _is_pil
from ...tensor import Tensor, _wrap

__all__ = ["InterpolationMode", "get_dimensions", "get_image_size", "get_image_num_channels", "to_tensor",
           "normalize", "hflip", "vflip", "crop", "center_crop", "pad", "resize", "resized_crop"]


class InterpolationMode(Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


# Pillow's integer resampling constants, which torchvision also accepts.
_PIL_CODES = {InterpolationMode.NEAREST: 0, InterpolationMode.LANCZOS: 1, InterpolationMode.BILINEAR: 2,
              InterpolationMode.BICUBIC: 3, InterpolationMode.BOX: 4, InterpolationMode.HAMMING: 5}
_MODES_FROM_INT = {code: mode for mode, code in _PIL_CODES.items()}
_OWN_MODES = (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT, InterpolationMode.BILINEAR)
_PRECISION_BITS = 22  # Pillow's fixed point for 8-bit resampling: 32 - 8 - 2


def _unwrap(img):
    """(array, axis of the height, a function giving an array back as ``img``'s kind)."""
    if isinstance(img, Tensor):
        if img.ndim < 2:
            raise ValueError(f"Expect: a tensor image [..., H, W], Actual: {img.ndim} dims")
        return img._data, img.ndim - 2, _wrap
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"Expect: an image array H x W or H x W x C, Actual: {img.ndim} dims")
        return img, 0, lambda a: a
    if _is_pil(img):
        from PIL import Image
        return np.asarray(img), 0, Image.fromarray
    raise TypeError(f"img should be an ndarray, a PIL Image or a Tensor. Got {type(img)}")


def interpolation_mode(interpolation):
    """An ``InterpolationMode`` from itself or from Pillow's integer constant."""
    if isinstance(interpolation, InterpolationMode):
        return interpolation
    if isinstance(interpolation, int) and interpolation in _MODES_FROM_INT:
        return _MODES_FROM_INT[interpolation]
    raise TypeError("Argument interpolation should be a InterpolationMode or a corresponding Pillow integer "
                    f"constant, got {interpolation!r}")


def get_dimensions(img):
    """[channels, height, width]."""
    a, h_axis, _ = _unwrap(img)
    if h_axis == 0:
        return [a.shape[2] if a.ndim == 3 else 1, a.shape[0], a.shape[1]]
    return [a.shape[-3] if a.ndim > 2 else 1, a.shape[-2], a.shape[-1]]


def get_image_size(img):
    """[width, height]."""
    _, h, w = get_dimensions(img)
    return [w, h]


def get_image_num_channels(img):
    return get_dimensions(img)[0]


def to_tensor(pic):
    return ToTensor()(pic)


def normalize(tensor, mean, std, inplace=False):
    return Normalize(mean, std, inplace)(tensor)


def _flip(img, axis_offset):
    a, h_axis, back = _unwrap(img)
    xp = backend.array_module(a)
    return back(xp.ascontiguousarray(xp.flip(a, axis=h_axis + axis_offset)))


def hflip(img):
    return _flip(img, 1)


def vflip(img):
    return _flip(img, 0)


def crop(img, top, left, height, width):
    """The ``height`` x ``width`` window at (``top``, ``left``); where it leaves the
    image, the outside is filled with 0 (as torchvision and Pillow do)."""
    _, h, w = get_dimensions(img)
    right, bottom = left + width, top + height
    if left < 0 or top < 0 or right > w or bottom > h:
        ltrb = [max(-left + min(0, right), 0), max(-top + min(0, bottom), 0),
                max(right - max(w, left), 0), max(bottom - max(h, top), 0)]
        return pad(_window(img, max(top, 0), bottom, max(left, 0), right), ltrb, fill=0)
    return _window(img, top, bottom, left, right)


def _window(img, top, bottom, left, right):
    a, h_axis, back = _unwrap(img)
    index = (slice(None),) * h_axis + (slice(top, bottom), slice(left, right))
    return back(backend.array_module(a).ascontiguousarray(a[index]))


def center_crop(img, output_size):
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    elif len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    _, h, w = get_dimensions(img)
    crop_h, crop_w = output_size
    if crop_w > w or crop_h > h:
        ltrb = [(crop_w - w) // 2 if crop_w > w else 0, (crop_h - h) // 2 if crop_h > h else 0,
                (crop_w - w + 1) // 2 if crop_w > w else 0, (crop_h - h + 1) // 2 if crop_h > h else 0]
        img = pad(img, ltrb, fill=0)
        _, h, w = get_dimensions(img)
        if crop_w == w and crop_h == h:
            return img
    return crop(img, int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0)), crop_h, crop_w)


def _parse_padding(padding):
    if not isinstance(padding, (int, tuple, list)):
        raise TypeError("Got inappropriate padding arg")
    if isinstance(padding, int):
        return [padding] * 4
    if len(padding) not in (1, 2, 4):
        raise ValueError(f"Padding must be an int or a 1, 2, or 4 element tuple, not a {len(padding)} "
                         "element tuple")
    if len(padding) == 1:
        return [padding[0]] * 4
    if len(padding) == 2:
        return [padding[0], padding[1], padding[0], padding[1]]
    return list(padding)


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad the borders: ``padding`` is one int (all sides), (left/right, top/bottom)
    or (left, top, right, bottom); negative values crop. ``fill`` (a number, or one
    value per channel) is used by ``constant``; ``edge``, ``reflect`` and
    ``symmetric`` repeat the image as torchvision documents."""
    if not isinstance(fill, (int, float, tuple, list)):
        raise TypeError("Got inappropriate fill arg")
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    left, top, right, bottom = _parse_padding(padding)
    channels = get_dimensions(img)[0]
    a, h_axis, back = _unwrap(img)
    xp = backend.array_module(a)
    if min(left, top, right, bottom) < 0:
        h, w = a.shape[h_axis], a.shape[h_axis + 1]
        index = (slice(None),) * h_axis + (slice(max(-top, 0), h - max(-bottom, 0)),
                                           slice(max(-left, 0), w - max(-right, 0)))
        a = a[index]
        left, top, right, bottom = (max(p, 0) for p in (left, top, right, bottom))
    widths = [(0, 0)] * a.ndim
    widths[h_axis], widths[h_axis + 1] = (top, bottom), (left, right)
    if padding_mode != "constant":
        return back(xp.pad(a, widths, mode=padding_mode))
    fill = _channel_fill(fill, channels, a, h_axis, xp)
    shape = list(a.shape)
    shape[h_axis] += top + bottom
    shape[h_axis + 1] += left + right
    out = xp.empty(shape, dtype=a.dtype)
    out[...] = fill
    h, w = a.shape[h_axis], a.shape[h_axis + 1]
    out[(slice(None),) * h_axis + (slice(top, top + h), slice(left, left + w))] = a
    return back(out)


def _channel_fill(fill, channels, a, h_axis, xp):
    """``fill`` as an array that broadcasts over the channel axis of ``a``."""
    if isinstance(fill, (int, float)):
        return xp.asarray(fill).astype(a.dtype)
    if len(fill) == 1:
        return xp.asarray(fill[0]).astype(a.dtype)
    if len(fill) != channels:
        raise ValueError(f"The number of elements in 'fill' does not match the number of channels of the image "
                         f"({len(fill)} != {channels})")
    values = xp.asarray(fill).astype(a.dtype)
    return values if h_axis == 0 else values.reshape((channels, 1, 1))


def _compute_resized_output_size(image_size, size, max_size=None):
    h, w = image_size
    short, long = (w, h) if w <= h else (h, w)
    if len(size) == 2:
        return [size[0], size[1]]
    requested_new_short = size[0]
    new_short, new_long = requested_new_short, int(requested_new_short * long / short)
    if max_size is not None:
        if max_size <= requested_new_short:
            raise ValueError(f"max_size = {max_size} must be strictly greater than the requested "
                             f"size for the smaller edge size = {size}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return [new_h, new_w]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """Resize to ``size`` ((h, w), or one int for the shorter edge, keeping the aspect
    ratio). Arrays and tensors support nearest, nearest-exact and bilinear (anti-
    aliased when shrinking, as Pillow and torchvision do; ``antialias=False`` turns
    it off for tensors); PIL images are resized by Pillow with any mode. Unlike
    Pillow with an RGBA image, a 4-channel array is resized without premultiplying
    its alpha."""
    interpolation = interpolation_mode(interpolation)
    if isinstance(size, (list, tuple)):
        if len(size) not in (1, 2):
            raise ValueError(f"Size must be an int or a 1 or 2 element tuple/list, not a {len(size)} element "
                             "tuple/list")
        size = list(size)
    elif isinstance(size, int):
        size = [size]
    else:
        raise TypeError(f"Size should be int or sequence. Got {type(size)}")
    if max_size is not None and len(size) != 1:
        raise ValueError("max_size should only be passed if size specifies the length of the smaller edge, "
                         "i.e. size should be an int or a sequence of length 1 in torchscript mode.")
    _, h, w = get_dimensions(img)
    out_h, out_w = _compute_resized_output_size((h, w), size, max_size)
    if (out_h, out_w) == (h, w):
        return img
    if _is_pil(img):
        return img.resize((out_w, out_h), _PIL_CODES[interpolation])
    if interpolation not in _OWN_MODES:
        raise NotImplementedError(f"resize: interpolation {interpolation.value!r} is not implemented for "
                                  "arrays and tensors; use nearest, nearest-exact or bilinear, or pass a PIL "
                                  "image (Pillow resizes it)")
    a, h_axis, back = _unwrap(img)
    like_pil = not isinstance(img, Tensor)
    antialias = like_pil or bool(antialias)
    # Each pass runs only when its size changes, in Pillow's order (height first when
    # it shrinks by more than twice what the width does), which matters for uint8
    # arrays since each pass rounds.
    passes = [(h_axis + 1, out_w, out_w != w), (h_axis, out_h, out_h != h)]
    if h - out_h > 0 and h - out_h > 2 * (w - out_w):
        passes.reverse()
    for axis, size_, needed in passes:
        if needed:
            a = _resample(a, axis, size_, interpolation, antialias, like_pil)
    return back(a)


def resized_crop(img, top, left, height, width, size, interpolation=InterpolationMode.BILINEAR, antialias=True):
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def _nearest_index(in_size, out_size, mode, like_pil):
    if like_pil:  # Pillow steps a float64 coordinate from the first pixel centre and floors it
        step = in_size / out_size
        coord = np.cumsum(np.r_[step * 0.5, np.full(out_size - 1, step)])
        return np.minimum(coord.astype(np.int64), in_size - 1)
    # torch computes the scale and the source coordinate in float32
    scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if mode is InterpolationMode.NEAREST_EXACT else 0.0)
    coord = (np.arange(out_size, dtype=np.float32) + offset) * scale
    return np.minimum(np.floor(coord).astype(np.int64), in_size - 1)


def _bilinear_taps(in_size, out_size, antialias):
    """(indices, weights), each out_size x K: the triangle filter of Pillow and of
    torch's anti-aliased interpolate, widened by the shrink factor when
    ``antialias``; without it, plain bilinear with align_corners=False."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0) if antialias else 1.0
    support = filter_scale
    centre = (np.arange(out_size) + 0.5) * scale
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's (int) cast truncates, as astype
    hi = np.minimum((centre + support + 0.5).astype(np.int64), in_size)
    taps = max(int((hi - lo).max()), 1)
    index = lo[:, None] + np.arange(taps)
    # Pillow's exact float64 steps (times the reciprocal, a left-to-right sum), so the
    # fixed-point weights of uint8 arrays round as Pillow's do.
    weight = np.maximum(0.0, 1.0 - np.abs((index - centre[:, None] + 0.5) * (1.0 / filter_scale)))
    weight[index >= hi[:, None]] = 0.0
    total = np.zeros((out_size, 1))
    for k in range(taps):
        total[:, 0] += weight[:, k]
    weight = np.divide(weight, total, out=np.zeros_like(weight), where=total != 0)
    return np.minimum(index, in_size - 1), weight


def _resample(a, axis, out_size, mode, antialias, like_pil):
    xp = backend.array_module(a)
    in_size = a.shape[axis]
    if mode is not InterpolationMode.BILINEAR:
        return xp.ascontiguousarray(xp.take(a, xp.asarray(_nearest_index(in_size, out_size, mode, like_pil)),
                                            axis=axis))
    index, weight = _bilinear_taps(in_size, out_size, antialias)
    # weights broadcast along ``axis``: shape (out, 1, ...) for the axes after it
    bshape = (out_size,) + (1,) * (a.ndim - axis - 1)
    if like_pil and a.dtype == np.uint8:
        fixed = np.trunc(0.5 + weight * (1 << _PRECISION_BITS)).astype(np.int64)
        acc = np.full(a.shape[:axis] + (out_size,) + a.shape[axis + 1:], 1 << (_PRECISION_BITS - 1), np.int64)
        for k in range(index.shape[1]):
            acc += np.take(a, index[:, k], axis=axis).astype(np.int64) * fixed[:, k].reshape(bshape)
        return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    # Pillow accumulates in float64; torch in the tensor's float dtype (float32 for integers).
    work = np.float64 if like_pil else (a.dtype if a.dtype.kind == "f" else np.float32)
    index, weight = xp.asarray(index), xp.asarray(weight.astype(work))
    out = xp.zeros(a.shape[:axis] + (out_size,) + a.shape[axis + 1:], dtype=work)
    for k in range(index.shape[1]):
        out += xp.take(a, index[:, k], axis=axis).astype(work) * weight[:, k].reshape(bshape)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        out = xp.clip(xp.round(out), info.min, info.max)
    return out.astype(a.dtype)
