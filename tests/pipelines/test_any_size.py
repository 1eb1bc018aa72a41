"""Bring your own cutouts: a 64-px one-band and a 100-px five-band data set, ingested from NumPy and
HDF5, go through train gan -> train encoder -> calibrate -> score -> export with the architecture
the ``tiny`` family derives for them (the 100-px generator crops 112 -> 100)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import make_cutouts, quiet, write_h5

from tfanomaly.cli import main
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.config import ModelConfig, derive_config
from tfanomaly.pipelines.calibrate import calibrate
from tfanomaly.pipelines.config import (
    CalibrateConfig,
    EncoderTrainConfig,
    GanTrainConfig,
    IngestConfig,
    ScoreConfig,
)
from tfanomaly.pipelines.export import export
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.run import CALIBRATION_FILE, load_run
from tfanomaly.pipelines.score import score
from tfanomaly.pipelines.train import train_encoder, train_gan
from tfanomaly.results.catalog import read_results

N = 24  # cutouts per data set: three batches of 8


def one_band_npy(folder):
    path = folder / "radio.npy"
    np.save(path, make_cutouts(n=N, size=64, bands=1, seed=1))
    return path


def five_band_h5(folder):
    return write_h5(folder / "grizy.h5", make_cutouts(n=N, size=100, bands=5, seed=2))


def train_gan_cli(data, run):
    args = [
        "train",
        "gan",
        str(data),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--n-critic",
        "1",
        "--checkpoint-every",
        "2",
        "--no-check",
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


# One critic update per step: the unrolled train step traces 5x faster; the sizes are the point.
GAN = GanTrainConfig(
    preset="tiny", steps=2, batch_size=8, n_critic=1, checkpoint_every=2, check=False
)


def train_gan_api(data, run):
    summary = train_gan(data, run, GAN, progress=False, echo=quiet)
    assert summary["preset"] == load_run(run)["gan"]["job"]["preset"]


@pytest.mark.parametrize(
    ("write", "size", "bands", "train", "recalibrate"),
    [
        pytest.param(one_band_npy, 64, 1, train_gan_api, True, id="64px-1band-npy"),
        pytest.param(five_band_h5, 100, 5, train_gan_cli, False, id="100px-5band-h5"),
    ],
)
def test_train_encoder_calibrate_score_export(tmp_path, write, size, bands, train, recalibrate):
    data, run, scores = tmp_path / "ds", tmp_path / "run", tmp_path / "scores"
    manifest = ingest(write(tmp_path), data, IngestConfig(shard_size=N), progress=False)
    assert manifest["shape"] == [size, size, bands]

    train(data, run)
    recorded = load_run(run)
    expected = derive_config("tiny", size, bands)
    assert ModelConfig.from_dict(recorded["model"]) == expected and expected.name == f"tiny{size}"
    # The job names the derived architecture, so the same command resumes it (here: nothing to do).
    assert recorded["gan"]["job"]["preset"] == f"tiny{size}"
    again = train_gan(data, run, GAN, progress=False, echo=quiet)
    assert again["resumed_from"] == 2

    # train encoder calibrates the default score on the run's data; calibrate redoes it (once
    # here: each is a minute of tracing on a busy 2-core machine).
    train_encoder(
        run,
        EncoderTrainConfig(steps=2, batch_size=8, checkpoint_every=2, check=False),
        progress=False,
        echo=quiet,
    )
    if recalibrate:
        lines = []
        calibrate(
            run,
            config=CalibrateConfig(fit_size=N // 2, batch_size=8),
            progress=False,
            echo=lines.append,
        )
        # 12 calibration cutouts, fewer than the morphology term's k + 1: k is lowered to 11.
        lowered = Calibration.load(run / CALIBRATION_FILE)
        k = lowered.settings.morphology_neighbours
        assert k == len(lowered.morphology.reference) - 1 == N // 2 - 1
        assert f"k-NN terms: k = {k} neighbours, not 20" in lines[-1]
    calibration = Calibration.load(run / CALIBRATION_FILE)
    assert calibration.info["feature_size"] == expected.feature_size
    assert calibration.info["count"] == (N // 2 if recalibrate else N)

    score(
        run, data, scores, ScoreConfig(batch_size=8, store_images=True), progress=False, echo=quiet
    )
    columns, _ = read_results(scores, with_images=True)
    assert len(columns["object_ids"]) == N
    assert columns["reconstructed"].shape == (N, size, size, bands)
    assert np.isfinite(columns["scores"]).all() and np.isfinite(columns["anomaly_scores"]).all()

    written = export(run, tmp_path / "models", scores_dir=scores)
    saved = json.loads((written["path"] / "assets" / "tfanomaly.json").read_text())
    assert saved["model"]["image_size"] == size and saved["model"]["channels"] == bands
    model = tf.saved_model.load(str(written["path"]))
    images = make_cutouts(n=3, size=size, bands=bands, seed=3)
    served = model.signatures["score_fast"](tf.constant(images))
    assert served["reconstruction"].shape == (3, size, size, bands)
    assert np.isfinite(served["score"].numpy()).all()
    generated = model.signatures["generate"](tf.zeros((2, expected.latent_dim)))["images"]
    assert generated.shape == (2, size, size, bands)
