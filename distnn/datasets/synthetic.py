"""``SyntheticDigits``: an offline stand-in for MNIST. Each digit is a few pen
strokes (polylines in a unit box) that are jittered, sheared, rotated, scaled,
shifted and drawn with an anti-aliased pen of random width, plus pixel noise.
The same (n, seed, train) always gives the same images; train and test draw
from different streams. A small ConvNet learns it to well over 90%.
"""

import numpy as np

from .mnist import DigitImages

__all__ = ["SyntheticDigits"]


def _arc(cx, cy, rx, ry, start, stop, points=9):
    """Points on an ellipse; angles in radians with y pointing down (so -pi/2 is the top)."""
    t = np.linspace(start, stop, points)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points):
    return np.asarray(points, dtype=np.float64)


_PI = np.pi
# Strokes of each digit in a unit box (x right, y down).
_GLYPHS = [
    [_arc(0.5, 0.5, 0.28, 0.4, 0, 2 * _PI, 13)],
    [_line((0.34, 0.26), (0.52, 0.1), (0.52, 0.9))],
    [np.concatenate([_arc(0.5, 0.32, 0.22, 0.2, _PI, 2 * _PI + 0.55, 8),
                     _line((0.25, 0.9), (0.8, 0.9))])],
    [np.concatenate([_arc(0.5, 0.3, 0.2, 0.19, _PI + 0.3, 2.5 * _PI, 7),
                     _arc(0.5, 0.69, 0.22, 0.21, -0.5 * _PI, _PI - 0.3, 8)[1:]])],
    [_line((0.66, 0.9), (0.66, 0.1), (0.2, 0.64), (0.82, 0.64))],
    [np.concatenate([_line((0.74, 0.1), (0.33, 0.1), (0.3, 0.46)),
                     _arc(0.5, 0.66, 0.23, 0.22, -2.2, 2.6, 9)])],
    [np.concatenate([_line((0.68, 0.1), (0.42, 0.3)), _arc(0.5, 0.68, 0.21, 0.21, -2.3, 2 * _PI - 2.3, 12)])],
    [_line((0.2, 0.1), (0.8, 0.1), (0.42, 0.9))],
    [_arc(0.5, 0.29, 0.17, 0.18, 0, 2 * _PI, 10), _arc(0.5, 0.7, 0.21, 0.2, -0.5 * _PI, 1.5 * _PI, 11)],
    [np.concatenate([_arc(0.5, 0.32, 0.2, 0.2, 0.15, 2 * _PI + 0.15, 12), _line((0.64, 0.9))])],
]


def _glyph_arrays(glyph):
    """(vertices V x 2, segment endpoint indices S x 2) for one digit."""
    vertices, segments, offset = [], [], 0
    for stroke in glyph:
        vertices.append(stroke)
        segments.extend((offset + i, offset + i + 1) for i in range(len(stroke) - 1))
        offset += len(stroke)
    return np.concatenate(vertices), np.asarray(segments)


_SHAPES = [_glyph_arrays(g) for g in _GLYPHS]

_SIZE, _BOX = 28, 23  # the unit box spans 23 pixels, so a digit is ~19 pixels tall as in MNIST
_CENTRES = (np.stack(np.meshgrid(np.arange(_SIZE), np.arange(_SIZE)), -1).reshape(-1, 2) + 0.5
            - (_SIZE - _BOX) / 2).astype(np.float32) / _BOX  # pixel centres (x, y) in the unit box


def _render(label, rng, count):
    """``count`` images of digit ``label`` as float64 intensities in [0, 1], shape (count, 28, 28)."""
    vertices, segments = _SHAPES[label]
    v = vertices[None] + rng.normal(0.0, 0.018, (count,) + vertices.shape)  # hand wobble
    angle = rng.uniform(-0.25, 0.25, count)
    scale = rng.uniform(0.8, 1.08, (count, 2))
    shear = rng.uniform(-0.3, 0.3, count)
    shift = rng.uniform(-0.09, 0.09, (count, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    # M = rotation @ [[sx, shear], [0, sy]], applied about the box centre.
    m = np.empty((count, 2, 2))
    m[:, 0, 0], m[:, 0, 1] = cos * scale[:, 0], cos * shear - sin * scale[:, 1]
    m[:, 1, 0], m[:, 1, 1] = sin * scale[:, 0], sin * shear + cos * scale[:, 1]
    v = np.einsum("nij,nvj->nvi", m, v - 0.5) + 0.5 + shift[:, None]
    v = v.astype(np.float32)
    a, b = v[:, segments[:, 0]], v[:, segments[:, 1]]          # (count, S, 2)
    abx, aby = (b[..., 0] - a[..., 0])[:, None], (b[..., 1] - a[..., 1])[:, None]
    inv_len2 = 1.0 / np.maximum(abx * abx + aby * aby, np.float32(1e-12))
    apx = _CENTRES[None, :, 0:1] - a[:, None, :, 0]            # (count, P, S)
    apy = _CENTRES[None, :, 1:2] - a[:, None, :, 1]
    t = np.clip((apx * abx + apy * aby) * inv_len2, 0.0, 1.0)
    apx -= t * abx
    apy -= t * aby
    dist = np.sqrt((apx * apx + apy * apy).min(-1))            # distance to the nearest stroke
    half_width = rng.uniform(0.045, 0.085, (count, 1))
    ink = np.clip((half_width - dist) * _BOX + 0.5, 0.0, 1.0)  # one-pixel anti-aliased edge
    ink *= rng.uniform(0.75, 1.0, (count, 1))
    ink += rng.normal(0.0, 0.04, ink.shape)
    return np.clip(ink, 0.0, 1.0).reshape(count, _SIZE, _SIZE)


class SyntheticDigits(DigitImages):
    """``n`` procedurally drawn digits, classes balanced (``n // 10`` each, the
    remainder to the lowest labels), deterministic in ``(n, seed, train)``.
    Samples, ``data``/``targets`` and ``arrays()`` behave as for ``MNIST``."""

    def __init__(self, n=10000, seed=0, train=True, transform=None, target_transform=None):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"Expect: n a non-negative int, Actual: {n!r}")
        self.n, self.seed, self.train = int(n), int(seed), bool(train)
        rng = np.random.default_rng([self.seed, 1 if self.train else 2])
        labels = rng.permutation(np.arange(self.n) % 10)
        images = np.zeros((self.n, _SIZE, _SIZE), dtype=np.uint8)
        chunk = 256  # bounds the (chunk, 784, segments, 2) distance temporaries
        for label in range(10):
            where = np.flatnonzero(labels == label)
            for lo in range(0, len(where), chunk):
                part = where[lo:lo + chunk]
                images[part] = np.rint(_render(label, rng, len(part)) * 255).astype(np.uint8)
        super().__init__(images, labels, transform, target_transform)

    def __repr__(self):
        return (f"Dataset {type(self).__name__}\n    Number of datapoints: {len(self)}\n"
                f"    Seed: {self.seed}\n    Split: {'Train' if self.train else 'Test'}")
