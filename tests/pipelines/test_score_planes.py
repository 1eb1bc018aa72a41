"""Variance and mask planes from an HDF5 survey to the score: ingest -> train -> calibrate ->
score; the catalog counts masked pixels, the residual term is the true chi^2, masked pixels count
nothing."""

import numpy as np
from click.testing import CliRunner
from conftest import quiet

from tfanomaly.cli import main
from tfanomaly.data.dataset import load_dataset
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.noise_score import residual_maps
from tfanomaly.models.pixel_noise import smoothed_chi2
from tfanomaly.pipelines.config import (
    EncoderTrainConfig,
    GanTrainConfig,
    IngestConfig,
    ScoreConfig,
)
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.run import load_inverter
from tfanomaly.pipelines.score import score
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_encoder, train_gan
from tfanomaly.results.catalog import read_results
from tfanomaly.simulate.config import SurveyConfig


def test_planes_from_the_survey_to_the_catalog(tmp_path):
    simulate_survey(
        tmp_path / "s.h5",
        SurveyConfig(n_objects=80, size=16, seed=3, anomaly_fraction=0.3, planes=True),
        progress=False,
    )
    ingest(tmp_path / "s.h5", tmp_path / "ds", IngestConfig(shard_size=40), progress=False)
    train_gan(
        tmp_path / "ds",
        tmp_path / "run",
        GanTrainConfig(preset="tiny16", steps=2, batch_size=8, checkpoint_every=2, check=False),
        progress=False,
        echo=quiet,
    )
    train_encoder(
        tmp_path / "run",
        EncoderTrainConfig(steps=2, batch_size=8, checkpoint_every=2, check=False),
        progress=False,
        echo=quiet,
    )
    calibration = Calibration.load(tmp_path / "run" / "calibration.npz")
    assert calibration.planes == ("variance", "mask")
    residual, extended = calibration.residuals["residual"], calibration.residuals["extended"]
    assert (residual.plane_variances >= 0).all() and calibration.plane_standard.scales.size
    assert extended.plane_variances.shape == extended.variances.shape
    assert (extended.plane_variances >= 0).all()
    score(tmp_path / "run", tmp_path / "ds", tmp_path / "scores", progress=False, echo=quiet)
    columns, _ = read_results(tmp_path / "scores")
    batch = next(iter(load_dataset(tmp_path / "ds", 80)))
    n_masked = batch["mask"].numpy().reshape(80, -1).sum(axis=1)
    order = np.argsort(columns["idxs"])
    np.testing.assert_array_equal(
        columns["n_masked"][order], n_masked[np.argsort(batch["idx"].numpy())]
    )
    assert n_masked.any()

    # The residual term against a numpy reference of the chi^2 with the variance (plus the
    # calibrated misfit per brightness bin), for a few objects.
    inverter = load_inverter(tmp_path / "run")
    images, variance, mask = (batch[k][:6].numpy() for k in ("image", "variance", "mask"))
    raw = next(iter(load_dataset(tmp_path / "ds", 80, stretch=None)))
    out = inverter(images, raw["image"][:6], variance, mask)
    recon = out["reconstruction"].numpy()
    parts = smoothed_chi2(images - recon, variance, mask, calibration.settings.smooth_sigma)
    smoothed_level = residual_maps(images, recon, calibration.settings.smooth_sigma)[1].numpy()
    misfit = np.empty_like(images)
    for b in range(images.shape[-1]):
        edges = residual.edges[b]
        knots = np.concatenate([edges[:1], (edges[1:] + edges[:-1]) / 2, edges[-1:]])
        misfit[..., b] = np.interp(smoothed_level[..., b], knots, residual.plane_variances[b])
    s, v = parts["smoothed"].numpy(), parts["smoothed_variance"].numpy()
    denominator = v + misfit
    chi2 = np.where((denominator > 0) & ~mask, s**2 / np.where(denominator > 0, denominator, 1), 0)
    k = max(1, round(calibration.settings.top_fraction * chi2[0].size))
    expected = np.sort(chi2.reshape(6, -1), axis=1)[:, -k:].mean(axis=1)
    np.testing.assert_allclose(out["residual_score"], expected, rtol=1e-4)

    # A masked pixel set to a huge value leaves the residual term as it was (the networks see the
    # filled image, so the reconstruction is held fixed here).
    spoilt = images.copy()
    spoilt[mask] = 1e6
    scorer = inverter.noise_score
    np.testing.assert_allclose(
        scorer.residual_score(spoilt, recon, variance, mask),
        scorer.residual_score(images, recon, variance, mask),
        rtol=1e-6,
    )
    # So does the extended term (its wide filter renormalised to the kept pixels): the linear
    # model of the filled image, held fixed, against the spoilt pixels.
    model = scorer.linear_reconstruction(images)
    np.testing.assert_allclose(
        scorer.extended_score(spoilt, variance, mask, model),
        scorer.extended_score(images, variance, mask, model),
        rtol=1e-6,
    )

    # Ignoring the planes gives the calibrated-scatter scores; the catalog still counts the mask.
    score(
        tmp_path / "run",
        tmp_path / "ds",
        tmp_path / "plain",
        ScoreConfig(planes=False),
        progress=False,
        echo=quiet,
    )
    plain, _ = read_results(tmp_path / "plain")
    np.testing.assert_array_equal(plain["n_masked"], columns["n_masked"])

    # The same from the command line: `score --no-planes` equals planes=False, and
    # `calibrate --no-planes` writes a calibration without the plane statistics.
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "score",
            str(tmp_path / "ds"),
            "--run",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "cli"),
            "--no-planes",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    cli, _ = read_results(tmp_path / "cli")
    np.testing.assert_array_equal(cli["scores"], plain["scores"])
    assert not np.array_equal(plain["scores"], columns["scores"])
    result = runner.invoke(main, ["calibrate", str(tmp_path / "run"), "--no-planes", "--quiet"])
    assert result.exit_code == 0, result.output
    assert Calibration.load(tmp_path / "run" / "calibration.npz").planes == ()
