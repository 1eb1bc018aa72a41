"""Fitting the default score's numbers on a data set (what ``tfanomaly calibrate`` runs, see
:mod:`tfanomaly.pipelines.calibrate`): the residual terms' brightness-binned scatter, the critic
features' Gaussian, the linear model and the k-NN terms' reference sets, and the terms' robust
standardisation. The record they fill is :class:`~tfanomaly.models.calibration.Calibration`.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import ConfigError
from tfanomaly.models.morphology import term_columns
from tfanomaly.models.noise_score import COPY_DISTANCE, plane_maps, project_linear
from tfanomaly.models.score_config import ScoreSettings

# Median of chi^2 with one degree of freedom: a robust variance is median(r^2) / this.
_CHI2_MEDIAN = 0.4549364231195724


def fit_levels(
    settings: ScoreSettings,
    residuals: np.ndarray,
    levels: np.ndarray,
    noise: np.ndarray | None = None,
    edges: np.ndarray | None = None,
):
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


def sample_maps(
    settings: ScoreSettings,
    images,
    reconstructions,
    picks: np.ndarray,
    variance=None,
    mask=None,
    sigma: float | None = None,
):
    """(n, picks, bands) samples of the smoothed residual (NaN at masked pixels), the smoothed
    reconstruction and the propagated pixel variance (:func:`plane_maps`) at the flattened pixel
    indices ``picks`` (n, picks) of each image: what ``fit_levels`` fits. ``sigma``: the filter
    (default ``settings.smooth_sigma``)."""
    sigma = settings.smooth_sigma if sigma is None else sigma
    maps = plane_maps(images, reconstructions, sigma, variance, mask)
    residual, level, noise, kept = (
        np.asarray(m).reshape(len(picks), -1, m.shape[-1]) for m in maps
    )
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
    return (
        pca.mean_.astype(np.float32),
        pca.components_.astype(np.float32),
        eigenvalues.astype(np.float32),
        float(max(rest, 1e-12)),
    )


def robust_log_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-sigma of log(values), over the finite values (none: centre 0, scale 1)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    logs = np.log(np.maximum(values, 1e-30))
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


def linear_model(
    mean: np.ndarray, components: np.ndarray, images: np.ndarray, iterations: int = 0
) -> np.ndarray:
    """(N, H, W, C) cutouts projected on the linear model (numpy, float32; see
    :func:`project_linear`), in chunks."""
    return (
        np.concatenate(
            [
                project_linear(mean, components, images[start : start + 256], iterations).numpy()
                for start in range(0, len(images), 256)
            ]
        )
        if len(images)
        else np.asarray(images, np.float32)
    )


def fit_linear_levels(
    settings: ScoreSettings,
    images,
    models,
    pixels_per_image,
    rng,
    variances=None,
    masks=None,
    edges=None,
    sigma=None,
):
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
        samples.append(
            sample_maps(
                settings,
                images[chunk],
                models[chunk],
                picks,
                None if variances is None else variances[chunk],
                None if masks is None else masks[chunk],
                sigma,
            )
        )
    bands = images.shape[-1]
    residual, level, noise = (
        np.concatenate(s).reshape(-1, bands).T for s in zip(*samples, strict=True)
    )
    planes = variances is not None or masks is not None
    return fit_levels(
        settings,
        residual,
        level,
        noise if variances is not None else None,
        edges if planes else None,
    )


def robust_centre_scale(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-sigma (floored: 1 where it is 0, plus 1e-6) of each column."""
    centre = np.median(features, axis=0)
    scale = 1.4826 * np.median(np.abs(features - centre), axis=0)
    return centre, np.where(scale > 0, scale, 1.0) + 1e-6


def first_copies(points: np.ndarray, tol: float = COPY_DISTANCE) -> np.ndarray:
    """(N,) bool: True where a point lies within ``tol`` of an earlier point that is kept (not
    itself a copy): the copies to drop, so that one of each group of copies stays."""
    from scipy.spatial import cKDTree

    copy = np.zeros(len(points), bool)
    pairs = cKDTree(points).query_pairs(tol, output_type="ndarray")  # i < j
    for i, j in pairs[np.argsort(pairs[:, 1], kind="stable")]:
        # Sorted by the later point: whether i is a copy is settled before any of its pairs.
        copy[j] |= not copy[i]
    return copy


def trimmed_rows(reference: np.ndarray, k: int, fraction: float) -> np.ndarray:
    """The indices, in order, of the rows of ``reference`` (distinct points) without the
    ``fraction`` that stand farthest from their ``k`` nearest others (mean distance), at least
    k + 1 kept: the calibration set's own anomalies (a few percent, some in groups of similar
    ones), which would otherwise be the neighbours that make the anomalies scored later look
    dense."""
    keep = max(k + 1, int(round((1.0 - fraction) * len(reference))))
    if fraction <= 0 or keep >= len(reference):
        return np.arange(len(reference))
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(reference).query(reference, k=k + 1)  # the first is the point itself
    isolation = distances[:, 1:].mean(axis=1)
    return np.sort(np.argsort(isolation, kind="stable")[:keep])


def knn_units(standard: np.ndarray, units: str = "clip") -> np.ndarray:
    """A k-NN term's robust z in the units of its distance (``ScoreSettings.morphology_units``,
    ``residual_shape_units``): clipped at +-50, then through asinh with ``asinh``. The scorer's
    graph computes the same (``noise_score.in_units``)."""
    clipped = np.clip(standard, -50.0, 50.0)
    return np.arcsinh(clipped) if units == "asinh" else clipped


def fit_reference(
    settings: ScoreSettings,
    vectors: np.ndarray,
    rng: np.random.Generator,
    term: str,
    units: str = "clip",
):
    """A k-NN term's numbers from its calibration vectors (N, F): the median and MAD-sigma of each
    column, the standardised reference set (at most ``reference_size`` distinct cutouts drawn at
    random, the ``reference_trim`` most isolated of them left out: :func:`trimmed_rows`),
    the number of cutouts left out as copies of another (closer than ``COPY_DISTANCE`` in
    standardised units: a galaxy of overlapping tracts or repeated visits counts once, in the
    statistics and the reference) and the number trimmed. Copies and the trim are judged on the
    robust z (clipped); the reference set is in the term's ``units`` (:func:`knn_units`), so that
    asinh, which draws far-out points together, neither makes near-twins far out copies nor keeps
    a far-out group of the calibration set's anomalies from being trimmed. ``term`` names the
    term in errors."""
    vectors = np.asarray(vectors, np.float64)
    centre, scale = robust_centre_scale(vectors)
    order = rng.permutation(len(vectors))
    copies = first_copies(knn_units((vectors[order] - centre) / scale))
    unique = vectors[order[~copies]]
    if len(unique) < 2:
        raise ConfigError(
            f"the {term} term needs at least 2 distinct cutouts; the calibration set has "
            f"{len(unique)} (and {int(copies.sum())} copies; constant cutouts are left out)"
        )
    centre, scale = robust_centre_scale(unique)
    drawn = knn_units((unique[: settings.reference_size] - centre) / scale)
    kept = trimmed_rows(drawn, settings.morphology_neighbours, settings.reference_trim)
    reference = knn_units(drawn[kept], units)
    return (
        centre.astype(np.float32),
        scale.astype(np.float32),
        reference.astype(np.float32),
        int(copies.sum()),
        len(drawn) - len(reference),
    )


def fit_morphology(settings: ScoreSettings, features: np.ndarray, rng: np.random.Generator):
    """:func:`fit_reference` of the morphology parameters the term reads
    (``settings.morphology_parameters``), in its units (``settings.morphology_units``)."""
    features = np.asarray(features, np.float64)
    features = features[:, term_columns(settings.morphology_parameters, features.shape[1])]
    return fit_reference(settings, features, rng, "morphology", settings.morphology_units)
