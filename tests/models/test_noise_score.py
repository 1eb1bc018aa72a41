"""The default score's pieces against numpy/scipy references: the matched filter, the brightness-
binned chi^2, the top-fraction summary, the probabilistic-PCA Mahalanobis distance, the fits, the
calibration file, and the `calibrate` stage of a run."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import build_tiny_run
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.noise_score import (
    Calibration,
    NoiseAwareScore,
    ScoreSettings,
    fit_features,
    fit_levels,
    gaussian_kernel,
    residual_maps,
    robust_log_scale,
    smooth,
)


def calibration(settings=None, bands=3, dims=12, k=3, seed=0):
    """A hand-made calibration with distinct numbers everywhere."""
    settings = settings or ScoreSettings(n_bins=4, n_components=k)
    rng = np.random.default_rng(seed)
    axes, _ = np.linalg.qr(rng.normal(size=(dims, k)))
    return Calibration(
        settings=settings,
        edges=np.sort(rng.uniform(0.0, 0.5, (bands, settings.n_bins - 1)), axis=1).astype("f4"),
        variances=rng.uniform(0.5, 2.0, (bands, settings.n_bins)).astype("f4"),
        feature_mean=rng.normal(size=dims).astype("f4"),
        components=axes.T.astype("f4"),
        eigenvalues=np.array([5.0, 3.0, 2.0][:k], "f4"),
        residual_variance=0.5,
        log_centres=np.array([0.3, -0.2], "f4"),
        log_scales=np.array([1.5, 0.8], "f4"),
        info={"data": "hand-made"},
    )


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.6])
def test_matched_filter_equals_scipy_gaussian_filter(sigma):
    images = np.random.default_rng(1).normal(size=(2, 20, 24, 3)).astype("f4")
    radius = len(gaussian_kernel(sigma)) // 2
    expected = gaussian_filter(images.astype("f8"), sigma=(0, sigma, sigma, 0), mode="reflect",
                               radius=(0, radius, radius, 0))  # fmt: skip
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
        bins = np.digitize(level[..., b], c.edges[b])  # edges[i-1] <= x < edges[i]
        expected[..., b] = residual[..., b] ** 2 / c.variances[b][bins]
    np.testing.assert_allclose(scorer.chi2_map(images, recon).numpy(), expected, rtol=1e-5)
    k = round(c.settings.top_fraction * 16 * 16 * 3)
    top = np.sort(expected.reshape(3, -1), axis=1)[:, -k:].mean(axis=1)
    np.testing.assert_allclose(scorer.residual_score(images, recon).numpy(), top, rtol=1e-5)


def test_feature_score_is_the_mahalanobis_distance_of_the_ppca_gaussian():
    c = calibration()
    v = c.components.astype("f8")
    covariance = v.T @ np.diag(c.eigenvalues) @ v + c.residual_variance * (
        np.eye(v.shape[1]) - v.T @ v
    )
    features = np.random.default_rng(3).normal(size=(5, 12)).astype("f4")
    centred = features - c.feature_mean
    expected = np.einsum("ij,jk,ik->i", centred, np.linalg.inv(covariance), centred) / 12
    np.testing.assert_allclose(NoiseAwareScore(c).feature_score(features), expected, rtol=1e-4)


def test_combined_score_is_the_weighted_sum_of_standardised_logs():
    c = calibration(ScoreSettings(n_bins=4, n_components=3, feature_weight=0.25))
    out = NoiseAwareScore(c).combine(tf.constant([2.0, 0.5]), tf.constant([1.0, 4.0])).numpy()
    z_res = (np.log([2.0, 0.5]) - 0.3) / 1.5
    z_feat = (np.log([1.0, 4.0]) + 0.2) / 0.8
    np.testing.assert_allclose(out, 0.75 * z_res + 0.25 * z_feat, rtol=1e-5, atol=1e-6)


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
    settings = ScoreSettings(n_bins=6, n_components=4)
    residual, level = (t.numpy() for t in residual_maps(images.astype("f4"), truth.astype("f4"), 1))
    edges, variances = fit_levels(settings, residual.reshape(-1, 3).T, level.reshape(-1, 3).T)
    c = calibration(settings, dims=12, k=4)
    c.edges, c.variances = edges, variances
    scores = NoiseAwareScore(c).residual_score(images.astype("f4"), truth.astype("f4")).numpy()
    assert roc_auc_score(anomalous, scores) > 0.99
    # The paper's L1 on the same residual is dominated by the noise and does much worse.
    paper = np.abs(images - truth).sum(axis=(1, 2, 3))
    assert roc_auc_score(anomalous, paper) < 0.8


def test_calibration_file_round_trip_and_errors(tmp_path):
    c = calibration()
    c.save(tmp_path / "c.npz")
    back = Calibration.load(tmp_path / "c.npz")
    assert back.settings == c.settings and back.info == c.info
    for name in Calibration.ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name))
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="bad.npz: not a readable tfanomaly calibration"):
        Calibration.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="top fraction"):
        ScoreSettings(top_fraction=0).validate()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("calibrate"), n_objects=150, seed=4)


def test_calibrate_stage_of_a_run(tiny_run, tmp_path):
    """train encoder calibrates on its data; `calibrate` redoes it with other settings."""
    from tfanomaly.pipelines.calibrate import calibrate

    run = tiny_run / "run"
    first = Calibration.load(run / "calibration.npz")
    assert first.info["count"] == 150 and first.settings == ScoreSettings()
    assert first.components.shape == (ScoreSettings().n_components, first.feature_mean.shape[0])
    assert (np.diff(first.edges, axis=1) >= 0).all() and (first.variances > 0).all()
    settings = ScoreSettings(smooth_sigma=1.5, top_fraction=0.05, n_components=8)
    messages = []
    summary = calibrate(run, settings=settings, fit_size=100, progress=False,
                        echo=messages.append)  # fmt: skip
    again = Calibration.load(summary["path"])
    assert again.settings == settings and again.info["count"] == 100
    assert again.components.shape[0] == 8 and "calibrated" in messages[0]
    info = json.loads(json.dumps(again.info))
    assert info["inversion"]["steps"] == 0
    with pytest.raises(ConfigError, match="no trained encoder"):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "run.json").write_text('{"gan": {}, "model": {}, "data": {}}')
        calibrate(tmp_path / "run", progress=False)
