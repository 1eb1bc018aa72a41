"""Shared fixtures: tiny cutout files written the way surveys ship them."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from tfanomaly.models.scores import SCORES

# Set before any test imports TensorFlow or numba (none of the imports above does).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# UMAP's numba kernels compile once (~50 s) and are cached here for later runs.
os.environ.setdefault(
    "NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".cache", "numba")
)

BIG_ID = 2**60 + 12345  # far above 2**53: float64 would round it

# Tolerances that follow from float32 arithmetic (README "What holds exactly, what to rounding").
# A network's output is, layer after layer, a sum of K products that oneDNN rounds in an order it
# chooses by CPU (AVX2, AVX-512 or AMX kernels) and by batch shape, so the same image can come out
# a few hundred float32 roundings (2**-24 relative each) apart on another machine or in another
# batch; a score that sums thousands of such values carries that drift. 2.5e-5 relative was
# measured between batches on an AVX2 EPYC. NET_RTOL leaves a margin of 4 over it, and is still a
# thousand times smaller than what a real coupling of the images of a batch would change.
NET_RTOL = 1e-4
# Every score but the default one (standardised logs) is a positive sum.
POSITIVE_SCORES = tuple(score.results for score in SCORES if score.output != "score")


def score_atol(key: str, columns: dict, calibration=None, rtol: float = NET_RTOL) -> float:
    """The absolute error a results column can carry when its raw scores drift by ``rtol``
    (``columns``: the whole scored catalog, whose mean and std define the sigma values).

    Positive sums drift by rtol * |value|; the default score ``scores`` combines the terms'
    z = (log - centre) / scale, so a relative drift rtol of the terms moves it by what
    ``Calibration.score_drift`` says (rtol / scale, weighted); a sigma value (x - mean) / std
    moves by the drift of x divided by std.
    """
    raw = key.removesuffix("_sigma")
    if raw == "scores":
        drift = calibration.score_drift(rtol)
    else:
        drift = rtol * float(np.abs(columns[raw]).max())
    return drift / float(np.std(columns[raw])) if key.endswith("_sigma") else drift


def assert_scores_close(
    actual: dict, expected: dict, keys, calibration=None, catalog=None, err_msg=""
):
    """Results columns equal up to the float32 drift of the networks (:func:`score_atol`);
    ``catalog``: the whole catalog the sigma values refer to, when ``expected`` is a subset."""
    for key in keys:
        if key in POSITIVE_SCORES:
            # A residual term is a squared difference of two near-equal values (image and
            # model): where it is near 0 its drift is the absolute one of a typical object's, not
            # a fraction of itself (AVX2-capped oneDNN on an EPYC: 1.7e-4 relative at 0.0089).
            typical = NET_RTOL * float(np.median(np.abs(expected[key])))
            np.testing.assert_allclose(
                actual[key], expected[key], rtol=NET_RTOL, atol=typical, err_msg=f"{err_msg} {key}"
            )
        else:
            atol = score_atol(key, expected if catalog is None else catalog, calibration)
            np.testing.assert_allclose(
                actual[key], expected[key], rtol=0, atol=atol, err_msg=f"{err_msg} {key}"
            )


def combined(z, weights, combine="softmax"):
    """The default score of the terms' z (N, T) with ``weights``, as ``ScoreSettings.combine``
    says, in NumPy (a max over every column given)."""
    from tfanomaly.models.score_config import SOFTMAX_TEMPERATURE

    if combine == "max":
        return z.max(axis=1)
    if combine == "softmax":
        tau = SOFTMAX_TEMPERATURE
        return tau * np.log(np.exp(z / tau) @ np.asarray(weights, np.float64))
    return z @ weights


def make_cutouts(n=20, size=16, bands=3, seed=0):
    """Raw-flux-like cutouts: sky noise plus a Gaussian blob, float32 (n, size, size, bands)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(x**2 + y**2) / (2 * (size / 8) ** 2))
    amplitude = rng.uniform(1, 20, (n, 1, 1, bands))
    images = rng.normal(0, 0.05, (n, size, size, bands)) + amplitude * blob[None, :, :, None]
    return images.astype(np.float32)


def write_h5(path, images, object_ids=None, with_sky=True, labels=None, **attrs):
    n = len(images)
    ids = (
        np.asarray(object_ids, dtype=np.uint64)
        if object_ids is not None
        else np.uint64(BIG_ID) + np.arange(n, dtype=np.uint64) * np.uint64(3)
    )
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["object_ids"] = ids
        f["idxs"] = np.arange(n, dtype=np.int64) + 100
        if with_sky:
            rng = np.random.default_rng(1)
            f["ra"] = rng.uniform(130, 140, n)
            f["dec"] = rng.uniform(-1, 4, n)
        if labels is not None:
            f["labels"] = labels
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


@pytest.fixture
def survey_h5(tmp_path):
    return write_h5(tmp_path / "survey.h5", make_cutouts(), labels=np.arange(20) % 3)


def quiet(*_):
    """An echo that prints nothing."""


def build_tiny_run(
    folder,
    n_objects: int,
    seed: int,
    anomaly_fraction: float = 0.02,
    shard_size: int = 40,
    planes: bool = False,
):
    """A labelled 16-px simulated survey (folder/s.h5; with variance and mask planes where
    ``planes``), ingested (folder/ds), and a tiny16 GAN and encoder trained for two steps on it
    (folder/run, calibrated with the planes it has): enough for scoring, export and serving.
    Networks of two steps have learned nothing yet: the collapse check is off for them."""
    from tfanomaly.pipelines.config import EncoderTrainConfig, GanTrainConfig, IngestConfig
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.pipelines.train import train_encoder, train_gan
    from tfanomaly.simulate.config import SurveyConfig

    survey = SurveyConfig(
        n_objects=n_objects, size=16, seed=seed, anomaly_fraction=anomaly_fraction, planes=planes
    )
    simulate_survey(folder / "s.h5", survey, progress=False)
    ingest(folder / "s.h5", folder / "ds", IngestConfig(shard_size=shard_size), progress=False)
    train_gan(
        folder / "ds",
        folder / "run",
        GanTrainConfig(preset="tiny16", steps=2, batch_size=8, checkpoint_every=2, check=False),
        progress=False,
        echo=quiet,
    )
    train_encoder(
        folder / "run",
        EncoderTrainConfig(steps=2, batch_size=8, checkpoint_every=2, check=False),
        progress=False,
        echo=quiet,
    )
    return folder
