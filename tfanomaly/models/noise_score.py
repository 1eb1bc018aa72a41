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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.config import ScoreSettings
from tfanomaly.models.filters import gaussian_kernel, smooth  # noqa: F401 (re-exported)
from tfanomaly.models.morphology import morphology

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
    linear_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    linear_components: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    linear_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    linear_variances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    morphology_centre: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    morphology_scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    morphology_reference: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    ARRAYS = ("edges", "variances", "feature_mean", "components", "eigenvalues",
              "log_centres", "log_scales")  # fmt: skip
    # Calibrations written before the linear and morphology terms have none of these.
    OPTIONAL = ("linear_mean", "linear_components", "linear_edges", "linear_variances",
                "morphology_centre", "morphology_scale", "morphology_reference")  # fmt: skip

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms the default score combines, in the order of log_centres/log_scales."""
        return self.settings.terms

    def check(self, path) -> None:
        """Every combined term has its numbers (a file edited or cut short does not)."""
        parts = {"linear": self.linear_components, "morphology": self.morphology_reference}
        missing = [t for t, values in parts.items() if t in self.terms and not values.size]
        if missing or len(self.log_scales) != len(self.terms):
            raise InputError(f"{path}: calibration inconsistent with its terms "
                             f"{', '.join(self.terms)}; run `tfanomaly calibrate` again")  # fmt: skip

    @property
    def weights(self) -> np.ndarray:
        """Weight of each term's z in the default score (see ScoreSettings.combine)."""
        if self.terms == ("residual", "feature"):
            w = self.settings.feature_weight
            return np.array([1.0 - w, w], np.float32)
        return np.full(len(self.terms), 1.0 / len(self.terms), np.float32)

    def score_drift(self, rtol: float) -> float:
        """How far the default score can move when every term drifts by ``rtol`` (relative):
        z = (log - centre) / scale moves by rtol / scale, combined with the weights."""
        per_term = rtol / np.asarray(self.log_scales, np.float64)
        if self.settings.combine == "max" and len(self.terms) > 2:
            return float(per_term.max())
        return float(np.sum(self.weights * per_term))

    def save(self, path) -> None:
        """Write an .npz atomically (numbers as arrays, settings and info as JSON)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                **{name: getattr(self, name) for name in self.ARRAYS + self.OPTIONAL},
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
                values.update({name: data[name] for name in cls.OPTIONAL if name in data})
                settings = json.loads(str(data["settings"]))
                # Before the linear and morphology terms, a calibration had the two GAN terms.
                settings.setdefault("terms", ["residual", "feature"])
                calibration = cls(
                    settings=ScoreSettings(**settings),
                    residual_variance=float(data["residual_variance"]),
                    info=json.loads(str(data["info"])),
                    **values,
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: not a readable tfanomaly calibration: {exc}") from exc
        calibration.check(path)
        return calibration


def residual_maps(images, reconstructions, sigma: float):
    """The smoothed residual and the smoothed reconstruction, the two maps the score reads."""
    return smooth(images - reconstructions, sigma), smooth(reconstructions, sigma)


class NoiseAwareScore(tf.Module):
    """The default score in TF ops, from a :class:`Calibration` (constants in the graph).

    Example:
        >>> scorer = NoiseAwareScore(Calibration.load("run/calibration.npz"))
        >>> out = scorer(stretched, reconstructions, critic(stretched)[1], raw_flux)
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
        self.terms = c.terms
        self.weights = tf.constant(c.weights, tf.float32)
        if "linear" in self.terms:
            self.linear_mean = tf.constant(c.linear_mean, tf.float32)
            self.linear_components = tf.constant(c.linear_components, tf.float32)
            self.linear_edges = tf.constant(c.linear_edges, tf.float32)
            self.linear_variances = tf.constant(c.linear_variances, tf.float32)
        if "morphology" in self.terms:
            self.morphology_centre = tf.constant(c.morphology_centre, tf.float32)
            self.morphology_scale = tf.constant(c.morphology_scale, tf.float32)
            self.morphology_reference = tf.constant(c.morphology_reference, tf.float32)

    def chi2_map(self, images, reconstructions, edges=None, variances=None):
        """(B, H, W, C) squared smoothed residual over its scatter at that brightness (the
        scatter of the GAN's reconstructions unless ``edges``/``variances`` say otherwise)."""
        edges = self.edges if edges is None else edges
        variances = self.variances if variances is None else variances
        residual, level = residual_maps(images, reconstructions, self.settings.smooth_sigma)
        # Bands first, pixels flattened: searchsorted runs per band over its own edges.
        shape = tf.shape(level)
        bands = tf.reshape(tf.transpose(level, [3, 0, 1, 2]), [shape[3], -1])
        bins = tf.searchsorted(edges, bands, side="right")
        variance = tf.gather(variances, bins, batch_dims=1)
        variance = tf.transpose(tf.reshape(variance, tf.gather(shape, [3, 0, 1, 2])), [1, 2, 3, 0])
        # The reshape from tf.shape loses the static shape where the batch size is unknown (an
        # exported signature); the top-k summary needs it back.
        return tf.ensure_shape(tf.square(residual) / variance, residual.shape)

    def residual_score(self, images, reconstructions, edges=None, variances=None):
        """Mean of the highest ``top_fraction`` of each image's chi^2 map."""
        chi2 = self.chi2_map(images, reconstructions, edges, variances)
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

    def linear_reconstruction(self, images):
        """The images projected on the data set's principal components (a linear model)."""
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        coefficients = tf.matmul(flat - self.linear_mean, self.linear_components, transpose_b=True)
        model = tf.matmul(coefficients, self.linear_components) + self.linear_mean
        return tf.reshape(model, tf.shape(images))

    def linear_score(self, images):
        """The noise-aware residual (smoothed, over its scatter at each brightness, top
        fraction) against the linear model instead of the GAN: what a PCA model of the survey
        cannot reproduce, measured as the default score measures the GAN's misfit."""
        return self.residual_score(images, self.linear_reconstruction(images),
                                   self.linear_edges, self.linear_variances)  # fmt: skip

    def morphology_features(self, flux):
        """Standardised morphology parameters (B, F) of the raw flux cutouts (on the stretched
        images they lost 0.03-0.17 AUROC: the asinh flattens the profiles)."""
        standard = (morphology(flux) - self.morphology_centre) / self.morphology_scale
        return tf.clip_by_value(standard, -50.0, 50.0)

    def morphology_score(self, flux):
        """Mean distance to the k nearest calibration cutouts in standardised morphology
        parameters; a reference that coincides with the image (itself) is left out."""
        k = self.settings.morphology_neighbours
        points = self.morphology_features(flux)
        reference = self.morphology_reference
        # Differences, not |p|^2 - 2 p.r + |r|^2: that loses the small distances to rounding, and
        # the distance to itself must come out as 0 to be recognised.
        squared = tf.reduce_sum(tf.square(points[:, None, :] - reference[None, :, :]), axis=2)
        nearest = tf.sqrt(-tf.math.top_k(-squared, k=k + 1).values)
        itself = nearest[:, 0] < 1e-3
        return tf.where(itself, tf.reduce_mean(nearest[:, 1:], axis=1),
                        tf.reduce_mean(nearest[:, :k], axis=1))  # fmt: skip

    def combine(self, terms):
        """The mean (or max) of the terms' robust z of log against the calibration set (the two
        GAN terms of older calibrations: (1 - w) residual + w feature)."""
        logs = tf.math.log(tf.maximum(tf.stack(terms, axis=1), 1e-30))
        z = (logs - self.log_centres) / self.log_scales
        if self.settings.combine == "max" and len(terms) > 2:
            return tf.reduce_max(z, axis=1)
        return tf.reduce_sum(z * self.weights, axis=1)

    def __call__(self, images, reconstructions, image_features, flux=None):
        """The terms and the default score of stretched ``images``, their reconstructions and
        critic features; ``flux``: the raw cutouts, which the morphology term needs."""
        if "morphology" in self.terms and flux is None:
            raise ValueError("the morphology term needs the raw flux cutouts (flux=...)")
        out = {
            "residual_score": self.residual_score(images, reconstructions),
            "feature_score": self.feature_score(image_features),
        }
        # A term the calibration has not got (made before it, or left out) comes out as zeros, so
        # that every run writes the same columns.
        zeros = tf.zeros_like(out["residual_score"])
        out["linear_score"] = self.linear_score(images) if "linear" in self.terms else zeros
        out["morphology_score"] = (
            self.morphology_score(flux) if "morphology" in self.terms else zeros
        )
        out["score"] = self.combine([out[f"{term}_score"] for term in self.terms])
        out["feature_axes"] = self.feature_axes(image_features)
        return out


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


def fit_linear(settings: ScoreSettings, images: np.ndarray, pixels_per_image: int,
               rng: np.random.Generator):  # fmt: skip
    """The linear model of (N, H, W, C) stretched cutouts: their mean and principal axes, and
    the brightness-binned scatter of its smoothed residual (as ``fit_levels`` for the GAN)."""
    from sklearn.decomposition import PCA

    n = len(images)
    flat = images.reshape(n, -1)
    k = min(settings.linear_components, n - 1, flat.shape[1])
    pca = PCA(n_components=k, svd_solver="randomized", random_state=0).fit(flat)
    mean, components = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
    residual_samples, level_samples = [], []
    bands = images.shape[-1]
    for start in range(0, n, 512):
        chunk = images[start : start + 512]
        model = ((chunk.reshape(len(chunk), -1) - mean) @ components.T) @ components + mean
        residual, level = (t.numpy().reshape(len(chunk), -1, bands) for t in residual_maps(
            chunk, model.reshape(chunk.shape).astype(np.float32), settings.smooth_sigma))  # fmt: skip
        picks = rng.integers(0, residual.shape[1], (len(chunk), pixels_per_image))
        rows = np.arange(len(chunk))[:, None]
        residual_samples.append(residual[rows, picks])
        level_samples.append(level[rows, picks])
    edges, variances = fit_levels(
        settings,
        np.concatenate(residual_samples).reshape(-1, bands).T,
        np.concatenate(level_samples).reshape(-1, bands).T,
    )
    return mean, components, edges, variances


def fit_morphology(settings: ScoreSettings, features: np.ndarray, rng: np.random.Generator):
    """Median and MAD-sigma of each morphology parameter, and the standardised reference set
    (``reference_size`` cutouts drawn at random) of the k-NN term."""
    features = np.asarray(features, np.float64)
    centre = np.median(features, axis=0)
    scale = 1.4826 * np.median(np.abs(features - centre), axis=0)
    scale = np.where(scale > 0, scale, 1.0) + 1e-6
    keep = rng.permutation(len(features))[: settings.reference_size]
    reference = np.clip((features[keep] - centre) / scale, -50.0, 50.0)
    return centre.astype(np.float32), scale.astype(np.float32), reference.astype(np.float32)
