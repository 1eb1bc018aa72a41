"""The default anomaly score in TF ops: the noise-aware residual terms, the density of the critic's
features and the morphology term, standardised and combined in the graph from a
:class:`~tfanomaly.models.calibration.Calibration` (its numbers are fitted by
:mod:`tfanomaly.models.score_fit` in ``tfanomaly calibrate``).

Why not the paper's L1 sums: on Lupton-stretched pixels the asinh lifts faint sky noise to a fifth
of the display range, so sum|x - G(z)| mostly counts noise and the reconstruction's misfit of bright
cores. Here the residual is smoothed with a Gaussian of about the PSF's width (a matched filter for
unresolved and PSF-scale features, which averages the sky noise down), divided by its own scatter
at that brightness of the reconstruction (measured per band over the calibration set in
brightness bins, interpolated between them: sky noise where the stamp is dark, model misfit where
it is bright), and summarised by the mean of the highest ``top_fraction`` of the chi^2 map (robust
to the bulk, sensitive to local features). The residual terms are this chi^2 against the GAN's
reconstruction (``residual``) and against a linear (PCA) model of the data set (``linear``; and
``extended``: through a wider filter, over a larger fraction of the pixels). The ``feature`` term
is the Mahalanobis distance of f(x) (the critic's last feature map) under a probabilistic-PCA
Gaussian fitted to the calibration set; the ``morphology`` term the k-NN distance in standardised
morphology parameters of the raw flux; the ``residual_shape`` term the k-NN distance in the
standardised descriptors of the GAN residual's shape (a misfit unlike the calibration set's
misfits). The default score is the softmax (or the weighted mean, or
the max) of the combined terms' robust z of log (``ScoreSettings.terms``, ``term_weights``,
``combine``).

Where the data set carries variance and mask planes (and the calibration was made with them), the
residual terms are a true chi^2 instead: the residual smoothed with the kernel renormalised to the
unmasked pixels, over the pixel variance propagated through that smoothing plus the model's own
misfit at that brightness (calibrated as the scatter left beyond the pixel noise); masked pixels
count nothing. Without the planes the calibrated scatter of before is used (the fallback).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfanomaly.models.calibration import Calibration, ResidualTerm
from tfanomaly.models.filters import band_mad_sigma, smooth
from tfanomaly.models.morphology import constant_cutouts, legacy_count, morphology, term_columns
from tfanomaly.models.pixel_noise import smoothed_chi2
from tfanomaly.models.residual_shape import residual_shape
from tfanomaly.models.score_config import SOFTMAX_TEMPERATURE

# The robust linear projection's Cauchy scale, in MAD-sigmas of a band's residual (3-6 measured).
ROBUST_SCALE = 4.0
# Standardised morphology parameters closer than this are one cutout's copies (the same pixels,
# flipped or turned by 90 degrees: tests/models/test_morphology_copies.py). Their sums over the
# pixels in another order differ by ~sqrt(H W) float32 epsilons, a few 1e-6 of a parameter of
# order 10, which a MAD-sigma as small as 0.01 turns into a few 1e-3 per column, ~1e-2 over 16;
# distinct cutouts lie 0.3 and more apart (the noise alone moves the noise estimate by ~5%).
# Measured on 3,000 noisy discs (16x16x3): copies at most 4e-5 apart, distinct ones at least 0.37.
COPY_DISTANCE = 0.03


# At most this many references beyond the k nearest may be copies of one image (the fit keeps one
# of each group of copies, so a reference has none closer than COPY_DISTANCE; a point can be
# within it of a handful at most).
COPY_SLACK = 8


def knn_distance(points, reference, k: int, copy_points=None, copy_reference=None):
    """(B,) mean distance of each standardised point (B, F) to its ``k`` nearest rows of the
    ``reference`` set (R, F, float64); every reference closer than ``COPY_DISTANCE`` (a copy of
    the image: itself, flipped or turned, from an overlapping tract) is left out, so that a
    galaxy the survey holds several times does not look dense for being its own neighbour.
    Copies are judged in the units ``copy_points`` and ``copy_reference`` give (the robust z
    where the distance is in asinh units: ``score_fit.fit_reference`` judges them so), else in
    the distance's own; among the ``k + COPY_SLACK`` nearest, since a copy in the robust z is at
    least as near in asinh units."""
    points = tf.cast(points, tf.float64)
    # |p|^2 - 2 p.r + |r|^2 in float64: one matmul, and small distances (copies) come out to
    # ~1e-7 of the parameters' scale instead of float32's ~1e-3.
    squared = (
        tf.reduce_sum(tf.square(points), axis=1, keepdims=True)
        - 2.0 * tf.matmul(points, reference, transpose_b=True)
        + tf.reduce_sum(tf.square(reference), axis=1)[None, :]
    )
    squared = tf.maximum(squared, 0.0)
    nearest = tf.math.top_k(-squared, k=min(k + COPY_SLACK, int(reference.shape[0])))
    copy_points = points if copy_points is None else tf.cast(copy_points, tf.float64)
    copy_reference = reference if copy_reference is None else copy_reference
    offsets = copy_points[:, None, :] - tf.gather(copy_reference, nearest.indices)
    copies = tf.reduce_sum(tf.square(offsets), axis=2) < COPY_DISTANCE**2
    squared = tf.where(copies, tf.constant(np.inf, tf.float64), -nearest.values)
    nearest = tf.sqrt(-tf.math.top_k(-squared, k=k).values)
    return tf.cast(tf.reduce_mean(nearest, axis=1), tf.float32)


def in_units(standard, units: str):
    """A k-NN term's robust z (clipped at +-50) in the units of its distance
    (``ScoreSettings.morphology_units``, ``residual_shape_units``): through asinh, or as it is
    with ``clip``. The graph's twin of ``score_fit.knn_units``, which fits the reference sets."""
    return tf.math.asinh(standard) if units == "asinh" else standard


def robust_reference(reference, units: str):
    """A k-NN term's reference set as robust z, where :func:`knn_distance` judges copies: the
    sinh of a reference in asinh units (exact to ~1e-5 there), None (the reference itself) in
    ``clip``."""
    return tf.math.sinh(reference) if units == "asinh" else None


class ResidualTable(NamedTuple):
    """What one residual term's chi^2 map reads: the brightness knots (``ResidualTerm.knots``), the
    calibrated variances at them, the plane path's (empty without planes), the filter width and
    the top fraction of the summary, and the stride of the map's pixels it reads."""

    knots: tf.Tensor
    variances: tf.Tensor
    plane_variances: tf.Tensor
    sigma: float
    top_fraction: float
    stride: int


_NONE = np.zeros((0, 0), np.float32)  # a table's plane variances where there is no plane path


def residual_table(term: ResidualTerm, planes: bool) -> ResidualTable:
    """The constants of a residual term's chi^2 map; ``planes``: with the plane path's."""
    return ResidualTable(
        tf.constant(term.knots),
        tf.constant(term.variances, tf.float32),
        tf.constant(term.plane_variances if planes else _NONE, tf.float32),
        term.sigma,
        term.top_fraction,
        term.stride,
    )


def interpolate_levels(knots, values, levels):
    """(bands, M) values at ``levels`` (bands, M), interpolated linearly in each band between its
    ``knots`` (bands, K, sorted) and held at the end values beyond them (``np.interp`` per band).

    Continuous in the level, unlike a lookup of the bin a level falls in: the float32 rounding of
    a reconstruction (which differs between CPUs and between eager and graph execution) cannot
    move a pixel across a bin edge and its variance by a whole step.
    """
    knots = tf.convert_to_tensor(knots, tf.float32)
    values = tf.convert_to_tensor(values, tf.float32)
    bands, n = tf.shape(knots)[0], tf.shape(knots)[1]
    above = tf.searchsorted(knots, levels, side="right")  # in [0, K]
    # Each of the K + 1 places a level can fall in -> (x0, x1, v0, v1): the knots and values
    # that straddle it (the end knot twice beyond the ends), one row per band and place, so that
    # one gather of rows reads all four (four gathers of one value each cost twice as much).
    places = tf.range(n + 1)
    low, high = tf.clip_by_value(places - 1, 0, n - 1), tf.clip_by_value(places, 0, n - 1)
    rows = tf.stack(
        [
            tf.gather(knots, low, axis=1),
            tf.gather(knots, high, axis=1),
            tf.gather(values, low, axis=1),
            tf.gather(values, high, axis=1),
        ],
        axis=-1,
    )  # (bands, K + 1, 4)
    flat = above + (n + 1) * tf.range(bands)[:, None]
    x0, x1, v0, v1 = tf.unstack(tf.gather(tf.reshape(rows, [-1, 4]), flat), axis=-1)
    t = tf.clip_by_value(tf.math.divide_no_nan(levels - x0, x1 - x0), 0.0, 1.0)
    return v0 + t * (v1 - v0)


def level_variances(knots, variances, levels):
    """(B, H, W, C) calibrated variance at each pixel's brightness ``levels`` (B, H, W, C): per
    band, :func:`interpolate_levels` over that band's ``knots`` (``ResidualTerm.knots``) and
    ``variances``."""
    shape = tf.shape(levels)
    # Bands first, pixels flattened: the lookup runs per band over its own knots.
    bands = tf.reshape(tf.transpose(levels, [3, 0, 1, 2]), [shape[3], -1])
    model = interpolate_levels(knots, variances, bands)
    return tf.transpose(tf.reshape(model, tf.gather(shape, [3, 0, 1, 2])), [1, 2, 3, 0])


def residual_maps(images, reconstructions, sigma: float, stride: int = 1):
    """The smoothed residual and the smoothed reconstruction, the two maps the score reads (at
    every ``stride``-th pixel of each row and column)."""
    return (
        smooth(images - reconstructions, sigma, stride),
        smooth(reconstructions, sigma, stride),
    )


def plane_maps(images, reconstructions, sigma: float, variance=None, mask=None, stride: int = 1):
    """The maps the residual terms read: (smoothed residual, smoothed reconstruction, propagated
    pixel variance of the smoothed residual, kept). Without planes: :func:`residual_maps` (edges
    mirrored), no pixel variance (0) and every pixel kept (1). With ``variance`` and/or ``mask``
    (stretched units, True = left out): ``pixel_noise.smoothed_chi2``'s residual smoothed with the
    kernel renormalised to the kept pixels and its propagated variance (0 without ``variance``),
    and kept 0 at masked pixels. ``stride``: the maps at every ``stride``-th pixel of each row and
    column from the first (``ResidualTerm.stride``)."""
    if variance is None and mask is None:
        residual, level = residual_maps(images, reconstructions, sigma, stride)
        return residual, level, tf.zeros_like(residual), tf.ones_like(residual)
    # The residual through the renormalised kernel below: only the level is smoothed plainly.
    level = smooth(reconstructions, sigma, stride)
    residuals = tf.convert_to_tensor(images, tf.float32) - reconstructions
    if variance is None:
        variance = tf.zeros_like(residuals)
    out = smoothed_chi2(residuals, variance, mask, sigma)
    kept = tf.ones_like(residuals) if mask is None else 1.0 - tf.cast(mask, tf.float32)
    every = (slice(None), slice(None, None, stride), slice(None, None, stride))
    return out["smoothed"][every], level, out["smoothed_variance"][every], kept[every]


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


class NoiseAwareScore(tf.Module):
    """The default score in TF ops, from a :class:`Calibration` (constants in the graph).

    Example:
        >>> scorer = NoiseAwareScore(Calibration.load("run/calibration.npz"))  # doctest: +SKIP
        >>> out = scorer(stretched, reconstructions, critic(stretched)[1], raw_flux)  # doctest: +SKIP
        >>> out["score"], out["residual_score"], out["feature_score"]  # doctest: +SKIP
    """

    def __init__(self, calibration: Calibration):
        super().__init__(name="noise_aware_score")
        c = calibration
        self.settings = c.settings
        self.terms = c.terms
        self.weights = tf.constant(c.weights, tf.float32)
        # The columns of the terms the score combines: a degenerate term is left out of the
        # graph (gathered away, not weighed by 0: its z may be NaN, and NaN * 0 is NaN).
        kept = c.kept_terms
        self.kept = [i for i, term in enumerate(self.terms) if term in kept]
        self.planes = c.planes
        self.feature_mean = tf.constant(c.features.mean, tf.float32)
        self.components = tf.constant(c.features.components, tf.float32)
        self.eigenvalues = tf.constant(c.features.eigenvalues, tf.float32)
        self.residual_variance = tf.constant(c.features.residual_variance, tf.float32)
        self.log_centres = tf.constant(c.standard.centres, tf.float32)
        self.log_scales = tf.constant(c.standard.scales, tf.float32)
        if self.planes:
            self.plane_log_centres = tf.constant(c.plane_standard.centres, tf.float32)
            self.plane_log_scales = tf.constant(c.plane_standard.scales, tf.float32)
        # The numbers chi2_map reads for each residual term (the GAN's is always there).
        self.residual_tables = {
            term: residual_table(c.residuals[term], bool(self.planes))
            for term in ("residual", "linear", "extended")
            if term == "residual" or term in self.terms
        }
        if "linear" in self.terms or "extended" in self.terms:
            self.linear_mean = tf.constant(c.linear.mean, tf.float32)
            self.linear_components = tf.constant(c.linear.components, tf.float32)
        if "morphology" in self.terms:
            self.morphology_centre = tf.constant(c.morphology.centre, tf.float32)
            self.morphology_scale = tf.constant(c.morphology.scale, tf.float32)
            self.morphology_reference = tf.constant(c.morphology.reference, tf.float64)
            self.morphology_copy_reference = robust_reference(
                self.morphology_reference, self.settings.morphology_units
            )
        if "residual_shape" in self.terms:
            self.shape_centre = tf.constant(c.residual_shape.centre, tf.float32)
            self.shape_scale = tf.constant(c.residual_shape.scale, tf.float32)
            self.shape_reference = tf.constant(c.residual_shape.reference, tf.float64)
            self.shape_copy_reference = robust_reference(
                self.shape_reference, self.settings.residual_shape_units
            )

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
        variances: :func:`interpolate_levels` on ``ResidualTerm.knots``). Without planes v = 0
        and m is the whole calibrated scatter (``variances``); with them (``variance``, ``mask``
        in the stretched units and channel order of ``images``) m is the misfit beyond the pixel
        noise (``plane_variances``), so in the sky, where the model fits, it is the true chi^2.
        ``term``: whose numbers and filter (``residual``: the GAN's; ``linear``, ``extended``: the
        linear model's through the PSF-scale and the wide filter). The map is (B, H, W, C) at
        every ``stride``-th pixel of the term (the extended term's ``extended_stride``).
        """
        planes = variance is not None or mask is not None
        if planes and not self.planes:
            raise ValueError("this calibration was made without variance or mask planes")
        table = self.residual_tables[term]
        binned = table.plane_variances if planes else table.variances
        residual, level, noise, kept = plane_maps(
            images, reconstructions, table.sigma, variance, mask, table.stride
        )
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
        return project_linear(
            self.linear_mean, self.linear_components, images, self.settings.robust_iterations
        )

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

    def morphology_invariant(self, bands: int) -> bool:
        """Whether the calibration's morphology parameters are the flip-invariant ones with the
        columns after the colours: False for one made before them (fewer columns), whose first
        columns keep their definitions of then (``morphology(..., invariant=False)``)."""
        if "morphology" not in self.terms or self.settings.morphology_parameters != "all":
            return True
        return self.morphology_centre.shape[0] > legacy_count(bands)

    def morphology_parameters(self, flux):
        """The raw morphology parameters (B, len(feature_names(C))) of the flux cutouts, in the
        definitions the calibration was made with (:meth:`morphology_invariant`)."""
        flux = tf.convert_to_tensor(flux, tf.float32)
        return morphology(flux, invariant=self.morphology_invariant(flux.shape[-1]))

    def morphology_standard(self, flux, parameters=None):
        """The robust z (B, F) of the term's morphology parameters of the raw flux cutouts,
        clipped at +-50 (on the stretched images they lost 0.03-0.17 AUROC: the asinh flattens
        the profiles); ``parameters``: the raw parameters :meth:`morphology_parameters` when they
        are already computed. A calibration with fewer columns (made before the later parameters)
        reads the first F; the term's parameters are ``ScoreSettings.morphology_parameters``
        (``term_columns``)."""
        parameters = self.morphology_parameters(flux) if parameters is None else parameters
        if self.settings.morphology_parameters == "all":
            parameters = parameters[:, : self.morphology_centre.shape[0]]
        else:
            which = term_columns(self.settings.morphology_parameters, parameters.shape[1])
            # later parameters come last: a calibration made before them reads the first ones
            which = which[: self.morphology_centre.shape[0]]
            parameters = tf.gather(parameters, which, axis=1)
        standard = (parameters - self.morphology_centre) / self.morphology_scale
        return tf.clip_by_value(standard, -50.0, 50.0)

    def morphology_features(self, flux, parameters=None):
        """:meth:`morphology_standard` in the term's units ``ScoreSettings.morphology_units``:
        the points of its k-NN distance."""
        standard = self.morphology_standard(flux, parameters)
        return in_units(standard, self.settings.morphology_units)

    def knn_term(self, standard, reference, copy_reference, units: str):
        """(B,) a k-NN term's distance: the robust z ``standard`` (B, F) in the term's ``units``
        against its ``reference`` set, copies judged on the robust z (``copy_reference``:
        :func:`robust_reference`); the morphology and residual-shape terms' shared recipe."""
        return knn_distance(
            in_units(standard, units),
            reference,
            self.settings.morphology_neighbours,
            copy_points=standard,
            copy_reference=copy_reference,
        )

    def morphology_score(self, flux, parameters=None):
        """Mean distance to the k nearest calibration cutouts in standardised morphology
        parameters (:func:`knn_distance`: copies of the image left out, judged on the robust z
        as the fit judges them). A constant cutout (``constant_cutouts``: no light, no shape)
        has the distance 0."""
        standard = self.morphology_standard(flux, parameters)
        distance = self.knn_term(
            standard,
            self.morphology_reference,
            self.morphology_copy_reference,
            self.settings.morphology_units,
        )
        # A constant cutout has no shape (its parameters are the noise floor's), and every other
        # one is a copy of it: it would stand far from all references it is not a copy of.
        return tf.where(constant_cutouts(flux), 0.0, distance)

    def residual_shape_score(self, images, shape):
        """Mean distance to the k nearest calibration cutouts in the standardised descriptors of
        the GAN residual's shape ``shape`` (:func:`~tfanomaly.models.residual_shape.residual_shape`
        of ``images`` and their reconstructions): a misfit whose shape (one pixel, a line, a ring,
        off-centre, in one band) the calibration set's misfits have not got, in the units
        ``ScoreSettings.residual_shape_units`` (copies judged on the robust z). A constant cutout
        has the distance 0."""
        standard = tf.clip_by_value((shape - self.shape_centre) / self.shape_scale, -50.0, 50.0)
        distance = self.knn_term(
            standard,
            self.shape_reference,
            self.shape_copy_reference,
            self.settings.residual_shape_units,
        )
        return tf.where(constant_cutouts(images), 0.0, distance)

    def standardised(self, terms, planes: bool = False):
        """(B, terms) robust z of each term's log against the calibration set, the numbers that
        :meth:`combine` weighs; ``planes``: the terms of the plane path, standardised by its own
        centres and scales."""
        logs = tf.math.log(tf.maximum(tf.stack(terms, axis=1), 1e-30))
        if planes:
            return (logs - self.plane_log_centres) / self.plane_log_scales
        return (logs - self.log_centres) / self.log_scales

    def combine(self, terms, planes: bool = False):
        """The terms' robust z (:meth:`standardised`) combined as ``settings.combine`` says: their
        softmax (tau log sum w exp(z / tau)), weighted mean or max; the two GAN terms of older
        calibrations: (1 - w) residual + w feature. The terms the calibration found degenerate are
        left out."""
        z = self.standardised(terms, planes)
        weights = self.weights
        if len(self.kept) < len(self.terms):
            z = tf.gather(z, self.kept, axis=1)
            weights = tf.gather(weights, self.kept)
        if self.settings.combine == "max" and len(terms) > 2:
            return tf.reduce_max(z, axis=1)
        if self.settings.combine == "softmax" and len(terms) > 2:
            # tau * log(sum w exp(z / tau)); a weight of 0 is log 0 = -inf, which leaves it out
            tau = SOFTMAX_TEMPERATURE
            return tau * tf.reduce_logsumexp(z / tau + tf.math.log(weights), axis=1)
        return tf.reduce_sum(z * weights, axis=1)

    def __call__(
        self, images, reconstructions, image_features, flux=None, variance=None, mask=None
    ):
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
        if flux is not None:  # the raw parameters are also a characterisation space
            out["morphology"] = self.morphology_parameters(flux)
        out["morphology_score"] = (
            self.morphology_score(flux, out["morphology"]) if "morphology" in self.terms else zeros
        )
        out["residual_shape"] = residual_shape(images, reconstructions)
        out["residual_shape_score"] = (
            self.residual_shape_score(images, out["residual_shape"])
            if "residual_shape" in self.terms
            else zeros
        )
        out["score"] = self.combine([out[f"{term}_score"] for term in self.terms], planes)
        out["feature_axes"] = self.feature_axes(image_features)
        return out
