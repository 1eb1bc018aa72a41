"""Bring cutouts to a standard size at ingest (``--size N --resize crop|area``): a centre crop, or
an exact area-weighted resampling that carries the variance and mask planes along.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import ConfigError

RESIZE_METHODS = ("crop", "area")


def resized_shape(shape: tuple[int, int, int], size: int | None, method: str) -> tuple:
    """The (H, W, C) cutouts of ``shape`` have after the resize (``size`` None: unchanged)."""
    if size is None:
        return tuple(shape)
    height, width, bands = shape
    if method == "crop" and (size > height or size > width):
        raise ConfigError(
            f"--size {size} --resize crop: the cutouts are only {height}x{width} px; crop to at "
            f"most {min(height, width)} or use --resize area"
        )
    return (size, size, bands)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: output pixel i is the area-weighted mean of the input pixels its
    footprint [i n_in/n_out, (i+1) n_in/n_out) overlaps, each weighted by the overlap. Rows sum
    to 1 (surface brightness is conserved; an integer factor b is the plain b x b block mean)."""
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _or_reduce(masks: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """OR of the mask bits of every input pixel with a share in each output pixel, along ``axis``."""
    parts = []
    for row in weights:
        support = np.flatnonzero(row > 0)
        taken = np.take(masks, np.arange(support[0], support[-1] + 1), axis=axis)
        parts.append(np.bitwise_or.reduce(taken, axis=axis, keepdims=True))
    return np.concatenate(parts, axis=axis)


def resize(images, variances, masks, size: int | None, method: str):
    """Resize a batch (n, H, W, C) of flux, and its variance and mask planes (either may be None),
    to (n, size, size, C).

    ``crop`` takes the central size x size pixels (the extra pixel of an odd margin is dropped on
    the far side). ``area`` resamples each axis with :func:`area_weights`: the flux per pixel is
    the area-weighted mean of the input pixels (multiply by (H/size)^2 for the total flux of the
    larger pixel), the variance is propagated exactly (sum of weight^2 x variance, pixels
    independent) and the mask of an output pixel is the OR of the bits of every input pixel it
    overlaps.
    """
    if size is None:
        return images, variances, masks
    _, height, width, _ = images.shape
    if method == "crop":
        top, left = (height - size) // 2, (width - size) // 2
        window = (slice(None), slice(top, top + size), slice(left, left + size))

        def cut(plane):
            return None if plane is None else np.ascontiguousarray(plane[window])

        return cut(images), cut(variances), cut(masks)
    if method != "area":
        raise ConfigError(f"unknown resize '{method}'; choose one of {', '.join(RESIZE_METHODS)}")
    rows, cols = area_weights(height, size), area_weights(width, size)
    out = np.einsum("ij,njkc,lk->nilc", rows, images.astype(np.float64), cols, optimize=True)
    if variances is not None:
        variances = np.einsum(
            "ij,njkc,lk->nilc", rows**2, variances.astype(np.float64), cols**2, optimize=True
        ).astype(np.float32)
    if masks is not None:
        masks = _or_reduce(_or_reduce(masks, rows, axis=1), cols, axis=2)
    return out.astype(np.float32), variances, masks
