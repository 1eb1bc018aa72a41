"""Gaussian smoothing of image batches in stock TF ops (matched filters for the scores and the
morphology parameters), and the median and MAD-sigma they measure noise with."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps out to 3 sigma."""
    half = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def smooth(images, sigma: float, stride: int = 1):
    """Separable Gaussian smoothing of (B, H, W, C) per channel, edges mirrored (stock TF ops).
    ``stride``: only every ``stride``-th pixel of each row and column from the first, (B,
    ceil(H / stride), ceil(W / stride), C): the full smoothing's ``[:, ::stride, ::stride]``, at a
    fraction of the cost."""
    taps = gaussian_kernel(sigma)
    half = len(taps) // 2
    images = tf.convert_to_tensor(images, tf.float32)
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("smooth needs a static channel count")
    images = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    row = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    column = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    out = tf.nn.depthwise_conv2d(images, row, [1, 1, stride, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, column, [1, stride, 1, 1], "VALID")


MAD_SIGMA = 1.4826  # the MAD of a Gaussian times this is its sigma


def median(values):
    """Median over the last axis (static length): the middle value, or the mean of the two middle
    ones, found by selection (``NthElement``, linear in the length) instead of a sort, at less
    than half the cost for the same values.

    For an even length one selection gives the upper middle value; the lower one is the largest
    value below it where at least half the values are below it, and the upper one itself where
    it is tied (the same values as a second selection, at a third of the median's cost less).
    """
    n = values.shape[-1]
    high = tf.raw_ops.NthElement(input=values, n=n // 2)
    if n % 2:
        return high
    below = values < high[..., None]
    count = tf.reduce_sum(tf.cast(below, tf.int32), axis=-1)
    largest_below = tf.reduce_max(tf.where(below, values, tf.fill(tf.shape(values), -np.inf)), -1)
    low = tf.where(count >= n // 2, largest_below, high)
    return 0.5 * (low + high)


def band_mad_sigma(values):
    """(B, C) MAD-sigma about 0 of each image's band of (B, H, W, C) values (static H, W, C)."""
    _, height, width, bands = values.shape
    per_band = tf.reshape(tf.transpose(values, [0, 3, 1, 2]), [-1, bands, height * width])
    return MAD_SIGMA * median(tf.abs(per_band))
