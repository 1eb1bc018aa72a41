"""The Lupton et al. (2004) asinh colour stretch in TensorFlow ops, so it can run in tf.data and
inside an exported SavedModel (reference: ``astropy.visualization.make_lupton_rgb``, float output),
the variance it maps a flux variance to, and the ``auto`` stretch fitted to a data set's sky noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRETCH_MODES = ("paper", "auto")
# The sky noise of the band-mean intensity of HSC Wide gri coadds in their flux units (ZP 27), which
# the paper's Q=15, stretch=0.5 was tuned to (sqrt(sum sigma_b^2) / 3 of the simulator's
# sky_sigma: 0.0365, 0.0566, 0.0794). ``auto`` scales the softening so that any data set's
# measured intensity noise maps where this one does.
REFERENCE_INTENSITY_SIGMA = 0.0346958890083848
_MAD_TO_SIGMA = 1.482602218505602


@dataclass(frozen=True)
class LuptonStretch:
    """Lupton asinh stretch of raw flux cutouts to [0, 1] (the paper: Q=15, stretch=0.5, minimum=0).

    Bands are stored blue to red (g, r, i); the stretched channels come out red to blue (i, r, g),
    so that a gri cutout becomes an RGB image with R=i, G=r, B=g as in the paper. Any band count
    works: the intensity is the mean over bands and the band order is reversed in the same way
    (a one-band survey gives a one-channel image, ``asinh`` of the flux).

    Args:
        Q: asinh softening parameter.
        stretch: linear stretch of the flux before the asinh.
        minimum: flux mapped to black (subtracted from every band).

    Example:
        >>> stretched = LuptonStretch()(raw_flux_batch)   # (B, H, W, C) -> (B, H, W, C) in [0, 1]
    """

    Q: float = 15.0
    stretch: float = 0.5
    minimum: float = 0.0

    def __call__(self, images):
        """Stretch a float tensor (..., H, W, C) of raw flux; returns float32 in [0, 1]."""
        import tensorflow as tf

        slope, soften = self._constants()

        x = tf.convert_to_tensor(images, dtype=tf.float32)
        if self.minimum:
            x = x - self.minimum
        x = tf.reverse(x, axis=[-1])
        # y = soften * I, clamped at 0: where I <= 0 the ratio f(I)/I below becomes exactly 0, as in
        # astropy. Written without tf.where (slow with broadcasting on CPU) and NaN-free in both
        # value and gradient; the floor 1e-30 only affects intensities below 1e-31.
        y = tf.maximum(tf.reduce_mean(x, axis=-1, keepdims=True) * soften, 0.0)
        ratio = _asinh(y) * (slope * soften) / tf.maximum(y, 1e-30)
        scaled = tf.maximum(x * ratio, 0.0)
        # Pixels whose brightest channel exceeds 1 are scaled down by it (keeps the colour).
        return scaled / tf.maximum(tf.reduce_max(scaled, axis=-1, keepdims=True), 1.0)

    def _constants(self) -> tuple[float, float]:
        # The constants follow astropy's LuptonAsinhStretch exactly (frac = 0.1 sets the slope).
        q = 0.1 if abs(self.Q) < 2.0**-23 else min(self.Q, 1e10)
        return 0.1 / np.arcsinh(0.1 * q), q / float(self.stretch)

    def variance(self, images, variances):
        """The variance of the stretched image given the per-pixel flux variance (same shape as
        ``images``, raw flux units, bands independent); float32, channels red to blue as the image.

        The delta method: Var(f_c) = sum_b (df_c/dx_b)^2 var_b with the Jacobian of the smooth
        asinh map f_c = x_c slope asinh(soften I) / I (I the band mean), the whole row of it (the
        intensity couples the bands), evaluated at the pixel's flux. Two things are left out: the
        clip at 0 (f is continued as the odd function it is, so sky pixels of negative intensity
        get the slope at 0 instead of a zero variance) and the change of the saturation divisor
        max(1, brightest channel), which is treated as a constant. Covariances between the
        stretched channels are dropped: the result is the diagonal of the output covariance.
        """
        import tensorflow as tf

        slope, soften = self._constants()
        x = tf.reverse(tf.convert_to_tensor(images, tf.float32) - self.minimum, axis=[-1])
        v = tf.reverse(tf.convert_to_tensor(variances, tf.float32), axis=[-1])
        n_bands = tf.cast(tf.shape(x)[-1], tf.float32)
        y = tf.reduce_mean(x, axis=-1, keepdims=True) * soften
        t = tf.abs(y)
        small = t < 0.1
        t_safe = tf.where(small, tf.ones_like(t), t)
        asinh_t = _asinh(t_safe)
        h = tf.where(small, 1.0 - t * t / 6.0 + 3.0 * t**4 / 40.0, asinh_t / t_safe)
        dh_direct = (t_safe / tf.sqrt(1.0 + t_safe * t_safe) - asinh_t) / (t_safe * t_safe)
        dh = tf.where(small, -t / 3.0 + 0.3 * t**3 - 15.0 / 56.0 * t**5, dh_direct)
        dh = tf.sign(y) * dh  # h is even, its derivative odd
        ratio = slope * soften * h  # df_c/dx_c without the intensity's share
        coupling = x * (slope * soften * soften * dh) / n_bands  # df_c/dx_b for every b
        out = (ratio**2 + 2.0 * ratio * coupling) * v + coupling**2 * tf.reduce_sum(
            v, axis=-1, keepdims=True
        )
        divisor = tf.maximum(tf.reduce_max(self._scaled(x, slope, soften), -1, keepdims=True), 1.0)
        return tf.maximum(out, 0.0) / divisor**2

    @staticmethod
    def _scaled(x, slope, soften):
        import tensorflow as tf

        y = tf.maximum(tf.reduce_mean(x, axis=-1, keepdims=True) * soften, 0.0)
        return tf.maximum(x * (_asinh(y) * (slope * soften) / tf.maximum(y, 1e-30)), 0.0)

    def get_config(self) -> dict:
        return {"Q": self.Q, "stretch": self.stretch, "minimum": self.minimum}

    @classmethod
    def from_config(cls, config: dict | None) -> LuptonStretch:
        """The stretch a manifest's ``stretch`` record (or ``get_config``) describes; the paper's
        for None (data sets ingested before the record existed)."""
        config = config or {}
        return cls(**{k: float(config[k]) for k in ("Q", "stretch", "minimum") if k in config})


def sky_sigma(images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Robust per-band sky noise of a sample of cutouts (n, H, W, C): 1.4826 x the median absolute
    deviation of the pixels of the outer frame (an eighth of the side, at least 2 px), where a
    survey cutout is mostly sky, clipped at 3 sigma five times (galaxy wings and neighbours in the
    frame); non-finite and masked pixels (``masks``: bool, True = left out) are left out. Scales
    with the flux unit, exactly up to rounding."""
    images = np.asarray(images, dtype=np.float64)
    n, height, width, bands = images.shape
    edge = max(2, min(height, width) // 8)
    frame = np.zeros((height, width), bool)
    frame[:edge], frame[-edge:], frame[:, :edge], frame[:, -edge:] = True, True, True, True
    usable = np.isfinite(images) & frame[None, :, :, None]
    if masks is not None:
        usable &= ~np.asarray(masks, bool)
    sigma = np.full(bands, np.nan)
    for b in range(bands):
        values = kept = images[..., b][usable[..., b]]
        for _ in range(5):
            if kept.size == 0:
                break
            centre = np.median(kept)
            sigma[b] = _MAD_TO_SIGMA * np.median(np.abs(kept - centre))
            kept = values[np.abs(values - centre) < 3.0 * sigma[b]]
    return sigma


def auto_stretch(band_sigma) -> LuptonStretch:
    """The paper's stretch with its softening scaled to the data: stretch = 0.5 x sigma_I /
    ``REFERENCE_INTENSITY_SIGMA``, sigma_I = sqrt(sum sigma_b^2) / bands the noise of the band-mean
    intensity (Q stays 15). Flux units scaled by k give the same stretched images."""
    band_sigma = np.asarray(band_sigma, dtype=np.float64)
    intensity = float(np.sqrt(np.sum(band_sigma**2)) / len(band_sigma))
    paper = LuptonStretch()
    return LuptonStretch(Q=paper.Q, stretch=paper.stretch * intensity / REFERENCE_INTENSITY_SIGMA)


def _asinh(y):
    """asinh for y >= 0 from log1p and sqrt: accurate to float32 precision and ~2x faster than
    tf.asinh on CPU. Clamped at 1e15 (asinh = 35.2) where y*y would overflow."""
    import tensorflow as tf

    y = tf.minimum(y, 1e15)
    return tf.math.log1p(y + y * y / (1.0 + tf.sqrt(1.0 + y * y)))


def lupton_stretch(images, Q: float = 15.0, stretch: float = 0.5, minimum: float = 0.0):
    """Functional form of :class:`LuptonStretch`."""
    return LuptonStretch(Q=Q, stretch=stretch, minimum=minimum)(images)
