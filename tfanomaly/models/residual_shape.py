"""The shape of what the generator could not reproduce: a few numbers per cutout that describe its
residual image (how concentrated, elongated, off-centre, aligned with the pixel grid, in which
bands), so that anomalies of one kind lie together whatever galaxy they sit on. Stock TF ops.
"""

from __future__ import annotations

import tensorflow as tf

from tfanomaly.models.filters import MAD_SIGMA, median

NAMES = (
    "log_excess",
    "peak_1",
    "peak_4",
    "peak_16",
    "column_fraction",
    "row_fraction",
    "inner_fraction",
    "middle_fraction",
    "centroid_offset",
    "elongation",
    "extent",
    "grid_alignment",
    "diagonal_alignment",
    "positive_fraction",
    "top_band_purity",
)
TINY = 1e-9


def feature_names(bands: int) -> tuple[str, ...]:
    """Names of the descriptor's columns: ``NAMES`` then each band's share of the excess."""
    return NAMES + tuple(f"band_share_{b}" for b in range(bands))


def residual_shape(images, reconstructions):
    """(B, len(feature_names(C))) descriptors of the signed residual ``images - reconstructions``
    (B, H, W, C; static H, W, C), each image on its own (no batch statistics).

    Each band is put in units of its own robust noise (median and MAD over the stamp); the excess
    energy map is the sum over bands of the squared residual less its expectation for pure noise,
    clipped at 0. Its normalised distribution gives the fractions of the excess in the brightest
    1, 4 and 16 pixels (a cosmic ray is one pixel), in the brightest column and row (a bad
    column), within H/8 and H/4 of the centre, the centroid's offset, the elongation and extent
    of its second moments (a trail is long and thin) and their alignment with the pixel grid and
    its diagonals; and the positive fraction of the residual (light added, not missing), how much
    of the brightest excess pixel lies in one band, and each band's share of the excess.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    residual = images - tf.convert_to_tensor(reconstructions, tf.float32)
    _, height, width, bands = residual.shape
    per_band = tf.reshape(tf.transpose(residual, [0, 3, 1, 2]), [-1, bands, height * width])
    centre = median(per_band)  # (B, C)
    scale = MAD_SIGMA * median(tf.abs(per_band - centre[..., None]))
    z = (residual - centre[:, None, None, :]) / (scale[:, None, None, :] + 1e-6)
    excess = tf.nn.relu(tf.reduce_sum(tf.square(z), axis=-1) - 2.0 * bands)  # (B, H, W)
    total = tf.reduce_sum(excess, axis=[1, 2])
    p = excess / (total[:, None, None] + TINY)

    ys = tf.range(height, dtype=tf.float32)[:, None] * tf.ones([1, width])
    xs = tf.ones([height, 1]) * tf.range(width, dtype=tf.float32)[None, :]
    mean_y = tf.reduce_sum(p * ys, axis=[1, 2])
    mean_x = tf.reduce_sum(p * xs, axis=[1, 2])
    dy = ys[None] - mean_y[:, None, None]
    dx = xs[None] - mean_x[:, None, None]
    var_y = tf.reduce_sum(p * dy * dy, axis=[1, 2])
    var_x = tf.reduce_sum(p * dx * dx, axis=[1, 2])
    cov = tf.reduce_sum(p * dx * dy, axis=[1, 2])
    trace = var_x + var_y
    root = tf.sqrt(tf.nn.relu(tf.square(var_x - var_y) / 4.0 + tf.square(cov)))
    major, minor = trace / 2.0 + root, tf.nn.relu(trace / 2.0 - root)

    flat = tf.reshape(p, [-1, height * width])
    top = tf.math.top_k(flat, k=min(16, height * width)).values
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    radius = tf.sqrt(tf.square(ys - cy) + tf.square(xs - cx))
    inner = tf.cast(radius < height / 8.0, tf.float32)
    middle = tf.cast((radius >= height / 8.0) & (radius < height / 4.0), tf.float32)

    brightest = tf.argmax(flat, axis=1)
    top_pixel = tf.gather(
        tf.reshape(z, [-1, height * width, bands]), brightest, axis=1, batch_dims=1
    )
    top_energy = tf.square(top_pixel)
    band_excess = tf.reduce_sum(tf.nn.relu(tf.square(z) - 1.0), axis=[1, 2])  # (B, C)

    columns = [
        tf.math.log1p(total),
        top[:, 0],
        tf.reduce_sum(top[:, :4], axis=1),
        tf.reduce_sum(top, axis=1),
        tf.reduce_max(tf.reduce_sum(p, axis=1), axis=1),
        tf.reduce_max(tf.reduce_sum(p, axis=2), axis=1),
        tf.reduce_sum(p * inner, axis=[1, 2]),
        tf.reduce_sum(p * middle, axis=[1, 2]),
        tf.sqrt(tf.square(mean_y - cy) + tf.square(mean_x - cx)) / height,
        1.0 - tf.sqrt(minor / (major + TINY)),
        tf.sqrt(trace) / height,
        tf.abs(var_x - var_y) / (trace + TINY),
        tf.abs(2.0 * cov) / (trace + TINY),
        tf.reduce_sum(tf.nn.relu(z), axis=[1, 2, 3])
        / (tf.reduce_sum(tf.abs(z), axis=[1, 2, 3]) + TINY),
        tf.reduce_max(top_energy, axis=1) / (tf.reduce_sum(top_energy, axis=1) + TINY),
    ]
    shares = band_excess / (tf.reduce_sum(band_excess, axis=1, keepdims=True) + TINY)
    return tf.concat([tf.stack(columns, axis=1), shares], axis=1)
