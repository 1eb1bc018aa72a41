"""Calibrate a run's default score on a data set: the residual scatter at each brightness and the
Gaussian of the critic features, written to ``RUN/calibration.npz`` (``tfanomaly calibrate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfanomaly.data.dataset import load_dataset
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.config import InversionConfig
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.noise_score import (
    Calibration,
    ScoreSettings,
    fit_features,
    fit_levels,
    residual_maps,
    robust_log_scale,
)
from tfanomaly.pipelines.config import CalibrateConfig
from tfanomaly.pipelines.run import CALIBRATION_FILE, check_run_takes, load_inverter, load_run


def calibrate(
    run_dir,
    data_dir=None,
    *,
    settings: ScoreSettings | None = None,
    inversion: InversionConfig | None = None,
    fit_size: int = CalibrateConfig.fit_size,
    pixels_per_image: int = CalibrateConfig.pixels_per_image,
    batch_size: int = CalibrateConfig.batch_size,
    seed: int = CalibrateConfig.seed,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Fit the default score's statistics on ``fit_size`` cutouts of ``data_dir`` (default: the
    run's training data) drawn at random with ``seed``; write ``run_dir/calibration.npz``.

    Two passes over the same cutouts: the first samples ``pixels_per_image`` pixels of every
    smoothed residual map (for the brightness-binned scatter) and keeps the critic features (for
    the Gaussian); the second scores them to standardise the two terms. Anomalies in the set are
    few, and every statistic is robust (medians) or dominated by the bulk (principal axes).
    """
    settings = settings or ScoreSettings()
    settings.validate()
    inversion = inversion or InversionConfig()
    if fit_size < 2 or pixels_per_image < 1 or batch_size < 1:
        raise ConfigError("fit size must be at least 2, pixels and batch size at least 1")
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if "encoder" not in run:
        raise ConfigError(f"{run_dir}: no trained encoder; run `tfanomaly train encoder` first")
    data_dir = Path(data_dir or run["data"]["path"])
    info = DatasetInfo.from_folder(data_dir)
    check_run_takes(run, info)
    inverter = load_inverter(run_dir, inversion, calibrated=False)
    count = min(fit_size, info.count)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()

    def batches():
        dataset = load_dataset(data_dir, batch_size, shuffle=True, seed=seed)
        return iter(dataset.take(-(-count // batch_size)))

    residual_samples, level_samples, features = [], [], []
    with tqdm(total=2 * count, unit="cutout", desc="calibrate", disable=not progress) as bar:
        seen = 0
        for batch in batches():
            images = batch["image"][: count - seen]
            out = inverter(images)
            residual, level = residual_maps(images, out["reconstruction"], settings.smooth_sigma)
            n, height, width, bands = residual.shape
            flat = height * width
            picks = rng.integers(0, flat, size=(n, min(pixels_per_image, flat)))
            rows = np.arange(n)[:, None]
            residual_samples.append(residual.numpy().reshape(n, flat, bands)[rows, picks])
            level_samples.append(level.numpy().reshape(n, flat, bands)[rows, picks])
            features.append(out["features"].numpy())
            seen += n
            bar.update(n)
        residuals = np.concatenate(residual_samples).reshape(-1, bands).T
        levels = np.concatenate(level_samples).reshape(-1, bands).T
        edges, variances = fit_levels(settings, residuals, levels)
        mean, components, eigenvalues, rest = fit_features(settings, np.concatenate(features))
        calibration = Calibration(
            settings=settings,
            edges=edges,
            variances=variances,
            feature_mean=mean,
            components=components,
            eigenvalues=eigenvalues,
            residual_variance=rest,
            log_centres=np.zeros(2, np.float32),
            log_scales=np.ones(2, np.float32),
            info={},
        )
        # The same networks with the fitted numbers: both terms come out of one graph call.
        scorer = LatentInverter(inverter.generator, inverter.critic, inverter.encoder, inversion,
                                calibration)  # fmt: skip
        terms: dict[str, list] = {"residual_score": [], "feature_score": []}
        seen = 0
        for batch in batches():
            images = batch["image"][: count - seen]
            out = scorer(images)
            for key, values in terms.items():
                values.append(out[key].numpy())
            seen += len(images)
            bar.update(len(images))
    centres_scales = [robust_log_scale(np.concatenate(terms[k])) for k in terms]
    calibration.log_centres = np.array([c for c, _ in centres_scales], np.float32)
    calibration.log_scales = np.array([s for _, s in centres_scales], np.float32)
    calibration.info = {
        "data": str(data_dir.resolve()),
        "count": int(seen),
        "seed": seed,
        "pixels_per_image": pixels_per_image,
        "inversion": inversion.to_dict(),
        "feature_size": int(mean.shape[0]),
        "components": int(components.shape[0]),
    }
    path = run_dir / CALIBRATION_FILE
    calibration.save(path)
    seconds = time.perf_counter() - started
    echo(f"calibrated the default score on {seen} cutouts of {data_dir} -> {path}")
    return {"path": path, "count": seen, "seconds": seconds, "settings": settings.to_dict()}
