"""The chi^2 of a smoothed residual from the data's own per-pixel variance and mask: the residual
term a score can use where a data set carries variance and mask planes (``ingest`` keeps them).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfanomaly.models.filters import gaussian_kernel


def _separable(images, taps: np.ndarray):
    """``images`` (B, H, W, C) convolved per channel with the 2-D kernel outer(taps, taps), zero
    outside the image (stock TF ops)."""
    half = len(taps) // 2
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("the smoothing needs a static channel count")
    images = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]])
    row = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)), tf.float32)
    column = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)), tf.float32)
    out = tf.nn.depthwise_conv2d(images, row, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, column, [1, 1, 1, 1], "VALID")


def smoothed_chi2(residuals, variances, masks, sigma: float) -> dict:
    """The chi^2 map of the Gaussian-smoothed residual, from the per-pixel variance and mask.

    With K the normalised Gaussian of width ``sigma`` (the taps of ``filters.gaussian_kernel``,
    out to 3 sigma) and w = 1 at kept pixels, 0 at masked ones and outside the image:

        smoothed = (K * (w r)) / (K * w)          (the kernel renormalised to the kept pixels)
        variance = (K^2 * (w var)) / (K * w)^2    (the variance through that linear filter,
                                                   pixels independent)
        chi2     = smoothed^2 / variance          at kept pixels, 0 at masked ones

    so masked pixels contribute nothing, and a pixel whose whole neighbourhood is masked (or whose
    propagated variance is 0) gets chi^2 0. Edges are treated as masked (no mirroring: a mirrored
    pixel would be counted twice with an independent variance).

    Args:
        residuals: (B, H, W, C) float, image - reconstruction, in the units of ``variances``
            (the stretched units ``load_dataset`` gives both in).
        variances: (B, H, W, C) float, per-pixel variance of the image.
        masks: (B, H, W, C) bool, True = pixel left out (``load_dataset``'s ``mask``), or None.
        sigma: width of the Gaussian in pixels (e.g. the score's ``smooth_sigma``).

    Returns:
        A dict of ``chi2`` (B, H, W, C) float32, ``smoothed`` (B, H, W, C) the smoothed residual,
        ``smoothed_variance`` (B, H, W, C) its variance (0 where undefined), and ``n_masked``
        (B,) int32: masked pixels per image, counted over every band.

    Example:
        >>> residuals = np.zeros((1, 8, 8, 1), np.float32)
        >>> residuals[0, 4, 4, 0] = 3.0  # image - reconstruction
        >>> variances = np.ones_like(residuals)
        >>> masks = np.zeros(residuals.shape, bool)
        >>> masks[0, 0, :, 0] = True  # a masked row
        >>> out = smoothed_chi2(residuals, variances, masks, sigma=1.0)
        >>> chi2, n_masked = out["chi2"].numpy(), out["n_masked"].numpy()
        >>> int(n_masked.sum()), float(chi2[0, 0, 0, 0])
        (8, 0.0)
        >>> bool(chi2[0, 4, 4, 0] > chi2[0, 1, 1, 0])
        True

    With a data set's batch: ``smoothed_chi2(batch["image"] - reconstruction, batch["variance"],
    batch["mask"], sigma=1.5)``.
    """
    residuals = tf.convert_to_tensor(residuals, tf.float32)
    variances = tf.convert_to_tensor(variances, tf.float32)
    if masks is None:
        masks = tf.zeros(tf.shape(residuals), tf.bool)
    masks = tf.convert_to_tensor(masks, tf.bool)
    kept = tf.cast(tf.logical_not(masks), tf.float32)
    taps = gaussian_kernel(sigma).astype(np.float64)
    weight = _separable(kept, taps.astype(np.float32))
    smoothed = tf.math.divide_no_nan(_separable(residuals * kept, taps.astype(np.float32)), weight)
    propagated = _separable(variances * kept, (taps**2).astype(np.float32))
    variance = tf.math.divide_no_nan(propagated, weight * weight)
    chi2 = tf.math.divide_no_nan(smoothed * smoothed, variance) * kept
    return {
        "chi2": chi2,
        "smoothed": smoothed * kept,
        "smoothed_variance": variance * kept,
        "n_masked": tf.reduce_sum(tf.cast(masks, tf.int32), axis=[1, 2, 3]),
    }
