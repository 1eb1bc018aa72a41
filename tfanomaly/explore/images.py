"""Triptychs for the explorer: real | reconstruction | residual, enlarged by a whole factor with
nearest-neighbour pixels and encoded as PNG with zlib alone (no TensorFlow, no imaging library).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

# The page's card colour, so that the gaps between panels read as part of the card.
GAP_COLOUR = (27, 33, 48)
GAP = 4


def scale_for(size: int, panel_size: int) -> int:
    """The whole enlargement factor that brings ``size`` pixels to at least ``panel_size``."""
    return max(1, math.ceil(panel_size / max(1, size)))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A stretched (H, W, C) image in [0, 1] as 8-bit RGB: one band grey, two bands with an empty
    blue, more than three the first three (as ``results.preview.tile`` shows them)."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif image.shape[-1] == 2:
        image = np.concatenate([image, np.zeros_like(image[..., :1])], axis=-1)
    return np.clip(image[..., :3] * 255.0 + 0.5, 0, 255).astype(np.uint8)


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


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """An 8-bit RGB image (H, W, 3) as PNG bytes."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width, channels = pixels.shape
    if channels != 3:
        raise ValueError(f"expected (H, W, 3) RGB pixels, got {pixels.shape}")
    rows = np.zeros((height, 1 + width * 3), np.uint8)  # filter byte 0 (none) before each row
    rows[:, 1:] = pixels.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b""))  # fmt: skip
