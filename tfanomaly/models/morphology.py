"""Standard morphology parameters of galaxy cutouts in TF ops (size, concentration, asymmetry,
smoothness, Gini, ellipticity, centroid offset, compactness, colours), batched and exportable.

Non-parametric definitions as in Conselice (2003) and Lotz et al. (2004), simplified for centred
cutouts so that every shape is static: the radii are measured about the cutout's centre (the
catalogue position), the aperture is the set of pixels above ``threshold`` times the stamp's own
noise (measured from neighbouring-pixel differences, robust to the galaxy), and no background
asymmetry is subtracted. statmorph computes the full definitions with segmentation maps at
~0.1 s per galaxy; these run at thousands of cutouts a second inside the scoring graph.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfanomaly.models.filters import band_mad_sigma, smooth

NAMES = (
    "log_flux",
    "r50",
    "concentration",
    "asymmetry",
    "smoothness",
    "gini",
    "ellipticity",
    "centroid_offset",
    "peak_fraction",
    "log_noise",
)


def colour_names(bands: int) -> tuple[str, ...]:
    """Names of the colours (adjacent band pairs, -2.5 log10 of their flux ratio)."""
    return tuple(f"colour_{b}_{b + 1}" for b in range(bands - 1))


def feature_names(bands: int) -> tuple[str, ...]:
    return NAMES + colour_names(bands)


def stamp_noise(images):
    """(B, C) per-pixel noise of each band from horizontal neighbour differences (MAD / sqrt 2):
    a smooth galaxy barely changes between neighbours, the noise does. The differences of every
    other row and column (a quarter of them) are enough, and sorting them is most of the cost."""
    _, height, width, bands = images.shape  # static: the median needs the count
    diff = images[:, ::2, 1::2, :] - images[:, ::2, 0:-1:2, :]
    return band_mad_sigma(diff) / np.sqrt(2.0)


def _radius_order(size: int):
    """Pixel indices sorted by distance from the centre, and the radius of the circle whose area
    is the number of pixels up to each one (an unbiased radius on a pixel grid)."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    order = np.argsort(np.hypot(x, y).ravel(), kind="stable")
    radii = np.sqrt(np.arange(1, size * size + 1) / np.pi)
    return order.astype(np.int32), radii.astype(np.float32)


def _radius_at(cumulative, radii, fraction):
    """Radius enclosing ``fraction`` of the light, from (B, N) normalised growth curves,
    interpolated linearly between the pixels that straddle it."""
    index = tf.searchsorted(cumulative, tf.fill([tf.shape(cumulative)[0], 1], fraction))[:, 0]
    upper = tf.minimum(index, len(radii) - 1)
    lower = tf.maximum(upper - 1, 0)
    g_low = tf.gather(cumulative, lower, batch_dims=1)
    g_high = tf.gather(cumulative, upper, batch_dims=1)
    weight = tf.clip_by_value((fraction - g_low) / tf.maximum(g_high - g_low, 1e-12), 0.0, 1.0)
    r_low, r_high = tf.gather(radii, lower), tf.gather(radii, upper)
    return r_low + weight * (r_high - r_low)


def morphology(images, threshold: float = 2.0):
    """(B, H, W, C) flux (or any monotone stretch of it) -> (B, len(feature_names(C))) float32.

    The band-summed image gives the light profile; the colours come from each band's flux in the
    same aperture. Sizes are in pixels; fluxes are floored so that logarithms stay finite.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    size, bands = images.shape[1], images.shape[3]  # static: the profiles need them
    noise = stamp_noise(images)  # (B, C)
    total_noise = tf.sqrt(tf.reduce_sum(tf.square(noise), axis=1))  # of the band sum
    light = tf.reduce_sum(images, axis=-1)  # (B, H, W)
    floor = 1e-6 * tf.reduce_max(tf.abs(light), axis=[1, 2]) + 1e-12
    # The aperture: pixels above ``threshold`` times the noise, with a linear ramp from half of it
    # (continuous in the pixel values, so float32 rounding moves the parameters only by as much).
    level = light / (threshold * total_noise[:, None, None] + 1e-30)
    inside = tf.clip_by_value(2.0 * level - 1.0, 0.0, 1.0)
    positive = inside * tf.maximum(light, 0.0)
    flux = tf.reduce_sum(positive, axis=[1, 2]) + floor

    # Light profile about the centre: growth curve along the pixels sorted by radius.
    order, radii = _radius_order(size)
    sorted_light = tf.gather(tf.reshape(positive, [-1, size * size]), order, axis=1)
    growth = tf.cumsum(sorted_light, axis=1) / flux[:, None]
    r20, r50, r80 = (_radius_at(growth, radii, f) for f in (0.2, 0.5, 0.8))
    concentration = 5.0 * tf.math.log(r80 / r20) / np.log(10.0)

    # Asymmetry and smoothness (clumpiness) of the light inside the aperture.
    rotated = tf.reverse(positive, axis=[1, 2])
    asymmetry = tf.reduce_sum(tf.abs(positive - rotated), axis=[1, 2]) / (2.0 * flux)
    smoothed = smooth(positive[..., None], max(1.0, size / 16.0))[..., 0]
    smoothness = tf.reduce_sum(tf.nn.relu(positive - smoothed), axis=[1, 2]) / flux

    # Gini of the aperture's pixels (zeros outside it count as the faintest).
    values = tf.sort(tf.reshape(positive, [-1, size * size]), axis=1)
    n = values.shape[1]
    ranks = tf.constant(2.0 * np.arange(1, n + 1) - n - 1, tf.float32)
    gini = tf.reduce_sum(ranks * values, axis=1) / (flux * (n - 1))

    # Second moments about the light's centroid.
    y, x = np.mgrid[:size, :size].astype(np.float32) - (size - 1) / 2.0
    cx = tf.reduce_sum(positive * x, axis=[1, 2]) / flux
    cy = tf.reduce_sum(positive * y, axis=[1, 2]) / flux
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    xx = tf.reduce_sum(positive * dx * dx, axis=[1, 2]) / flux
    yy = tf.reduce_sum(positive * dy * dy, axis=[1, 2]) / flux
    xy = tf.reduce_sum(positive * dx * dy, axis=[1, 2]) / flux
    ellipticity = tf.sqrt(tf.square(xx - yy) + 4.0 * tf.square(xy)) / (xx + yy + 1e-6)
    offset = tf.sqrt(cx * cx + cy * cy)
    peak = tf.reduce_max(positive, axis=[1, 2]) / flux

    columns = [
        tf.math.log(flux),
        r50,
        concentration,
        asymmetry,
        smoothness,
        gini,
        ellipticity,
        offset,
        peak,
        tf.math.log(total_noise + 1e-12),
    ]
    if bands > 1:
        band_flux = tf.reduce_sum(images * inside[..., None], axis=[1, 2])
        band_flux = tf.maximum(band_flux, floor[:, None] / bands)
        magnitudes = -2.5 * tf.math.log(band_flux) / np.log(10.0)
        columns += [magnitudes[:, b] - magnitudes[:, b + 1] for b in range(bands - 1)]
    return tf.stack(columns, axis=1)
