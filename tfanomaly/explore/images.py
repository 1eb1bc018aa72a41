"""Triptychs for the explorer: real | reconstruction | residual, enlarged by a whole factor with
nearest-neighbour pixels (encoded with :func:`tfanomaly.results.preview.encode_png`).
"""

from __future__ import annotations

import math

import numpy as np

from tfanomaly.results.preview import rgb, to_uint8

# The page's card colour, so that the gaps between panels read as part of the card.
GAP_COLOUR = (27, 33, 48)
GAP = 4


def scale_for(size: int, panel_size: int) -> int:
    """The whole enlargement factor that brings ``size`` pixels to at least ``panel_size``."""
    return max(1, math.ceil(panel_size / max(1, size)))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A stretched (H, W) or (H, W, C) image in [0, 1] as 8-bit RGB in the colours of the grids
    (:func:`tfanomaly.results.preview.rgb`); NaN shows as 0."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    return to_uint8(rgb(image if image.ndim == 3 else image[..., None]))


def triptych(panels, panel_size: int = 128, gap: int = GAP) -> np.ndarray:
    """The panels (H, W, C) side by side, each enlarged to at least ``panel_size`` pixels."""
    rgb = [as_rgb(p) for p in panels]
    height, width = rgb[0].shape[:2]
    scale = scale_for(max(height, width), panel_size)
    big = [p.repeat(scale, axis=0).repeat(scale, axis=1) for p in rgb]
    out = np.empty((height * scale, len(big) * width * scale + (len(big) - 1) * gap, 3), np.uint8)
    out[:] = GAP_COLOUR
    for k, panel in enumerate(big):
        x = k * (width * scale + gap)
        out[:, x : x + width * scale] = panel
    return out


def triptych_shape(image_shape, panel_size: int = 128, gap: int = GAP) -> tuple[int, int]:
    """(height, width) of the triptych of images of ``image_shape`` (H, W, ...)."""
    height, width = image_shape[:2]
    scale = scale_for(max(height, width), panel_size)
    return height * scale, 3 * width * scale + 2 * gap
