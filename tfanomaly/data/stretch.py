"""The Lupton et al. (2004) asinh colour stretch in TensorFlow ops, so it can run in tf.data and
inside an exported SavedModel (reference: ``astropy.visualization.make_lupton_rgb``, float output),
the variance it maps a flux variance to, and the ``auto`` stretch fitted to a data set's sky noise.
"""

from __future__ import annotations

import warnings
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
        >>> raw_flux = np.array([[[[0.0, 0.1, 10.0]]]], np.float32)  # (B, H, W, C)
        >>> stretched = LuptonStretch()(raw_flux)  # the same shape, float32 in [0, 1]
        >>> bool(stretched.numpy().min() >= 0.0 and stretched.numpy().max() <= 1.0)
        True
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
    """Robust per-band sky noise of a sample of cutouts (n, H, W, C), from the differences of
    neighbouring pixels (across and down) in the fainter half of each cutout: the pairs whose mean
    is at most that cutout's median in the band. A difference removes the sky level and the smooth
    light of a galaxy; the fainter half keeps away from the galaxy's own photon noise. So a cutout
    that a galaxy fills still reads its faint-light noise (an outer frame would read the galaxy's
    structure there: 20x the noise on tiles of a large galaxy).

    sigma = 1.4826 x MAD / sqrt(2) of the pooled differences; where the MAD is 0 (integer counts
    with a noise of about one step), the 3-sigma clipped standard deviation / sqrt(2) instead, and
    where the fainter half's differences are all 0 (a low integer sky, whose faint pairs are the
    pairs of zeros), the differences of all pairs.
    Non-finite and masked pixels (``masks``: bool, True = left out) are left out; NaN for a band
    with no usable pair. Scales with the flux unit, exactly up to rounding."""
    images = np.asarray(images, dtype=np.float64)
    n, bands = images.shape[0], images.shape[-1]
    usable = np.isfinite(images)
    if masks is not None:
        usable &= ~np.asarray(masks, bool)
    sigma = np.full(bands, np.nan)
    for b in range(bands):
        image, ok = images[..., b], usable[..., b]
        level = np.where(ok, image, np.nan).reshape(n, -1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a cutout with no usable pixel
            threshold = np.nanmedian(level, axis=1).reshape(n, 1, 1)
        faint, every = [], []
        for axis in (1, 2):  # down and across
            head = (slice(None),) * axis + (slice(1, None),)
            tail = (slice(None),) * axis + (slice(None, -1),)
            pair = ok[head] & ok[tail]
            difference = image[head] - image[tail]
            faint.append(difference[pair & (0.5 * (image[head] + image[tail]) <= threshold)])
            every.append(difference[pair])
        for differences in (faint, every):
            d = np.concatenate(differences)
            sigma[b] = _spread(d) / np.sqrt(2.0) if d.size else np.nan
            if sigma[b] > 0:
                break
    return sigma


def _spread(values: np.ndarray) -> float:
    """1.4826 x MAD, or where that is 0 (values on a few quantised steps), the standard deviation
    clipped at 3 sigma five times."""
    centre = np.median(values)
    mad = _MAD_TO_SIGMA * np.median(np.abs(values - centre))
    if mad > 0:
        return float(mad)
    kept, spread = values, float(np.std(values))
    for _ in range(5):
        if spread == 0:
            break
        kept = values[np.abs(values - np.mean(kept)) < 3.0 * spread]
        spread = float(np.std(kept))
    return spread


def auto_stretch(band_sigma, floor: float = 0.0) -> LuptonStretch:
    """The paper's stretch with its softening scaled to the data: stretch = 0.5 x sigma_I /
    ``REFERENCE_INTENSITY_SIGMA``, sigma_I = sqrt(sum sigma_b^2) / bands the noise of the band-mean
    intensity (Q stays 15), taken no lower than ``floor`` (a quantisation step). Flux units scaled
    by k give the same stretched images."""
    band_sigma = np.asarray(band_sigma, dtype=np.float64)
    intensity = max(float(np.sqrt(np.sum(band_sigma**2)) / len(band_sigma)), float(floor))
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
