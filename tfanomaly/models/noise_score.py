"""The default anomaly score: PSF-scale residuals weighted by the noise measured at each brightness,
and the density of the critic's features; both calibrated on a data set, computed in the graph.

Why not the paper's L1 sums: on Lupton-stretched pixels the asinh lifts faint sky noise to a fifth
of the display range, so sum|x - G(z)| mostly counts noise and the reconstruction's misfit of bright
cores. Here the residual is smoothed with a Gaussian of about the PSF's width (a matched filter for
unresolved and PSF-scale features, which averages the sky noise down), divided by its own scatter
at that brightness of the reconstruction (measured per band over the calibration set: sky noise
where the stamp is dark, model misfit where it is bright), and summarised by the mean of the
highest ``top_fraction`` of the chi^2 map (robust to the bulk, sensitive to local features). The
feature score is the Mahalanobis distance of f(x) (the critic's last feature map) under a
probabilistic-PCA Gaussian fitted to the calibration set. The default score adds the two after a
robust standardisation of their logarithms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.config import ScoreSettings

# Median of chi^2 with one degree of freedom: a robust variance is median(r^2) / this.
_CHI2_MEDIAN = 0.4549364231195724


@dataclass
class Calibration:
    """The numbers the default score needs, fitted on a data set by ``fit_calibration``.

    Args:
        settings: how the score is computed.
        edges: (bands, n_bins - 1) smoothed reconstruction levels between the brightness bins.
        variances: (bands, n_bins) variance of the smoothed residual in each bin.
        feature_mean: (D,) mean critic feature vector.
        components: (K, D) principal axes of the features.
        eigenvalues: (K,) variance along each axis.
        residual_variance: variance per dimension outside the K axes.
        log_centres, log_scales: median and MAD-sigma of log(residual score), log(feature score).
        info: provenance (data set, inversion settings, counts), stored with the numbers.
    """

    settings: ScoreSettings
    edges: np.ndarray
    variances: np.ndarray
    feature_mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    residual_variance: float
    log_centres: np.ndarray
    log_scales: np.ndarray
    info: dict

    ARRAYS = ("edges", "variances", "feature_mean", "components", "eigenvalues",
              "log_centres", "log_scales")  # fmt: skip

    def save(self, path) -> None:
        """Write an .npz atomically (numbers as arrays, settings and info as JSON)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                **{name: getattr(self, name) for name in self.ARRAYS},
                residual_variance=np.float64(self.residual_variance),
                settings=json.dumps(self.settings.to_dict()),
                info=json.dumps(self.info),
            )

    @classmethod
    def load(cls, path) -> Calibration:
        path = Path(path)
        try:
            with np.load(path) as data:
                values = {name: data[name] for name in cls.ARRAYS}
                return cls(
                    settings=ScoreSettings(**json.loads(str(data["settings"]))),
                    residual_variance=float(data["residual_variance"]),
                    info=json.loads(str(data["info"])),
                    **values,
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: not a readable tfanomaly calibration: {exc}") from exc


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps out to 3 sigma."""
    half = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def smooth(images, sigma: float):
    """Separable Gaussian smoothing of (B, H, W, C) per channel, edges mirrored (stock TF ops)."""
    taps = gaussian_kernel(sigma)
    half = len(taps) // 2
    images = tf.convert_to_tensor(images, tf.float32)
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("smooth needs a static channel count")
    images = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    row = tf.constant(np.tile(taps[None, :, None, None], (1, 1, channels, 1)))
    column = tf.constant(np.tile(taps[:, None, None, None], (1, 1, channels, 1)))
    out = tf.nn.depthwise_conv2d(images, row, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, column, [1, 1, 1, 1], "VALID")


def residual_maps(images, reconstructions, sigma: float):
    """The smoothed residual and the smoothed reconstruction, the two maps the score reads."""
    return smooth(images - reconstructions, sigma), smooth(reconstructions, sigma)


class NoiseAwareScore(tf.Module):
    """The default score in TF ops, from a :class:`Calibration` (constants in the graph).

    Example:
        >>> scorer = NoiseAwareScore(Calibration.load("run/calibration.npz"))
        >>> out = scorer(stretched, reconstructions, critic(stretched)[1])
        >>> out["score"], out["residual_score"], out["feature_score"]
    """

    def __init__(self, calibration: Calibration):
        super().__init__(name="noise_aware_score")
        c = calibration
        self.settings = c.settings
        self.edges = tf.constant(c.edges, tf.float32)
        self.variances = tf.constant(c.variances, tf.float32)
        self.feature_mean = tf.constant(c.feature_mean, tf.float32)
        self.components = tf.constant(c.components, tf.float32)
        self.eigenvalues = tf.constant(c.eigenvalues, tf.float32)
        self.residual_variance = tf.constant(c.residual_variance, tf.float32)
        self.log_centres = tf.constant(c.log_centres, tf.float32)
        self.log_scales = tf.constant(c.log_scales, tf.float32)

    def chi2_map(self, images, reconstructions):
        """(B, H, W, C) squared smoothed residual over its scatter at that brightness."""
        residual, level = residual_maps(images, reconstructions, self.settings.smooth_sigma)
        # Bands first, pixels flattened: searchsorted runs per band over its own edges.
        shape = tf.shape(level)
        bands = tf.reshape(tf.transpose(level, [3, 0, 1, 2]), [shape[3], -1])
        bins = tf.searchsorted(self.edges, bands, side="right")
        variance = tf.gather(self.variances, bins, batch_dims=1)
        variance = tf.transpose(tf.reshape(variance, tf.gather(shape, [3, 0, 1, 2])), [1, 2, 3, 0])
        return tf.square(residual) / variance

    def residual_score(self, images, reconstructions):
        """Mean of the highest ``top_fraction`` of each image's chi^2 map."""
        chi2 = self.chi2_map(images, reconstructions)
        flat = tf.reshape(chi2, [tf.shape(chi2)[0], -1])
        size = int(np.prod(chi2.shape[1:])) if chi2.shape[1:].is_fully_defined() else None
        if size is None:
            raise ValueError("residual_score needs static image shapes")
        k = max(1, round(self.settings.top_fraction * size))
        return tf.reduce_mean(tf.math.top_k(flat, k=k, sorted=False).values, axis=1)

    def feature_score(self, features):
        """Mahalanobis distance^2 per feature dimension under the probabilistic-PCA Gaussian."""
        centred = tf.cast(features, tf.float32) - self.feature_mean
        projected = tf.matmul(centred, self.components, transpose_b=True)
        inside = tf.reduce_sum(tf.square(projected) / self.eigenvalues, axis=1)
        outside = tf.reduce_sum(tf.square(centred), axis=1) - tf.reduce_sum(
            tf.square(projected), axis=1
        )
        dims = tf.cast(tf.shape(centred)[1], tf.float32)
        return (inside + tf.maximum(outside, 0.0) / self.residual_variance) / dims

    def feature_axes(self, features):
        """The critic features on the calibration's principal axes, whitened (B, components):
        a compact feature space where every direction counts by its spread (similarity search,
        learning from labels)."""
        centred = tf.cast(features, tf.float32) - self.feature_mean
        return tf.matmul(centred, self.components, transpose_b=True) / tf.sqrt(self.eigenvalues)

    def combine(self, residual_score, feature_score):
        """(1 - w) z(log residual) + w z(log feature), robust z against the calibration set."""
        logs = tf.math.log(tf.maximum(tf.stack([residual_score, feature_score], axis=1), 1e-30))
        z = (logs - self.log_centres) / self.log_scales
        w = self.settings.feature_weight
        return (1.0 - w) * z[:, 0] + w * z[:, 1]

    def __call__(self, images, reconstructions, image_features):
        residual = self.residual_score(images, reconstructions)
        feature = self.feature_score(image_features)
        return {
            "score": self.combine(residual, feature),
            "residual_score": residual,
            "feature_score": feature,
            "feature_axes": self.feature_axes(image_features),
        }


def fit_levels(settings: ScoreSettings, residuals: np.ndarray, levels: np.ndarray):
    """Brightness bin edges and the residual variance in each bin, per band, from (bands, M)
    samples of the smoothed residual and the smoothed reconstruction. The variance is a median
    (so the few anomalies in the set do not inflate it), floored for empty bins."""
    n_bands = residuals.shape[0]
    quantiles = np.linspace(0.0, 1.0, settings.n_bins + 1)[1:-1]
    edges = np.stack([np.quantile(levels[b], quantiles) for b in range(n_bands)])
    variances = np.empty((n_bands, settings.n_bins))
    for b in range(n_bands):
        bins = np.searchsorted(edges[b], levels[b], side="right")
        overall = np.median(residuals[b] ** 2) / _CHI2_MEDIAN
        for i in range(settings.n_bins):
            values = residuals[b][bins == i]
            variances[b, i] = np.median(values**2) / _CHI2_MEDIAN if len(values) else overall
        variances[b] = np.maximum(variances[b], max(overall, 1e-12) * 1e-3)
    return edges.astype(np.float32), variances.astype(np.float32)


def fit_features(settings: ScoreSettings, features: np.ndarray):
    """Mean, K principal axes, their variances and the variance left per other dimension."""
    from sklearn.decomposition import PCA

    features = np.asarray(features, np.float64)
    n, dims = features.shape
    k = min(settings.n_components, dims - 1, n - 1)
    if k < 1:
        raise ConfigError(f"calibration needs at least 2 images and 2 features, got {n}x{dims}")
    pca = PCA(n_components=k, svd_solver="randomized" if dims > 512 else "full", random_state=0)
    pca.fit(features)
    total = features.var(axis=0, ddof=1).sum()
    rest = max(total - pca.explained_variance_.sum(), 0.0) / max(dims - k, 1)
    eigenvalues = np.maximum(pca.explained_variance_, 1e-12)
    return (pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
            eigenvalues.astype(np.float32), float(max(rest, 1e-12)))  # fmt: skip


def robust_log_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-sigma of log(values)."""
    logs = np.log(np.maximum(np.asarray(values, np.float64), 1e-30))
    centre = float(np.median(logs))
    scale = float(1.4826 * np.median(np.abs(logs - centre)))
    return centre, scale if scale > 0 else 1.0
