"""Pictures of cutouts: stretched images as RGB, tiled into grids and written as PNG (encoded with
zlib alone, so neither TensorFlow nor an imaging library is needed).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from tfanomaly.fileio import atomic_path


def rgb(images: np.ndarray) -> np.ndarray:
    """Stretched images (..., H, W, C) in [0, 1] as three channels: one band grey, two bands with
    an empty blue, more than three the first three."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.shape[-1] == 2:
        images = np.concatenate([images, np.zeros_like(images[..., :1])], axis=-1)
    return images


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as 8-bit values (rounded, clipped)."""
    return np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)


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
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def tile(images: np.ndarray, columns: int, gap: int = 2, background: float = 1.0) -> np.ndarray:
    """Tile images (N, H, W, C) in [0, 1] into one (rows*H, columns*W, 3) array, row-major,
    in the colours of :func:`rgb`."""
    images = rgb(images)
    n, height, width, _ = images.shape
    rows = max(1, -(-n // columns))
    grid = np.full(
        (rows * (height + gap) + gap, columns * (width + gap) + gap, 3), background, np.float32
    )
    for k in range(n):
        r, c = divmod(k, columns)
        y, x = gap + r * (height + gap), gap + c * (width + gap)
        grid[y : y + height, x : x + width] = images[k]
    return grid


def save_png(path, grid: np.ndarray, scale: int = 1) -> Path:
    """Write a float image in [0, 1] (H, W, 3) as an 8-bit PNG, enlarged ``scale`` times."""
    pixels = to_uint8(grid)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(pixels))
    return Path(path)
