"""The default score's pieces against numpy/scipy references: the matched filter, the brightness-
binned chi^2, the top-fraction summary, the probabilistic-PCA Mahalanobis distance, the fits, the
calibration file, and the `calibrate` stage of a run."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_run, combined, quiet
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.calibration import (
    Calibration,
    FeatureGaussian,
    KnnReference,
    LinearModel,
    ResidualTerm,
    Standardisation,
    knots_of,
)
from tfanomaly.models.filters import gaussian_kernel, smooth
from tfanomaly.models.noise_score import NoiseAwareScore, interpolate_levels, residual_maps
from tfanomaly.models.score_config import ScoreSettings
from tfanomaly.models.score_fit import fit_features, fit_levels, robust_log_scale
from tfanomaly.pipelines.config import CalibrateConfig

TWO = ("residual", "feature")  # the GAN's two terms, as calibrations before the others had
ALL = ("residual", "feature", "linear", "extended", "morphology")


def calibration(settings=None, bands=3, dims=12, k=3, seed=0):
    """A hand-made calibration with distinct numbers everywhere."""
    settings = settings or ScoreSettings(n_bins=4, n_components=k, terms=TWO)
    rng = np.random.default_rng(seed)
    axes, _ = np.linalg.qr(rng.normal(size=(dims, k)))
    return Calibration(
        settings=settings,
        residuals={"residual": residual_term(settings, "residual", rng, bands)},
        features=FeatureGaussian(
            mean=rng.normal(size=dims).astype("f4"),
            components=axes.T.astype("f4"),
            eigenvalues=np.array([5.0, 3.0, 2.0][:k], "f4"),
            residual_variance=0.5,
        ),
        standard=Standardisation(np.array([0.3, -0.2], "f4"), np.array([1.5, 0.8], "f4")),
        info={"data": "hand-made"},
    )


def residual_term(settings, term, rng, bands=3, low=0.5, high=2.0):
    """A residual term's record with random sorted edges and variances in [low, high)."""
    edges = np.sort(rng.uniform(0.0, 0.5, (bands, settings.n_bins - 1)), axis=1).astype("f4")
    variances = rng.uniform(low, high, (bands, settings.n_bins)).astype("f4")
    return ResidualTerm.fitted(settings, term, edges, variances)


def variance_at(level: np.ndarray, edges: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """The reference variance lookup: np.interp between the outer edges and the middles of the
    inner bins, held at the end values beyond them."""
    knots = np.concatenate([edges[:1], (edges[1:] + edges[:-1]) / 2, edges[-1:]])
    return np.interp(level, knots, variances)


def test_variance_lookup_is_continuous_and_holds_each_bins_value_at_its_middle():
    edges = np.array([[0.1, 0.2, 0.4]], "f4")
    variances = np.array([[1.0, 2.0, 4.0, 3.0]], "f4")
    knots = knots_of(edges)
    np.testing.assert_allclose(knots, [[0.1, 0.15, 0.3, 0.4]])
    levels = np.array([[-1.0, 0.1, 0.125, 0.15, 0.3, 0.35, 0.4, 9.0]], "f4")
    out = interpolate_levels(knots, variances, levels).numpy()
    np.testing.assert_allclose(out, [[1.0, 1.0, 1.5, 2.0, 4.0, 3.5, 3.0, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(out[0], variance_at(levels[0], edges[0], variances[0]), rtol=1e-6)
    # A float32 step across an edge moves the variance by float32 rounding, not by a bin's step.
    edge = np.float32(0.2)
    across = np.array([[np.nextafter(edge, np.float32(0)), np.nextafter(edge, np.float32(1))]])
    step = interpolate_levels(knots, variances, across.astype("f4")).numpy()[0]
    assert abs(step[1] - step[0]) < 1e-5
    # One bin: one variance everywhere.
    one = interpolate_levels(
        knots_of(np.zeros((2, 0), "f4")),
        np.array([[2.0], [3.0]], "f4"),
        np.array([[0.0, 5.0], [-1.0, 1.0]], "f4"),
    ).numpy()
    np.testing.assert_array_equal(one, [[2.0, 2.0], [3.0, 3.0]])


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.6])
def test_matched_filter_equals_scipy_gaussian_filter(sigma):
    images = np.random.default_rng(1).normal(size=(2, 20, 24, 3)).astype("f4")
    radius = len(gaussian_kernel(sigma)) // 2
    expected = gaussian_filter(
        images.astype("f8"),
        sigma=(0, sigma, sigma, 0),
        mode="reflect",
        radius=(0, radius, radius, 0),
    )
    np.testing.assert_allclose(smooth(images, sigma).numpy(), expected, atol=2e-6)
    assert gaussian_kernel(sigma).sum() == pytest.approx(1.0, abs=1e-6)


def test_chi2_map_and_residual_score_follow_their_definition():
    c = calibration()
    scorer = NoiseAwareScore(c)
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 1, (3, 16, 16, 3)).astype("f4")
    recon = rng.uniform(0, 0.6, (3, 16, 16, 3)).astype("f4")
    residual, level = (t.numpy() for t in residual_maps(images, recon, 1.0))
    expected = np.empty_like(residual)
    for b in range(3):
        expected[..., b] = residual[..., b] ** 2 / variance_at(
            level[..., b], c.residuals["residual"].edges[b], c.residuals["residual"].variances[b]
        )
    np.testing.assert_allclose(scorer.chi2_map(images, recon).numpy(), expected, rtol=1e-5)
    k = round(c.settings.top_fraction * 16 * 16 * 3)
    top = np.sort(expected.reshape(3, -1), axis=1)[:, -k:].mean(axis=1)
    np.testing.assert_allclose(scorer.residual_score(images, recon).numpy(), top, rtol=1e-5)


def test_feature_score_is_the_mahalanobis_distance_of_the_ppca_gaussian():
    c = calibration()
    v = c.features.components.astype("f8")
    covariance = v.T @ np.diag(c.features.eigenvalues) @ v + c.features.residual_variance * (
        np.eye(v.shape[1]) - v.T @ v
    )
    features = np.random.default_rng(3).normal(size=(5, 12)).astype("f4")
    centred = features - c.features.mean
    expected = np.einsum("ij,jk,ik->i", centred, np.linalg.inv(covariance), centred) / 12
    np.testing.assert_allclose(NoiseAwareScore(c).feature_score(features), expected, rtol=1e-4)


def test_combined_score_is_the_weighted_sum_of_standardised_logs():
    c = calibration(ScoreSettings(n_bins=4, n_components=3, feature_weight=0.25, terms=TWO))
    out = NoiseAwareScore(c).combine([tf.constant([2.0, 0.5]), tf.constant([1.0, 4.0])]).numpy()
    z_res = (np.log([2.0, 0.5]) - 0.3) / 1.5
    z_feat = (np.log([1.0, 4.0]) + 0.2) / 0.8
    np.testing.assert_allclose(out, 0.75 * z_res + 0.25 * z_feat, rtol=1e-5, atol=1e-6)


def four_term_calibration(
    combine="mean", size=16, bands=3, n_reference=40, seed=6, robust_iterations=0
):
    """The hand-made calibration with a linear model (both filters' numbers) and a morphology
    reference set; least squares unless ``robust_iterations``."""
    from tfanomaly.models.morphology import feature_names, term_columns

    rng = np.random.default_rng(seed)
    c = calibration(
        ScoreSettings(
            n_bins=4,
            n_components=3,
            combine=combine,
            morphology_neighbours=3,
            terms=ALL,
            robust_iterations=robust_iterations,
            # Fixed here, so that the tests do not follow the package's default weights.
            term_weights=(("feature", 0.5), ("extended", 1.5), ("morphology", 1.5)),
        )
    )
    dims = size * size * bands
    axes, _ = np.linalg.qr(rng.normal(size=(dims, 5)))
    c.linear = LinearModel(rng.uniform(0, 0.2, dims).astype("f4"), axes.T.astype("f4"))
    c.residuals["linear"] = residual_term(c.settings, "linear", rng, bands)
    c.residuals["extended"] = residual_term(c.settings, "extended", rng, bands, 0.1, 0.5)
    which = c.settings.morphology_parameters
    n_features = len(term_columns(which, len(feature_names(bands))))
    c.morphology = KnnReference(
        rng.normal(size=n_features).astype("f4"),
        rng.uniform(0.5, 2.0, n_features).astype("f4"),
        rng.normal(size=(n_reference, n_features)).astype("f4"),
    )
    c.standard = Standardisation(
        np.array([0.3, -0.2, -5.0, -2.0, 1.0], "f4"), np.array([1.5, 0.8, 1.2, 0.9, 0.4], "f4")
    )
    return c


def test_linear_term_is_the_noise_aware_residual_of_the_pca_model():
    c = four_term_calibration()
    scorer = NoiseAwareScore(c)
    images = np.random.default_rng(7).uniform(0, 1, (4, 16, 16, 3)).astype("f4")
    centred = images.reshape(4, -1).astype("f8") - c.linear.mean
    v = c.linear.components.astype("f8")
    model = (centred @ v.T @ v + c.linear.mean).reshape(images.shape)
    np.testing.assert_allclose(scorer.linear_reconstruction(images), model, atol=2e-6)
    residual, level = (t.numpy() for t in residual_maps(images, model.astype("f4"), 1.0))
    chi2 = np.empty_like(residual)
    for b in range(3):
        chi2[..., b] = residual[..., b] ** 2 / variance_at(
            level[..., b], c.residuals["linear"].edges[b], c.residuals["linear"].variances[b]
        )
    k = round(c.settings.top_fraction * 16 * 16 * 3)
    expected = np.sort(chi2.reshape(4, -1), axis=1)[:, -k:].mean(axis=1)
    np.testing.assert_allclose(scorer.linear_score(images), expected, rtol=2e-4)


def m_estimate_reference(mean, components, images, iterations, scale=4.0):
    """The robust projection in float64 numpy, one image at a time: the least-squares
    coefficients, each band's MAD-sigma of their residual on every other row and column, then
    ``iterations`` projections of the pseudo-observations model + psi(residual) (Cauchy's psi)."""
    v = components.astype("f8")
    out = []
    for image in images.astype("f8"):
        x = image.ravel() - mean
        c = v @ x
        r = (x - c @ v).reshape(image.shape)
        s = scale * 1.4826 * np.median(np.abs(r[::2, ::2]).reshape(-1, image.shape[-1]), axis=0)
        for _ in range(iterations):
            r = (x - c @ v).reshape(image.shape)
            c = c + v @ (r / (1.0 + (r / s) ** 2)).ravel()
        out.append((c @ v + mean).reshape(image.shape))
    return np.stack(out)


def test_robust_projection_is_the_m_estimate():
    """The default linear model: 3 steps, against float64 numpy (float32 sums of 768 products
    move it by ~1e-6 of the pixel values); after many steps the weighted normal equations hold
    (sum over pixels of w r v = 0, w = 1 / (1 + (r / s)^2)): the M-estimate."""
    from tfanomaly.models.noise_score import project_linear
    from tfanomaly.models.score_fit import linear_model

    c = four_term_calibration(robust_iterations=3)
    assert ScoreSettings().robust_iterations == 3
    images = np.random.default_rng(8).uniform(0, 1, (5, 16, 16, 3)).astype("f4")
    mean, v = c.linear.mean.astype("f8"), c.linear.components.astype("f8")
    expected = m_estimate_reference(mean, c.linear.components, images, 3)
    got = NoiseAwareScore(c).linear_reconstruction(images).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.abs(got - linear_model(c.linear.mean, c.linear.components, images, 0)).max() > 1e-3
    # The calibration's numpy path is the same function.
    np.testing.assert_allclose(
        linear_model(c.linear.mean, c.linear.components, images, 3), got, atol=1e-6
    )
    converged = project_linear(c.linear.mean, c.linear.components, images, 60).numpy()
    least = m_estimate_reference(mean, c.linear.components, images, 0)
    for image, model, first in zip(images.astype("f8"), converged, least, strict=True):
        r0 = image - first
        s = 4.0 * 1.4826 * np.median(np.abs(r0[::2, ::2]).reshape(-1, 3), axis=0)
        r = image - model
        w = 1.0 / (1.0 + (r / s) ** 2)
        normal = v @ (w * r).ravel()
        assert np.abs(normal).max() < 1e-4 * np.abs(v @ r.ravel()).max() + 1e-5


def test_robust_projection_leaves_a_cosmic_ray_in_the_residual():
    """A galaxy the model spans exactly, plus noise and one hot pixel: least squares bends the
    model towards the ray (and away from the galaxy elsewhere); the reweighted fit recovers the
    galaxy and keeps the ray whole in the residual."""
    from tfanomaly.models.noise_score import project_linear

    rng = np.random.default_rng(3)
    axes, _ = np.linalg.qr(rng.normal(size=(16 * 16, 4)))
    components = axes.T.astype("f4")
    clean = (rng.normal(size=(1, 4)) * 5.0 @ components).reshape(1, 16, 16, 1)
    noisy = clean + 0.01 * rng.normal(size=clean.shape)
    hit = noisy.copy()
    hit[0, 7, 9, 0] += 5.0
    mean = np.zeros(256, "f4")

    def fit(images, iterations):
        return project_linear(mean, components, images.astype("f4"), iterations).numpy()

    for iterations in (0, 3):
        # How far the model is from the galaxy: with the ray, and without it (the noise's share).
        misfit = np.abs(fit(hit, iterations) - clean).max()
        noise_only = np.abs(fit(noisy, iterations) - clean).max()
        kept = (hit - fit(hit, iterations))[0, 7, 9, 0] / 5.0
        if iterations == 0:
            assert misfit > 20 * noise_only and kept < 0.995
        else:
            assert misfit < 1.2 * noise_only and kept > 0.998


def expected_extended(c, images, model, stride):
    """The extended term written with scipy: the residual and model through the wide Gaussian at
    every ``stride``-th pixel, chi^2 over the binned scatter, mean of the top fraction."""
    sigma = c.settings.extended_sigma
    radius = len(gaussian_kernel(sigma)) // 2
    kwargs = {"sigma": (0, sigma, sigma, 0), "mode": "reflect", "radius": (0, radius, radius, 0)}
    residual = gaussian_filter(images - model, **kwargs)[:, ::stride, ::stride]
    level = gaussian_filter(model, **kwargs)[:, ::stride, ::stride]
    chi2 = np.empty_like(residual)
    for b in range(3):
        chi2[..., b] = residual[..., b] ** 2 / variance_at(
            level[..., b], c.residuals["extended"].edges[b], c.residuals["extended"].variances[b]
        )
    k = round(c.settings.extended_top_fraction * chi2[0].size)
    return np.sort(chi2.reshape(len(images), -1), axis=1)[:, -k:].mean(axis=1)


def test_extended_term_is_the_linear_residual_through_the_wide_filter():
    """The extended term: the PCA model's residual smoothed by ``extended_sigma`` (scipy's
    Gaussian filter) at every ``extended_stride``-th pixel, over its own binned scatter, mean of
    the top ``extended_top_fraction``."""
    c = four_term_calibration()
    scorer = NoiseAwareScore(c)
    images = np.random.default_rng(17).uniform(0, 1, (4, 16, 16, 3)).astype("f4")
    model = scorer.linear_reconstruction(images).numpy().astype("f8")
    settings = c.settings
    assert settings.extended_sigma == 3.0 and settings.extended_top_fraction == 0.3
    assert settings.extended_stride == c.residuals["extended"].stride == 2
    expected = expected_extended(c, images, model, 2)
    np.testing.assert_allclose(scorer.extended_score(images), expected, rtol=2e-4)
    # The same model, two filters: the linear term reads the 1-px one.
    assert not np.allclose(scorer.linear_score(images), expected, rtol=0.1)
    # The wide filter leaves little between the pixels read: every pixel gives nearly the same.
    every = expected_extended(c, images, model, 1)
    np.testing.assert_allclose(expected, every, rtol=0.1)
    assert not np.allclose(expected, every, rtol=1e-4)


def saved_without(c, folder, *keys):
    """``c`` saved as ``folder/c.npz``, and as ``folder/old.npz`` without the settings ``keys`` (a
    file written before those settings existed): the old file's path."""
    c.save(folder / "c.npz")
    with np.load(folder / "c.npz") as data:
        files = {k: data[k] for k in data.files}
    settings = json.loads(str(files["settings"]))
    for key in keys:
        settings.pop(key)
    files["settings"] = json.dumps(settings)
    np.savez(folder / "old.npz", **files)
    return folder / "old.npz"


def test_older_calibrations_read_the_extended_map_at_every_pixel(tmp_path):
    """A calibration written before the extended term's stride reads every pixel, as it did."""
    old = Calibration.load(saved_without(four_term_calibration(), tmp_path, "extended_stride"))
    assert old.settings.extended_stride == old.residuals["extended"].stride == 1
    images = np.random.default_rng(17).uniform(0, 1, (4, 16, 16, 3)).astype("f4")
    scorer = NoiseAwareScore(old)
    model = scorer.linear_reconstruction(images).numpy().astype("f8")
    np.testing.assert_allclose(
        scorer.extended_score(images), expected_extended(old, images, model, 1), rtol=2e-4
    )
    with pytest.raises(ConfigError, match=r"extended stride must be 1 to the extended sigma"):
        ScoreSettings(extended_stride=4).validate()


def test_a_calibration_without_the_extended_numbers_is_refused(tmp_path):
    c = four_term_calibration()
    del c.residuals["extended"]
    c.save(tmp_path / "c.npz")
    with pytest.raises(InputError, match="inconsistent with its terms"):
        Calibration.load(tmp_path / "c.npz")


def test_linear_fit_recovers_a_low_rank_survey():
    from tfanomaly.models.score_fit import fit_linear, fit_linear_levels, linear_model

    rng = np.random.default_rng(13)
    basis = rng.normal(size=(3, 8 * 8 * 2))
    images = (rng.normal(size=(300, 3)) @ basis).reshape(300, 8, 8, 2) + 0.01 * rng.normal(
        size=(300, 8, 8, 2)
    )
    settings, images = ScoreSettings(linear_components=3, n_bins=4), images.astype("f4")
    mean, components = fit_linear(settings, images)
    models = linear_model(mean, components, images, settings.robust_iterations)
    edges, variances = fit_linear_levels(settings, images, models, 32, rng)
    assert components.shape == (3, 128) and edges.shape == (2, 3) and variances.shape == (2, 4)
    # The three axes span the basis; what is left is the smoothed white noise.
    _, singular, _ = np.linalg.svd(basis @ (np.eye(128) - components.T @ components))
    assert singular.max() < 0.05 * np.linalg.norm(basis, axis=1).min()
    assert variances.max() < 1e-3


def test_linear_components_follow_the_cutout_area_unless_given():
    from tfanomaly.models.score_fit import fit_linear

    auto = ScoreSettings()
    assert auto.linear_components == 0
    sizes = {16: 50, 32: 50, 40: 78, 48: 112, 64: 150, 96: 150}
    assert {size: auto.linear_components_for(size, size) for size in sizes} == sizes
    assert auto.linear_components_for(32, 64) == 100
    assert ScoreSettings(linear_components=7).linear_components_for(48, 48) == 7
    with pytest.raises(ConfigError, match="linear components"):
        ScoreSettings(linear_components=-1).validate()
    # The fit takes that many axes, bounded by the cutouts it has.
    images = np.random.default_rng(31).normal(size=(300, 48, 48, 1)).astype("f4")
    assert fit_linear(auto, images)[1].shape == (112, 48 * 48)
    assert fit_linear(auto, images[:60])[1].shape == (59, 48 * 48)


def test_morphology_term_is_the_knn_distance_leaving_out_the_image_itself():
    from sklearn.neighbors import NearestNeighbors

    c = four_term_calibration()
    scorer = NoiseAwareScore(c)
    images = np.random.default_rng(8).uniform(0, 1, (5, 16, 16, 3)).astype("f4")
    points = scorer.morphology_features(images).numpy()
    reference = c.morphology.reference.copy()
    reference[0] = points[0]  # image 0 is part of the reference set, as calibration images are
    c.morphology.reference = reference
    scorer = NoiseAwareScore(c)
    distances, _ = NearestNeighbors(n_neighbors=4).fit(reference).kneighbors(points)
    expected = distances[:, :3].mean(axis=1)
    expected[0] = distances[0, 1:].mean()
    np.testing.assert_allclose(scorer.morphology_score(images), expected, rtol=1e-4, atol=1e-5)


def test_a_calibration_made_before_the_segment_gini_reads_the_parameters_before_it(tmp_path):
    """The shape parameters of a calibration made before the last column (the segment Gini) are
    the first ones of today's, standardised by its own numbers; its distances come from them
    alone, after a save and a load too."""
    from sklearn.neighbors import NearestNeighbors

    c = four_term_calibration()
    images = np.random.default_rng(8).uniform(0, 1, (5, 16, 16, 3)).astype("f4")
    now = NoiseAwareScore(c).morphology_features(images).numpy()
    m = c.morphology
    c.morphology = KnnReference(m.centre[:-1], m.scale[:-1], m.reference[:, :-1])
    c.save(tmp_path / "calibration.npz")
    before = NoiseAwareScore(Calibration.load(tmp_path / "calibration.npz"))
    points = before.morphology_features(images).numpy()
    assert points.shape == (5, now.shape[1] - 1)
    np.testing.assert_array_equal(points, now[:, :-1])
    distances, _ = NearestNeighbors(n_neighbors=3).fit(m.reference[:, :-1]).kneighbors(points)
    np.testing.assert_allclose(
        before.morphology_score(images), distances.mean(axis=1), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("combine", ["mean", "max", "softmax"])
def test_four_terms_combine_by_mean_max_or_softmax_of_standardised_logs(combine):
    c = four_term_calibration(combine)
    images = np.random.default_rng(9).uniform(0, 1, (6, 16, 16, 3)).astype("f4")
    recon = np.clip(images + 0.05, 0, 1).astype("f4")
    features = np.random.default_rng(10).normal(size=(6, 12)).astype("f4")
    out = {k: v.numpy() for k, v in NoiseAwareScore(c)(images, recon, features, images).items()}
    terms = np.stack([out[f"{t}_score"] for t in c.terms], axis=1)
    z = (np.log(terms) - c.standard.centres) / c.standard.scales
    scorer = NoiseAwareScore(c)
    np.testing.assert_allclose(
        scorer.standardised([tf.constant(t) for t in terms.T]), z, rtol=1e-5, atol=1e-5
    )
    # The calibration's weights: feature 0.5, extended and morphology 1.5, the rest 1, normalised.
    weights = np.array([1.0, 0.5, 1.0, 1.5, 1.5]) / 5.5
    assert c.terms == ALL
    np.testing.assert_allclose(c.weights, weights, rtol=1e-6)
    np.testing.assert_allclose(out["score"], combined(z, weights, combine), rtol=1e-4, atol=1e-4)
    if combine == "softmax":  # between the weighted mean and the max
        assert (out["score"] >= z @ weights - 1e-4).all()
        assert (out["score"] <= z.max(axis=1) + 1e-4).all()
    assert c.score_drift(1e-4) == pytest.approx(
        1e-4 / c.standard.scales.min()
        if combine != "mean"
        else np.sum(weights * 1e-4 / c.standard.scales),
        rel=1e-5,
    )


def test_term_weights_parse_validate_and_default_to_equal_in_older_calibrations(tmp_path):
    from tfanomaly.models.score_config import format_term_weights, parse_term_weights

    assert parse_term_weights("feature=0.5, morphology=2") == (
        ("feature", 0.5),
        ("morphology", 2.0),
    )
    assert parse_term_weights("equal") == parse_term_weights("") == ()
    default = ScoreSettings().term_weights
    assert parse_term_weights(format_term_weights(default)) == default
    assert format_term_weights(()) == "equal"
    with pytest.raises(ConfigError, match="term weight 'feature:0.5': write TERM=WEIGHT"):
        parse_term_weights("feature:0.5")
    with pytest.raises(ConfigError, match="term weight 'linear=x'"):
        parse_term_weights("linear=x")
    for bad, message in [
        ((("colour", 1.0),), "each of residual"),
        ((("linear", 1.0), ("linear", 2.0)), "each of residual"),
        ((("linear", -1.0),), r"\[0, 100\], got linear=-1"),
        (tuple((t, 0.0) for t in ScoreSettings().terms), "all have weight 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ScoreSettings(term_weights=bad).validate()
    # Three terms of weight 1, 1 and 2: 0.25, 0.25, 0.5.
    three = calibration(
        ScoreSettings(
            terms=("linear", "extended", "morphology"),
            term_weights=(("morphology", 2.0), ("feature", 9.0)),
        )
    )
    np.testing.assert_allclose(three.weights, [0.25, 0.25, 0.5])
    # A calibration written before the weights: every term weighs the same, as it did.
    c = four_term_calibration()
    old = saved_without(c, tmp_path, "term_weights")
    np.testing.assert_allclose(Calibration.load(old).weights, np.full(5, 0.2))
    np.testing.assert_allclose(Calibration.load(tmp_path / "c.npz").weights, c.weights)


def test_a_two_term_calibration_file_still_scores(tmp_path):
    """A calibration.npz written before the linear and morphology terms: those come out as
    zeros and the default score is the two-term one it was."""
    c = calibration()
    c.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as data:
        two = ("residual.", "features.", "standard.", "settings", "info", "format")
        old = {k: data[k] for k in data.files if k.startswith(two)}
    settings = json.loads(str(old["settings"]))
    for key in (
        "terms",
        "combine",
        "linear_components",
        "morphology_neighbours",
        "reference_size",
        "extended_sigma",
        "extended_top_fraction",
    ):
        settings.pop(key)
    old["settings"] = json.dumps(settings)
    np.savez(tmp_path / "old.npz", **old)
    back = Calibration.load(tmp_path / "old.npz")
    assert back.terms == ("residual", "feature") and back.settings.terms == back.terms
    images = np.random.default_rng(11).uniform(0, 1, (3, 16, 16, 3)).astype("f4")
    features = np.random.default_rng(12).normal(size=(3, 12)).astype("f4")
    out = NoiseAwareScore(back)(images, images * 0.9, features)
    for term in ("linear", "extended", "morphology"):
        assert not out[f"{term}_score"].numpy().any()
    expected = NoiseAwareScore(c).combine([out["residual_score"], out["feature_score"]])
    np.testing.assert_allclose(out["score"], expected, rtol=1e-6)


def test_fits_recover_known_noise_and_feature_structure():
    rng = np.random.default_rng(4)
    levels = rng.uniform(0, 1, (2, 200_000))
    sigma = 0.05 + 0.3 * levels  # noise grows with brightness, differently per band
    sigma[1] *= 2
    residuals = sigma * rng.standard_normal(levels.shape)
    edges, variances = fit_levels(ScoreSettings(n_bins=10), residuals, levels)
    centres = (np.arange(10) + 0.5) / 10
    truth = (0.05 + 0.3 * centres) ** 2 * np.array([[1.0], [4.0]])
    np.testing.assert_allclose(variances, truth, rtol=0.08)
    np.testing.assert_allclose(edges[0], np.arange(1, 10) / 10, atol=0.01)

    axes, _ = np.linalg.qr(rng.normal(size=(30, 2)))
    features = (rng.normal(size=(20_000, 2)) * [4.0, 2.0]) @ axes.T
    features += 0.5 * rng.normal(size=features.shape)  # isotropic variance 0.25
    mean, components, eigenvalues, rest = fit_features(ScoreSettings(n_components=2), features)
    np.testing.assert_allclose(eigenvalues, [16.25, 4.25], rtol=0.05)
    assert rest == pytest.approx(0.25, rel=0.05)
    np.testing.assert_allclose(np.abs(components @ axes), np.eye(2), atol=0.02)
    assert np.abs(mean).max() < 0.1
    assert robust_log_scale(np.exp(rng.normal(1.0, 2.0, 100_000))) == pytest.approx(
        (1.0, 2.0), rel=0.03
    )


def test_score_finds_a_point_source_the_reconstruction_lacks():
    """A noise-aware score on a toy problem: smooth 'galaxies' reconstructed exactly, sky noise,
    and in a tenth of the images an unresolved knot that the reconstruction does not have."""
    rng = np.random.default_rng(5)
    n, size = 400, 24
    y, x = np.mgrid[:size, :size]
    width = rng.uniform(2, 5, n)[:, None, None]
    truth = np.exp(-((x - 12) ** 2 + (y - 12) ** 2) / (2 * width**2))[..., None] * [0.8, 0.6, 0.4]
    images = truth + 0.1 * rng.standard_normal(truth.shape)
    anomalous = np.arange(n) % 10 == 0
    knot = 0.3 * np.exp(-((x - 6) ** 2 + (y - 16) ** 2) / 2.0)
    images[anomalous] += knot[..., None]
    settings = ScoreSettings(n_bins=6, n_components=4, terms=TWO)
    residual, level = (t.numpy() for t in residual_maps(images.astype("f4"), truth.astype("f4"), 1))
    edges, variances = fit_levels(settings, residual.reshape(-1, 3).T, level.reshape(-1, 3).T)
    c = calibration(settings, dims=12, k=4)
    c.residuals["residual"] = ResidualTerm.fitted(settings, "residual", edges, variances)
    scores = NoiseAwareScore(c).residual_score(images.astype("f4"), truth.astype("f4")).numpy()
    assert roc_auc_score(anomalous, scores) > 0.99
    # The paper's L1 on the same residual is dominated by the noise and does much worse.
    paper = np.abs(images - truth).sum(axis=(1, 2, 3))
    assert roc_auc_score(anomalous, paper) < 0.8


def assert_same_numbers(got: Calibration, expected: Calibration) -> None:
    """Every part and residual term of two calibrations holds the same numbers."""
    assert set(got.residuals) == set(expected.residuals)
    assert got.arrays().keys() == expected.arrays().keys()
    for key, value in expected.arrays().items():
        np.testing.assert_array_equal(got.arrays()[key], value, err_msg=key)


def test_calibration_file_round_trip_and_errors(tmp_path):
    c = calibration()
    c.save(tmp_path / "c.npz")
    back = Calibration.load(tmp_path / "c.npz")
    assert back.settings == c.settings and back.info == c.info
    assert_same_numbers(back, c)
    four = four_term_calibration()
    four.save(tmp_path / "four.npz")
    back = Calibration.load(tmp_path / "four.npz")
    assert back.terms == four.terms and back.settings == four.settings
    assert_same_numbers(back, four)
    assert back.residuals["extended"].sigma == four.settings.extended_sigma
    assert back.residuals["linear"].top_fraction == four.settings.top_fraction
    with pytest.raises(ConfigError, match="score terms"):
        ScoreSettings(terms=("residual", "colour")).validate()
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="bad.npz: not a readable tfanomaly calibration"):
        Calibration.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="top fraction"):
        ScoreSettings(top_fraction=0).validate()
    with pytest.raises(ConfigError, match=r"reference trim must be in \[0, 1\), got 1.0"):
        ScoreSettings(reference_trim=1.0).validate()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("calibrate"), n_objects=150, seed=4)


def test_calibrate_stage_of_a_run(tiny_run, tmp_path):
    """train encoder calibrates on its data; `calibrate` redoes it with other settings."""
    from tfanomaly.pipelines.calibrate import calibrate

    run = tiny_run / "run"
    first = Calibration.load(run / "calibration.npz")
    assert first.info["count"] == 150 and first.settings == ScoreSettings()
    assert first.features.components.shape == (
        ScoreSettings().n_components,
        first.features.mean.shape[0],
    )
    assert first.terms == ScoreSettings().terms and first.linear.mean.shape == (16 * 16 * 3,)
    # Fewer cutouts than reference_size: all of them, the 10% farthest from the others left out.
    assert first.morphology.reference.shape[0] == 135 and first.info["morphology_trimmed"] == 15
    # Every term of a real (if untrained) run carries information: all healthy, nominal weights.
    assert set(first.health) == set(first.terms) and not first.degenerate_terms()
    np.testing.assert_array_equal(first.weights, first.nominal_weights)
    assert len(first.standard.scales) == len(first.terms) == 4 and (first.standard.scales > 0).all()
    assert (np.diff(first.residuals["residual"].edges, axis=1) >= 0).all() and (
        first.residuals["residual"].variances > 0
    ).all()
    # The extended term's own bins, on the levels of the wider filter.
    assert (
        first.residuals["extended"].edges.shape == first.residuals["linear"].edges.shape == (3, 23)
    )
    assert (np.diff(first.residuals["extended"].edges, axis=1) >= 0).all()
    assert (first.residuals["extended"].variances > 0).all()
    assert not np.allclose(
        first.residuals["extended"].variances, first.residuals["linear"].variances
    )
    settings = ScoreSettings(smooth_sigma=1.5, top_fraction=0.05, n_components=8)
    messages = []
    summary = calibrate(
        run,
        config=CalibrateConfig(settings=settings, fit_size=100),
        progress=False,
        echo=messages.append,
    )
    again = Calibration.load(summary["path"])
    assert again.settings == settings and again.info["count"] == 100
    assert again.features.components.shape[0] == 8 and "calibrated" in messages[0]
    info = json.loads(json.dumps(again.info))
    assert info["inversion"]["steps"] == 0
    with pytest.raises(ConfigError, match="no trained encoder"):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "run.json").write_text('{"gan": {}, "model": {}, "data": {}}')
        calibrate(tmp_path / "run", progress=False)


def test_calibrate_counts_the_copies_it_leaves_out_of_the_morphology_reference(
    tiny_run, tmp_path, monkeypatch
):
    """Every other calibration cutout a flipped copy of the one before it (as overlapping tracts
    give): the morphology reference keeps one of each, and the stage says how many it left out."""
    import shutil

    from tfanomaly.models.morphology import morphology
    from tfanomaly.pipelines import calibrate as stage

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "run", run)

    def with_copies(flux):
        flux = np.array(flux)
        pairs = len(flux) // 2
        flux[1 : 2 * pairs : 2] = flux[0 : 2 * pairs : 2, :, ::-1]
        return morphology(flux)

    monkeypatch.setattr(stage, "morphology", with_copies)
    messages = []
    summary = stage.calibrate(
        run, config=CalibrateConfig(fit_size=100), progress=False, echo=messages.append
    )
    c = Calibration.load(summary["path"])
    assert summary["morphology_copies"] == c.info["morphology_copies"] == 50
    # One of each pair, then the 10% farthest from the others left out (a line each).
    assert c.morphology.reference.shape[0] == 45 and c.info["morphology_trimmed"] == 5
    assert messages[1].startswith("morphology reference: 50 cutouts left out as copies")
    assert messages[2].startswith("morphology reference: 45 cutouts; the 5 farthest")


def test_calibrate_leaves_constant_cutouts_out_of_its_statistics(tiny_run, tmp_path, monkeypatch):
    """A quarter of the calibration cutouts constant (off the footprint: every pixel 0): the
    morphology reference and every term's standardisation are fitted on the others, so the
    constant ones neither crowd the reference as copies of each other nor move the centres."""
    import shutil

    import tensorflow as tf

    from tfanomaly.pipelines import calibrate as stage

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "run", run)
    plain = stage.cutouts

    def with_blanks(*args, **kwargs):
        for batch, flux in plain(*args, **kwargs):
            blank = np.arange(len(flux)) % 4 == 0
            flux = tf.where(blank[:, None, None, None], 0.0, flux)
            image = tf.where(blank[:, None, None, None], 0.0, batch["image"])
            yield {**batch, "image": image}, flux

    counted, standardisation = [], stage.standardisation

    def counting(values):
        counted.append({key: len(np.concatenate(column)) for key, column in values.items()})
        return standardisation(values)

    monkeypatch.setattr(stage, "standardisation", counting)
    monkeypatch.setattr(stage, "cutouts", with_blanks)
    summary = stage.calibrate(run, config=CalibrateConfig(fit_size=100), progress=False, echo=quiet)
    c = Calibration.load(summary["path"])
    assert summary["count"] == 100 and counted == [dict.fromkeys(counted[0], 75)]
    # 75 cutouts with light, no copy among them (the 25 constant ones are not 24 copies of one),
    # less the 10% farthest from the others.
    assert c.info["morphology_copies"] == 0 and c.info["morphology_trimmed"] == 7
    assert c.morphology.reference.shape[0] == 68
    assert not c.degenerate_terms()
    scorer = NoiseAwareScore(c)
    blanks = np.zeros((3, 16, 16, 3), "f4") + np.array([0.0, 1.0, -2.0], "f4")[:, None, None, None]
    np.testing.assert_array_equal(scorer.morphology_score(blanks).numpy(), 0.0)


def test_calibrate_leaves_out_the_noise_model_terms_of_8_bit_images_per_image_scaled(
    tiny_run, tmp_path
):
    """A data set whose health at ingest found images scaled one by one and quantised to 8 bits
    (as ML-ready catalogues ship them): calibrate weighs the linear, extended and residual-shape
    terms 0 and says why; --noise-terms keep weighs them as before."""
    import shutil

    from tfanomaly.data.manifest import MANIFEST
    from tfanomaly.pipelines.calibrate import calibrate

    data, run = tmp_path / "ds", tmp_path / "run"
    shutil.copytree(tiny_run / "ds", data)
    shutil.copytree(tiny_run / "run", run)
    manifest = json.loads((data / MANIFEST).read_text())
    band = {"step": 1 / 255, "levels": 256, "at_minimum": 0.6, "zero": 0.6, "clipped": True}
    manifest["health"] = {
        **(manifest.get("health") or {}),
        "bands": dict.fromkeys(manifest["bands"], band),
        "normalised": {"by": "max", "value": 1.0},
    }
    (data / MANIFEST).write_text(json.dumps(manifest))
    messages = []
    summary = calibrate(
        run, data, CalibrateConfig(fit_size=100), progress=False, echo=messages.append
    )
    c = Calibration.load(summary["path"])
    assert set(c.degenerate_terms()) == {"linear", "extended", "residual_shape"}
    assert {h.reason for h in c.degenerate_terms().values()} == {"noise_model"}
    weights = dict(zip(c.terms, c.weights, strict=True))
    assert weights["linear"] == weights["extended"] == weights["residual_shape"] == 0
    assert weights["morphology"] == 1
    assert any("term 'linear' left out" in m and "normalised one by one" in m for m in messages)
    kept = calibrate(
        run, data, CalibrateConfig(fit_size=100, noise_terms="keep"), progress=False, echo=quiet
    )
    assert not Calibration.load(kept["path"]).degenerate_terms()


def test_calibrate_leaves_out_a_quantised_term_and_score_records_the_weights(
    tiny_run, tmp_path, monkeypatch
):
    """A term that takes three values on the calibration set (as on 8-bit, zero-clipped images)
    is found degenerate by the stage: the line, the file's record, weight 0 in the score and in
    the results' attributes."""
    import shutil

    from tfanomaly.pipelines.calibrate import calibrate
    from tfanomaly.pipelines.config import ScoreConfig
    from tfanomaly.pipelines.score import score
    from tfanomaly.results.catalog import read_results

    run = tmp_path / "run"
    shutil.copytree(tiny_run / "run", run)

    def three_valued(self, images, variance=None, mask=None, model=None):
        index = tf.cast(tf.reduce_sum(images, axis=[1, 2, 3]) * 1e3, tf.int64) % 3
        return tf.gather(tf.constant([0.25, 0.5, 1.5]), index)

    with monkeypatch.context() as patch:
        patch.setattr(NoiseAwareScore, "linear_score", three_valued)
        messages = []
        summary = calibrate(
            run, config=CalibrateConfig(fit_size=100), progress=False, echo=messages.append
        )
    assert messages[1] == (
        "term 'linear' left out of the default score: 100% of calibration cutouts share 3 values "
        "(quantised images?)"
    )
    # the other terms are healthy
    assert [m for m in messages if "left out of the default score" in m] == [messages[1]]
    c = Calibration.load(summary["path"])
    assert c.health["linear"].reason == "quantised" and c.health["linear"].levels == 3
    assert all(c.health[t].healthy for t in c.terms if t != "linear")
    nominal = dict(zip(c.terms, c.nominal_weights.astype(float), strict=True))
    weights = {
        t: 0.0 if t == "linear" else w / (1.0 - nominal["linear"]) for t, w in nominal.items()
    }
    assert summary["term_weights"] == pytest.approx(weights)
    assert summary["degenerate_terms"] == {"linear": c.health["linear"].detail}
    # Scored with the real linear term again: computed and stored, but not in the score.
    score(run, tiny_run / "ds", tmp_path / "scores", ScoreConfig(batch_size=64), progress=False)
    columns, attrs = read_results(tmp_path / "scores")
    assert json.loads(attrs["term_weights"]) == pytest.approx(weights)
    assert json.loads(attrs["degenerate_terms"]) == {"linear": c.health["linear"].detail}
    terms = np.stack([columns[f"{t}_scores"] for t in c.terms], axis=1)
    z = (np.log(terms) - c.standard.centres) / c.standard.scales
    assert np.isfinite(z).all() and (columns["linear_scores"] > 0).all()
    assert c.settings.combine == "softmax"  # the default: tau log sum w exp(z / tau)
    expected = combined(z, c.weights, "softmax")
    np.testing.assert_allclose(columns["scores"], expected, atol=c.score_drift(1e-4) + 1e-5, rtol=0)


def test_variance_path_is_the_true_chi2_and_ignores_masked_pixels():
    """With planes and no model misfit, chi2_map is pixel_noise.smoothed_chi2's true chi^2; a
    masked pixel's value changes nothing; the fallback without planes is the scatter path."""
    from tfanomaly.models.pixel_noise import smoothed_chi2

    c = calibration()
    c.info = {"planes": ["variance", "mask"]}
    c.residuals["residual"].plane_variances = np.zeros_like(c.residuals["residual"].variances)
    c.plane_standard = Standardisation(c.standard.centres + 1.0, c.standard.scales)
    scorer = NoiseAwareScore(c)
    rng = np.random.default_rng(21)
    images = rng.uniform(0, 1, (3, 16, 16, 3)).astype("f4")
    recon = rng.uniform(0, 0.6, (3, 16, 16, 3)).astype("f4")
    variance = rng.uniform(0.01, 0.05, images.shape).astype("f4")
    mask = np.zeros(images.shape, bool)
    mask[0, 5, 6, 1] = mask[2, 10, 3, :] = True
    truth = smoothed_chi2(images - recon, variance, mask, 1.0)["chi2"].numpy()
    np.testing.assert_allclose(scorer.chi2_map(images, recon, variance, mask), truth, rtol=1e-5)
    spoilt = images.copy()
    spoilt[mask] = 1e6
    np.testing.assert_allclose(
        scorer.residual_score(spoilt, recon, variance, mask),
        scorer.residual_score(images, recon, variance, mask),
        rtol=1e-6,
    )
    features = rng.normal(size=(3, 12)).astype("f4")
    with_planes = scorer(images, recon, features, None, variance, mask)
    fallback = scorer(images, recon, features)
    np.testing.assert_allclose(fallback["residual_score"], scorer.residual_score(images, recon))
    assert scorer.uses_planes(variance, mask) and not scorer.uses_planes(variance)
    expected = scorer.combine([with_planes["residual_score"], with_planes["feature_score"]], True)
    np.testing.assert_allclose(with_planes["score"], expected, rtol=1e-6)


def shape_calibration(n_reference=40, seed=9):
    """The hand-made calibration with the residual-shape term's reference set."""
    from tfanomaly.models.residual_shape import feature_names

    rng = np.random.default_rng(seed)
    c = calibration(
        ScoreSettings(
            n_bins=4,
            n_components=3,
            morphology_neighbours=3,
            terms=("residual", "feature", "residual_shape"),
            term_weights=(),
        )
    )
    n = len(feature_names(3))
    c.residual_shape = KnnReference(
        rng.normal(size=n).astype("f4"),
        rng.uniform(0.5, 2.0, n).astype("f4"),
        rng.normal(size=(n_reference, n)).astype("f4"),
    )
    c.standard = Standardisation(np.zeros(3, "f4"), np.ones(3, "f4"))
    return c


@pytest.mark.parametrize("units", ["asinh", "clip"])
def test_residual_shape_term_is_the_knn_distance_of_the_standardised_descriptors(tmp_path, units):
    """The k-NN distance of the descriptors' robust z in the term's units (``asinh``, the
    default, or ``clip``), a calibration cutout's own descriptors left out as a copy."""
    from sklearn.neighbors import NearestNeighbors

    from tfanomaly.models.residual_shape import residual_shape
    from tfanomaly.models.score_fit import knn_units

    c = shape_calibration()
    c.settings = ScoreSettings(**{**c.settings.to_dict(), "residual_shape_units": units})
    c.save(tmp_path / "c.npz")  # the term's reference set is part of the file
    c = Calibration.load(tmp_path / "c.npz")
    assert c.settings.residual_shape_units == units
    rng = np.random.default_rng(10)
    images = rng.uniform(0, 1, (5, 16, 16, 3)).astype("f4")
    images[4] = 0.25  # a constant cutout: no misfit, no shape
    models = rng.uniform(0, 1, images.shape).astype("f4")
    shape = residual_shape(images, models).numpy()
    points = knn_units((shape - c.residual_shape.centre) / c.residual_shape.scale, units)
    reference = c.residual_shape.reference.copy()
    reference[0] = points[0]  # a calibration cutout's own descriptors are left out as a copy
    c.residual_shape.reference = reference
    scorer = NoiseAwareScore(c)
    distances, _ = NearestNeighbors(n_neighbors=4).fit(reference).kneighbors(points)
    expected = distances[:, :3].mean(axis=1)
    expected[0] = distances[0, 1:].mean()
    expected[4] = 0.0
    np.testing.assert_allclose(
        scorer.residual_shape_score(images, shape), expected, rtol=1e-4, atol=1e-5
    )
    critic = rng.normal(size=(5, c.features.mean.shape[0])).astype("f4")
    out = scorer(images, models, critic)
    np.testing.assert_allclose(out["residual_shape"], shape, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["residual_shape_score"], expected, rtol=1e-4, atol=1e-5)
    # a calibration file that names the term without its reference set is refused
    c.residual_shape = None
    c.save(tmp_path / "cut.npz")
    with pytest.raises(InputError, match="inconsistent"):
        Calibration.load(tmp_path / "cut.npz")


def test_calibrate_fits_the_residual_shape_reference_and_score_writes_the_term(tiny_run):
    from tfanomaly.pipelines.calibrate import calibrate

    run = tiny_run / "run"
    settings = ScoreSettings(terms=("feature", "linear", "morphology", "residual_shape"))
    summary = calibrate(
        run, config=CalibrateConfig(settings=settings), progress=False, echo=lambda _: None
    )
    c = Calibration.load(summary["path"])
    # 150 cutouts, the 10% farthest from their neighbours left out, as the morphology's
    assert c.residual_shape.reference.shape[0] == 135 and c.info["residual_shape_trimmed"] == 15
    assert c.residual_shape.reference.shape[1] == c.residual_shape.centre.shape[0] == 18
    # in the default units, asinh of the robust z: no value beyond the clip's image
    assert c.settings.residual_shape_units == "asinh"
    # (whose robust z reach past it here: a reference in the robust z itself would not pass)
    assert np.abs(c.residual_shape.reference).max() <= np.arcsinh(50.0) + 1e-5
    assert np.abs(np.sinh(c.residual_shape.reference)).max() > np.arcsinh(50.0)
    assert "residual_shape" in c.health and c.health["residual_shape"].healthy
    assert len(c.standard.scales) == 4 and c.standard.scales[3] > 0
