"""The default anomaly score: PSF-scale residuals weighted by the noise measured at each brightness,
and the density of the critic's features; both calibrated on a data set, computed in the graph.

Why not the paper's L1 sums: on Lupton-stretched pixels the asinh lifts faint sky noise to a fifth
of the display range, so sum|x - G(z)| mostly counts noise and the reconstruction's misfit of bright
cores. Here the residual is smoothed with a Gaussian of about the PSF's width (a matched filter for
unresolved and PSF-scale features, which averages the sky noise down), divided by its own scatter
at that brightness of the reconstruction (measured per band over the calibration set in
brightness bins, interpolated between them: sky noise where the stamp is dark, model misfit where
it is bright), and summarised by the mean of the
highest ``top_fraction`` of the chi^2 map (robust to the bulk, sensitive to local features). The
feature score is the Mahalanobis distance of f(x) (the critic's last feature map) under a
probabilistic-PCA Gaussian fitted to the calibration set. The default score adds the two after a
robust standardisation of their logarithms.

Where the data set carries variance and mask planes (and the calibration was made with them), the
residual terms are a true chi^2 instead: the residual smoothed with the kernel renormalised to the
unmasked pixels, over the pixel variance propagated through that smoothing plus the model's own
misfit at that brightness (calibrated as the scatter left beyond the pixel noise); masked pixels
count nothing. Without the planes the calibrated scatter of before is used (the fallback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.filters import band_mad_sigma, gaussian_kernel, smooth  # noqa: F401 (re-exported)
from tfanomaly.models.morphology import morphology
from tfanomaly.models.pixel_noise import smoothed_chi2
from tfanomaly.models.score_config import ScoreSettings

# Median of chi^2 with one degree of freedom: a robust variance is median(r^2) / this.
_CHI2_MEDIAN = 0.4549364231195724
# The robust linear projection's Cauchy scale, in MAD-sigmas of a band's residual (3-6 measured).
ROBUST_SCALE = 4.0


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
        info: provenance (data set, inversion settings, counts), stored with the numbers;
            ``info["planes"]``: the data planes (``variance``, ``mask``) the plane numbers below
            were fitted with (none: the calibration has only the calibrated-scatter path).
        plane_variances, linear_plane_variances: (bands, n_bins) the variance of the smoothed
            residual in each brightness bin beyond the propagated pixel variance (the model's
            misfit; with a mask plane only: the whole scatter of the masked smoothing), for the
            GAN and the linear model, on the same ``edges``/``linear_edges``.
        plane_log_centres, plane_log_scales: the terms' log centres and scales on that path.
        extended_edges, extended_variances, extended_plane_variances: the same brightness bins
            and variances for the linear model's residual through the extended term's wider
            filter (``settings.extended_sigma``).
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
    plane_variances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    linear_plane_variances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    plane_log_centres: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    plane_log_scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    extended_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    extended_variances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    extended_plane_variances: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 0), np.float32)
    )

    ARRAYS = ("edges", "variances", "feature_mean", "components", "eigenvalues",
              "log_centres", "log_scales")  # fmt: skip
    # Calibrations written before the linear, extended and morphology terms (or the planes) have
    # none of these.
    OPTIONAL = ("linear_mean", "linear_components", "linear_edges", "linear_variances",
                "morphology_centre", "morphology_scale", "morphology_reference",
                "plane_variances", "linear_plane_variances", "plane_log_centres",
                "plane_log_scales", "extended_edges", "extended_variances",
                "extended_plane_variances")  # fmt: skip

    @property
    def planes(self) -> tuple[str, ...]:
        """The data planes the calibration's plane path uses (empty: it has none)."""
        return tuple(self.info.get("planes") or ())

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms the default score combines, in the order of log_centres/log_scales."""
        return self.settings.terms

    def check(self, path) -> None:
        """Every combined term has its numbers (a file edited or cut short does not)."""
        parts = {"linear": [self.linear_components],
                 "extended": [self.linear_components, self.extended_variances],
                 "morphology": [self.morphology_reference]}  # fmt: skip
        missing = [t for t, values in parts.items()
                   if t in self.terms and not all(v.size for v in values)]  # fmt: skip
        plane_parts = {"linear": self.linear_plane_variances,
                       "extended": self.extended_plane_variances}  # fmt: skip
        if self.planes and (not self.plane_variances.size or any(
                t in self.terms and not v.size for t, v in plane_parts.items())):  # fmt: skip
            missing.append("planes")
        if self.planes and len(self.plane_log_scales) != len(self.terms):
            missing.append("planes")
        if missing or len(self.log_scales) != len(self.terms):
            raise InputError(f"{path}: calibration inconsistent with its terms "
                             f"{', '.join(self.terms)}; run `tfanomaly calibrate` again")  # fmt: skip

    @property
    def weights(self) -> np.ndarray:
        """Weight of each term's z in the default score (ScoreSettings.term_weights, normalised;
        see ScoreSettings.combine)."""
        if self.terms == ("residual", "feature"):
            w = self.settings.feature_weight
            return np.array([1.0 - w, w], np.float32)
        weights = np.array([self.settings.weight_of(term) for term in self.terms], np.float64)
        return (weights / weights.sum()).astype(np.float32)

    def score_drift(self, rtol: float) -> float:
        """How far the default score can move when every term drifts by ``rtol`` (relative):
        z = (log - centre) / scale moves by rtol / scale, combined with the weights."""
        # The narrower of the two paths' scales (the plane path's, if any) moves it the most.
        per_term = rtol / np.asarray(self.log_scales, np.float64)
        if self.planes:
            per_term = np.maximum(per_term, rtol / np.asarray(self.plane_log_scales, np.float64))
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
                # Before the robust projection, the linear model was least squares.
                settings.setdefault("robust_iterations", 0)
                # Before the term weights, the terms' z had equal weights.
                settings.setdefault("term_weights", [])
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


class ResidualTable(NamedTuple):
    """What one residual term's chi^2 map reads: the brightness knots (:func:`level_knots`), the
    calibrated variances at them, the plane path's (empty without planes), the filter width and
    the top fraction of the summary."""

    knots: tf.Tensor
    variances: tf.Tensor
    plane_variances: tf.Tensor
    sigma: float
    top_fraction: float


_NONE = np.zeros((0, 0), np.float32)  # a table's plane variances where there is no plane path


def level_knots(edges: np.ndarray) -> tf.Tensor:
    """(bands, n_bins) brightness knots of the variance lookup, from the (bands, n_bins - 1) bin
    edges: the outer edges and the middle of each inner bin, so that bin i's variance holds at
    its knot and varies linearly between neighbouring knots."""
    edges = np.asarray(edges, np.float32)
    if edges.shape[1] == 0:  # one bin: one variance everywhere
        return tf.zeros((edges.shape[0], 1), tf.float32)
    middles = (edges[:, 1:] + edges[:, :-1]) / 2
    return tf.constant(np.concatenate([edges[:, :1], middles, edges[:, -1:]], axis=1))


def interpolate_levels(knots, values, levels):
    """(bands, M) values at ``levels`` (bands, M), interpolated linearly in each band between its
    ``knots`` (bands, K, sorted) and held at the end values beyond them (``np.interp`` per band).

    Continuous in the level, unlike a lookup of the bin a level falls in: the float32 rounding of
    a reconstruction (which differs between CPUs and between eager and graph execution) cannot
    move a pixel across a bin edge and its variance by a whole step.
    """
    n = tf.shape(knots)[1]
    above = tf.searchsorted(knots, levels, side="right")  # in [0, K]
    low = tf.clip_by_value(above - 1, 0, n - 1)
    high = tf.clip_by_value(above, 0, n - 1)
    x0, x1 = tf.gather(knots, low, batch_dims=1), tf.gather(knots, high, batch_dims=1)
    v0, v1 = tf.gather(values, low, batch_dims=1), tf.gather(values, high, batch_dims=1)
    t = tf.clip_by_value(tf.math.divide_no_nan(levels - x0, x1 - x0), 0.0, 1.0)
    return v0 + t * (v1 - v0)


def level_variances(knots, variances, levels):
    """(B, H, W, C) calibrated variance at each pixel's brightness ``levels`` (B, H, W, C): per
    band, :func:`interpolate_levels` over that band's ``knots`` (:func:`level_knots`) and
    ``variances``."""
    shape = tf.shape(levels)
    # Bands first, pixels flattened: the lookup runs per band over its own knots.
    bands = tf.reshape(tf.transpose(levels, [3, 0, 1, 2]), [shape[3], -1])
    model = interpolate_levels(knots, variances, bands)
    return tf.transpose(tf.reshape(model, tf.gather(shape, [3, 0, 1, 2])), [1, 2, 3, 0])


def residual_maps(images, reconstructions, sigma: float):
    """The smoothed residual and the smoothed reconstruction, the two maps the score reads."""
    return smooth(images - reconstructions, sigma), smooth(reconstructions, sigma)


def plane_maps(images, reconstructions, sigma: float, variance=None, mask=None):
    """The maps the residual terms read: (smoothed residual, smoothed reconstruction, propagated
    pixel variance of the smoothed residual, kept). Without planes: :func:`residual_maps` (edges
    mirrored), no pixel variance (0) and every pixel kept (1). With ``variance`` and/or ``mask``
    (stretched units, True = left out): ``pixel_noise.smoothed_chi2``'s residual smoothed with the
    kernel renormalised to the kept pixels and its propagated variance (0 without ``variance``),
    and kept 0 at masked pixels."""
    residual, level = residual_maps(images, reconstructions, sigma)
    if variance is None and mask is None:
        return residual, level, tf.zeros_like(residual), tf.ones_like(residual)
    residuals = tf.convert_to_tensor(images, tf.float32) - reconstructions
    if variance is None:
        variance = tf.zeros_like(residuals)
    out = smoothed_chi2(residuals, variance, mask, sigma)
    kept = tf.ones_like(residuals) if mask is None else 1.0 - tf.cast(mask, tf.float32)
    return out["smoothed"], level, out["smoothed_variance"], kept


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
        self.variances = tf.constant(c.variances, tf.float32)
        self.feature_mean = tf.constant(c.feature_mean, tf.float32)
        self.components = tf.constant(c.components, tf.float32)
        self.eigenvalues = tf.constant(c.eigenvalues, tf.float32)
        self.residual_variance = tf.constant(c.residual_variance, tf.float32)
        self.log_centres = tf.constant(c.log_centres, tf.float32)
        self.log_scales = tf.constant(c.log_scales, tf.float32)
        self.terms = c.terms
        self.weights = tf.constant(c.weights, tf.float32)
        self.planes = c.planes
        if self.planes:
            self.plane_variances = tf.constant(c.plane_variances, tf.float32)
            self.plane_log_centres = tf.constant(c.plane_log_centres, tf.float32)
            self.plane_log_scales = tf.constant(c.plane_log_scales, tf.float32)
        # The numbers chi2_map reads for each residual term (the GAN's is always there).
        self.residual_tables = {
            "residual": ResidualTable(level_knots(c.edges), self.variances,
                                      self.plane_variances if self.planes else _NONE,
                                      c.settings.smooth_sigma, c.settings.top_fraction),
        }  # fmt: skip
        if "linear" in self.terms or "extended" in self.terms:
            self.linear_mean = tf.constant(c.linear_mean, tf.float32)
            self.linear_components = tf.constant(c.linear_components, tf.float32)
        for term, sigma, top in (
            ("linear", c.settings.smooth_sigma, c.settings.top_fraction),
            ("extended", c.settings.extended_sigma, c.settings.extended_top_fraction),
        ):
            if term in self.terms:
                planes = getattr(c, f"{term}_plane_variances") if self.planes else None
                self.residual_tables[term] = ResidualTable(
                    level_knots(getattr(c, f"{term}_edges")),
                    tf.constant(getattr(c, f"{term}_variances"), tf.float32),
                    _NONE if planes is None else tf.constant(planes, tf.float32),
                    sigma,
                    top,
                )
        if "morphology" in self.terms:
            self.morphology_centre = tf.constant(c.morphology_centre, tf.float32)
            self.morphology_scale = tf.constant(c.morphology_scale, tf.float32)
            self.morphology_reference = tf.constant(c.morphology_reference, tf.float32)

    def uses_planes(self, variance=None, mask=None) -> bool:
        """Whether the plane path applies: the calibration was made with planes and every one of
        them is given (else the calibrated scatter, the documented fallback)."""
        given = {"variance": variance is not None, "mask": mask is not None}
        return bool(self.planes) and all(given[name] for name in self.planes)

    def chi2_map(self, images, reconstructions, variance=None, mask=None, term="residual"):
        """(B, H, W, C) squared smoothed residual over its variance, 0 at masked pixels.

        The one chi^2 of the residual terms: s^2 / (v + m(level)), with s, v the smoothed residual
        and its propagated pixel variance (:func:`plane_maps`) and m the calibrated variance at
        the smoothed reconstruction's brightness (per band, interpolated between the bins'
        variances: :func:`interpolate_levels` on :func:`level_knots`). Without planes v = 0 and m is the
        whole calibrated scatter (``variances``); with them (``variance``, ``mask`` in the
        stretched units and channel order of ``images``) m is the misfit beyond the pixel noise
        (``plane_variances``), so in the sky, where the model fits, it is the true chi^2.
        ``term``: whose numbers and filter (``residual``: the GAN's; ``linear``, ``extended``: the
        linear model's through the PSF-scale and the wide filter).
        """
        planes = variance is not None or mask is not None
        if planes and not self.planes:
            raise ValueError("this calibration was made without variance or mask planes")
        table = self.residual_tables[term]
        binned = table.plane_variances if planes else table.variances
        residual, level, noise, kept = plane_maps(images, reconstructions, table.sigma, variance,
                                                  mask)  # fmt: skip
        model = level_variances(table.knots, binned, level)
        # The reshape from tf.shape loses the static shape where the batch size is unknown (an
        # exported signature); the top-k summary needs it back.
        model = tf.ensure_shape(model, residual.shape)
        if not planes:
            return tf.square(residual) / model
        # 0 where nothing around a pixel is kept (no residual, no variance), and at masked ones.
        return tf.math.divide_no_nan(tf.square(residual), noise + model) * kept

    def residual_score(self, images, reconstructions, variance=None, mask=None, term="residual"):
        """Mean of the highest ``top_fraction`` (of ``term``) of each image's chi^2 map."""
        chi2 = self.chi2_map(images, reconstructions, variance, mask, term)
        flat = tf.reshape(chi2, [tf.shape(chi2)[0], -1])
        size = int(np.prod(chi2.shape[1:])) if chi2.shape[1:].is_fully_defined() else None
        if size is None:
            raise ValueError("residual_score needs static image shapes")
        k = max(1, round(self.residual_tables[term].top_fraction * size))
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
        """The images projected on the data set's principal components (a linear model), by
        least squares reweighted ``settings.robust_iterations`` times (:func:`project_linear`)."""
        return project_linear(self.linear_mean, self.linear_components, images,
                              self.settings.robust_iterations)  # fmt: skip

    def linear_score(self, images, variance=None, mask=None, model=None):
        """The noise-aware residual (smoothed, over its scatter at each brightness, top
        fraction) against the linear model instead of the GAN: what a PCA model of the survey
        cannot reproduce, measured as the default score measures the GAN's misfit. ``model``:
        the images' linear reconstruction, where it is already computed."""
        model = self.linear_reconstruction(images) if model is None else model
        return self.residual_score(images, model, variance, mask, term="linear")

    def extended_score(self, images, variance=None, mask=None, model=None):
        """The linear model's residual through the wider ``extended_sigma`` filter, summarised
        over the ``extended_top_fraction`` of the pixels: faint light over a stamp's area that
        the linear model does not have (tidal features, shells, extended arcs), which the
        PSF-scale filter and top 3% of the linear term average into the sky noise."""
        model = self.linear_reconstruction(images) if model is None else model
        return self.residual_score(images, model, variance, mask, term="extended")

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
        # Candidates by |p|^2 - 2 p.r + |r|^2 (one matmul), then their distances again from the
        # differences: the expansion loses small distances to rounding, and the distance to itself
        # must come out as exactly 0 to be recognised.
        approximate = (tf.reduce_sum(tf.square(points), axis=1, keepdims=True)
                       - 2.0 * tf.matmul(points, reference, transpose_b=True)
                       + tf.reduce_sum(tf.square(reference), axis=1)[None, :])  # fmt: skip
        candidates = tf.math.top_k(-approximate, k=k + 2).indices
        exact = tf.reduce_sum(tf.square(points[:, None, :] - tf.gather(reference, candidates)), 2)
        nearest = tf.sqrt(-tf.math.top_k(-exact, k=k + 1).values)
        itself = nearest[:, 0] < 1e-3
        return tf.where(itself, tf.reduce_mean(nearest[:, 1:], axis=1),
                        tf.reduce_mean(nearest[:, :k], axis=1))  # fmt: skip

    def standardised(self, terms, planes: bool = False):
        """(B, terms) robust z of each term's log against the calibration set, the numbers that
        :meth:`combine` weighs; ``planes``: the terms of the plane path, standardised by its own
        centres and scales."""
        logs = tf.math.log(tf.maximum(tf.stack(terms, axis=1), 1e-30))
        if planes:
            return (logs - self.plane_log_centres) / self.plane_log_scales
        return (logs - self.log_centres) / self.log_scales

    def combine(self, terms, planes: bool = False):
        """The weighted mean (or max) of the terms' robust z (:meth:`standardised`; the two GAN
        terms of older calibrations: (1 - w) residual + w feature)."""
        z = self.standardised(terms, planes)
        if self.settings.combine == "max" and len(terms) > 2:
            return tf.reduce_max(z, axis=1)
        return tf.reduce_sum(z * self.weights, axis=1)

    def __call__(self, images, reconstructions, image_features, flux=None, variance=None,
                 mask=None):  # fmt: skip
        """The terms and the default score of stretched ``images``, their reconstructions and
        critic features; ``flux``: the raw cutouts, which the morphology term needs;
        ``variance``, ``mask``: the data's planes in the stretched units and channel order
        (``data.dataset.stretch_batch``), used where the calibration was made with them (see
        :meth:`uses_planes`; otherwise ignored and the calibrated scatter is used)."""
        if "morphology" in self.terms and flux is None:
            raise ValueError("the morphology term needs the raw flux cutouts (flux=...)")
        planes = self.uses_planes(variance, mask)
        if planes:
            variance = variance if "variance" in self.planes else None
            mask = mask if "mask" in self.planes else None
        else:
            variance = mask = None
        out = {
            "residual_score": self.residual_score(images, reconstructions, variance, mask),
            "feature_score": self.feature_score(image_features),
        }
        # A term the calibration has not got (made before it, or left out) comes out as zeros, so
        # that every run writes the same columns.
        zeros = tf.zeros_like(out["residual_score"])
        model = None
        if "linear" in self.terms or "extended" in self.terms:
            model = self.linear_reconstruction(images)
        for term, function in (("linear", self.linear_score), ("extended", self.extended_score)):
            out[f"{term}_score"] = (
                function(images, variance, mask, model) if term in self.terms else zeros
            )
        out["morphology_score"] = (
            self.morphology_score(flux) if "morphology" in self.terms else zeros
        )
        out["score"] = self.combine([out[f"{term}_score"] for term in self.terms], planes)
        out["feature_axes"] = self.feature_axes(image_features)
        return out


def fit_levels(settings: ScoreSettings, residuals: np.ndarray, levels: np.ndarray,
               noise: np.ndarray | None = None, edges: np.ndarray | None = None):  # fmt: skip
    """Brightness bin edges and the residual variance in each bin, per band, from (bands, M)
    samples of the smoothed residual and the smoothed reconstruction (NaN samples: masked pixels,
    left out). The variance is a median (so the few anomalies in the set do not inflate it),
    floored for empty bins. With ``noise`` (the samples' propagated pixel variance) it is what
    is left beyond the bin's median pixel variance (the model's misfit, at least 0); ``edges``:
    bin on these instead of the levels' quantiles."""
    n_bands = residuals.shape[0]
    quantiles = np.linspace(0.0, 1.0, settings.n_bins + 1)[1:-1]
    if edges is None:
        edges = np.stack([np.nanquantile(levels[b], quantiles) for b in range(n_bands)])
    variances = np.empty((n_bands, settings.n_bins))
    for b in range(n_bands):
        valid = np.isfinite(residuals[b])
        residual, level = residuals[b][valid], levels[b][valid]
        bins = np.searchsorted(edges[b], level, side="right")
        overall = np.median(residual**2) / _CHI2_MEDIAN
        pixel = np.median(noise[b][valid]) if noise is not None else 0.0
        for i in range(settings.n_bins):
            values = residual[bins == i]
            total = np.median(values**2) / _CHI2_MEDIAN if len(values) else overall
            if noise is not None:
                pixel = np.median(noise[b][valid][bins == i]) if len(values) else pixel
                total = max(total - pixel, 0.0)
            variances[b, i] = total
        if noise is None:
            variances[b] = np.maximum(variances[b], max(overall, 1e-12) * 1e-3)
    return np.asarray(edges, np.float32), variances.astype(np.float32)


def sample_maps(settings: ScoreSettings, images, reconstructions, picks: np.ndarray,
                variance=None, mask=None, sigma: float | None = None):  # fmt: skip
    """(n, picks, bands) samples of the smoothed residual (NaN at masked pixels), the smoothed
    reconstruction and the propagated pixel variance (:func:`plane_maps`) at the flattened pixel
    indices ``picks`` (n, picks) of each image: what ``fit_levels`` fits. ``sigma``: the filter
    (default ``settings.smooth_sigma``)."""
    sigma = settings.smooth_sigma if sigma is None else sigma
    maps = plane_maps(images, reconstructions, sigma, variance, mask)
    residual, level, noise, kept = (np.asarray(m).reshape(len(picks), -1, m.shape[-1])
                                    for m in maps)  # fmt: skip
    rows = np.arange(len(picks))[:, None]
    residual = np.where(kept[rows, picks] > 0, residual[rows, picks], np.nan)
    return residual, level[rows, picks], noise[rows, picks]


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


def fit_linear(settings: ScoreSettings, images: np.ndarray, keep: np.ndarray | None = None):
    """The linear model of (N, H, W, C) stretched cutouts: their mean and principal axes, fitted on
    the cutouts ``keep`` says (default all). Its residual's scatter is
    :func:`fit_linear_levels` of the cutouts' :func:`linear_model`."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1)
    fit = flat if keep is None else flat[keep]
    k = min(settings.linear_components_for(*images.shape[1:3]), len(fit) - 1, flat.shape[1])
    pca = PCA(n_components=k, svd_solver="randomized", random_state=0).fit(fit)
    return pca.mean_.astype(np.float32), pca.components_.astype(np.float32)


def project_linear(mean, components, images, iterations: int = 0):
    """(B, H, W, C) stretched cutouts -> their linear model (TF, float32): the least-squares
    projection on the orthonormal principal ``components`` (K, H*W*C) about ``mean``, then
    ``iterations`` steps towards the M-estimate with Cauchy's psi(r) = r / (1 + (r / (c s))^2),
    c = ROBUST_SCALE and s each band's MAD-sigma of the least-squares residual (on every other row
    and column). Each step projects the pseudo-observations model + psi(residual) (Huber 1981),
    two matmuls of the least-squares cost; its fixed point is the weighted normal equations'
    (sum over pixels of w r v = 0). A pixel the model cannot fit (a cosmic ray, a trail, debris)
    so loses its pull on the coefficients and stays in the residual instead of bending the model
    towards it: won 0.003-0.009 AUROC on the three tuning sets (README "Detection quality on real
    images")."""
    images = tf.convert_to_tensor(images, tf.float32)
    mean = tf.convert_to_tensor(mean, tf.float32)
    components = tf.convert_to_tensor(components, tf.float32)
    shape = tf.shape(images)
    centred = tf.reshape(images, [shape[0], -1]) - mean
    coefficients = tf.matmul(centred, components, transpose_b=True)
    scale = None
    for _ in range(iterations):
        # ensure_shape: the reshape from tf.shape loses the static H, W, C the median needs.
        residual = tf.ensure_shape(
            tf.reshape(centred - tf.matmul(coefficients, components), shape), images.shape
        )
        if scale is None:
            sigma = band_mad_sigma(residual[:, ::2, ::2, :])[:, None, None, :]
            scale = ROBUST_SCALE * sigma + 1e-12
        psi = residual / (1.0 + tf.square(residual / scale))
        coefficients += tf.matmul(tf.reshape(psi, [shape[0], -1]), components, transpose_b=True)
    return tf.reshape(tf.matmul(coefficients, components) + mean, shape)


def linear_model(mean: np.ndarray, components: np.ndarray, images: np.ndarray,
                 iterations: int = 0) -> np.ndarray:  # fmt: skip
    """(N, H, W, C) cutouts projected on the linear model (numpy, float32; see
    :func:`project_linear`), in chunks."""
    return np.concatenate([
        project_linear(mean, components, images[start : start + 256], iterations).numpy()
        for start in range(0, len(images), 256)
    ]) if len(images) else np.asarray(images, np.float32)  # fmt: skip


def fit_linear_levels(settings: ScoreSettings, images, models, pixels_per_image, rng,
                      variances=None, masks=None, edges=None, sigma=None):  # fmt: skip
    """The brightness-binned scatter of the smoothed residual of ``images`` against their linear
    ``models`` (:func:`linear_model`, computed once for every filter and path; ``fit_levels`` of
    :func:`sample_maps`, in chunks); with the planes ``variances``/``masks`` the plane path's
    numbers on the given ``edges``; ``sigma``: the filter (default ``settings.smooth_sigma``; the
    extended term's is ``settings.extended_sigma``)."""
    samples = []
    for start in range(0, len(images), 512):
        chunk = slice(start, start + 512)
        count = len(images[chunk])
        picks = rng.integers(0, np.prod(images.shape[1:3]), (count, pixels_per_image))
        samples.append(sample_maps(
            settings, images[chunk], models[chunk], picks,
            None if variances is None else variances[chunk],
            None if masks is None else masks[chunk], sigma))  # fmt: skip
    bands = images.shape[-1]
    residual, level, noise = (
        np.concatenate(s).reshape(-1, bands).T for s in zip(*samples, strict=True)
    )
    planes = variances is not None or masks is not None
    return fit_levels(settings, residual, level, noise if variances is not None else None,
                      edges if planes else None)  # fmt: skip


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
