"""Image grids for looking at cutouts: stretched images tiled into a PNG (written with TF's encoder,
so no plotting library is needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfanomaly.fileio import atomic_path


def tile(images: np.ndarray, columns: int, gap: int = 2, background: float = 1.0) -> np.ndarray:
    """Tile images (N, H, W, C) in [0, 1] into one (rows*H, columns*W, 3) array, row-major.

    One-band images are shown grey; more than three channels show the first three.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.shape[-1] == 2:
        images = np.concatenate([images, np.zeros_like(images[..., :1])], axis=-1)
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
    import tensorflow as tf

    pixels = np.clip(np.asarray(grid) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    with atomic_path(path) as tmp:
        tmp.write_bytes(tf.io.encode_png(pixels).numpy())
    return Path(path)
