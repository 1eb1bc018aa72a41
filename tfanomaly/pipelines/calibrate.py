"""Calibrate a run's default score on a data set: the residual scatter at each brightness and the
Gaussian of the critic features, written to ``RUN/calibration.npz`` (``tfanomaly calibrate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfanomaly.data.dataset import load_dataset, stretch_batch
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.morphology import morphology
from tfanomaly.models.noise_score import (
    Calibration,
    fit_features,
    fit_levels,
    fit_linear,
    fit_linear_levels,
    fit_morphology,
    linear_model,
    robust_log_scale,
    sample_maps,
)
from tfanomaly.models.score_config import InversionConfig, ScoreSettings
from tfanomaly.pipelines.config import CalibrateConfig
from tfanomaly.pipelines.run import (
    CALIBRATION_FILE,
    check_run_takes,
    load_inverter,
    load_run,
    run_stretch,
)


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
    planes: bool = True,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Fit the default score's statistics on ``fit_size`` cutouts of ``data_dir`` (default: the
    run's training data) drawn at random with ``seed``; write ``run_dir/calibration.npz``.

    Two passes over the same cutouts: the first samples ``pixels_per_image`` pixels of every
    smoothed residual map (for the brightness-binned scatter), keeps the critic features (for
    the Gaussian), the pixels (for the linear model) and the morphology parameters (for
    the k-NN reference set); the second scores them to standardise every term. Anomalies in the set are
    few, and every statistic is robust (medians) or dominated by the bulk (principal axes).

    Where the data set has variance and/or mask planes (and ``planes``), the plane path is
    fitted beside the calibrated-scatter one (which stays the fallback for data without planes
    and for the served model): the misfit beyond the propagated pixel variance per brightness bin,
    masked pixels left out of every residual sample, cutouts with masked pixels left out of the
    linear model's principal axes, and the terms' log centres and scales on that path;
    ``info["planes"]`` records which planes.
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

    stretch = run_stretch(run)
    used = tuple(info.planes) if planes else ()

    def batches():
        """(stretched batch, raw flux) of the same cutouts, in the same order every time."""
        dataset = load_dataset(data_dir, batch_size, shuffle=True, seed=seed, stretch=None)
        for batch in dataset.take(-(-count // batch_size)):
            batch = {key: batch[key] for key in ("image", *used)}
            yield stretch_batch(batch, stretch), batch["image"]

    def head(batch, n):
        return {key: value[:n] for key, value in batch.items()}

    terms = settings.terms
    linear = "linear" in terms or "extended" in terms  # both read the linear model
    # The scatter of the GAN's residual is always fitted: its term is stored even when the default
    # score does not combine it.
    # The linear model's pixels of at most ~400 MB of cutouts (all of them below 96 px).
    linear_count = min(count, max(500, int(1e8 // np.prod(info.shape))))
    samples, plane_samples, features, pixels, morphologies = [], [], [], [], []
    with tqdm(total=2 * count, unit="cutout", desc="calibrate", disable=not progress) as bar:
        seen = 0
        for batch, flux in batches():
            batch, flux = head(batch, count - seen), flux[: count - seen]
            images = batch["image"]
            out = inverter(images)
            n, height, width, bands = images.shape
            picks = rng.integers(0, height * width, size=(n, min(pixels_per_image, height * width)))
            samples.append(sample_maps(settings, images, out["reconstruction"], picks))
            if used:
                plane_samples.append(sample_maps(settings, images, out["reconstruction"], picks,
                                                 batch.get("variance"), batch.get("mask")))  # fmt: skip
            features.append(out["features"].numpy())
            if linear and seen < linear_count:
                pixels.append({key: np.asarray(value[: linear_count - seen])
                               for key, value in batch.items()})  # fmt: skip
            if "morphology" in terms:
                morphologies.append(morphology(flux).numpy())
            seen += n
            bar.update(n)

        def fit(parts, edges=None):
            """The binned variances of samples; with ``edges``: of the plane path."""
            residuals, levels, noise = (np.concatenate(p).reshape(-1, bands).T
                                        for p in zip(*parts, strict=True))  # fmt: skip
            noise = noise if edges is not None and "variance" in used else None
            return fit_levels(settings, residuals, levels, noise, edges)

        edges, variances = fit(samples)
        mean, components, eigenvalues, rest = fit_features(settings, np.concatenate(features))
        calibration = Calibration(
            settings=settings,
            edges=edges,
            variances=variances,
            feature_mean=mean,
            components=components,
            eigenvalues=eigenvalues,
            residual_variance=rest,
            log_centres=np.zeros(len(terms), np.float32),
            log_scales=np.ones(len(terms), np.float32),
            info={"planes": list(used)},
        )
        if used:
            calibration.plane_variances = fit(plane_samples, edges=edges)[1]
            calibration.plane_log_centres = np.zeros(len(terms), np.float32)
            calibration.plane_log_scales = np.ones(len(terms), np.float32)
        if linear:
            pixels = {key: np.concatenate([p[key] for p in pixels]) for key in pixels[0]}
            # Masked pixels are left out of the linear model's axes by leaving out the cutouts
            # that have any (few: saturated stars, cosmic rays, bad columns), unless most have.
            keep = None
            if "mask" in pixels:
                keep = ~pixels["mask"].reshape(len(pixels["mask"]), -1).any(axis=1)
                keep = keep if keep.sum() >= max(2, len(keep) // 2) else None
            cutouts = pixels["image"]
            calibration.linear_mean, calibration.linear_components = fit_linear(
                settings, cutouts, keep
            )
            # The projection (robust steps included) once, for every filter and path below.
            models = linear_model(calibration.linear_mean, calibration.linear_components, cutouts,
                                  settings.robust_iterations)  # fmt: skip
            model = (settings, cutouts, models, pixels_per_image, rng)
            calibration.linear_edges, calibration.linear_variances = fit_linear_levels(*model)
            if "extended" in terms:
                calibration.extended_edges, calibration.extended_variances = fit_linear_levels(
                    *model, sigma=settings.extended_sigma)  # fmt: skip
            if used:
                planes_of = (pixels.get("variance"), pixels.get("mask"))
                calibration.linear_plane_variances = fit_linear_levels(
                    *model, *planes_of, calibration.linear_edges)[1]  # fmt: skip
                if "extended" in terms:
                    calibration.extended_plane_variances = fit_linear_levels(
                        *model, *planes_of, calibration.extended_edges,
                        sigma=settings.extended_sigma)[1]  # fmt: skip
            del pixels, cutouts, models
        if "morphology" in terms:
            morph = fit_morphology(settings, np.concatenate(morphologies), rng)
            (calibration.morphology_centre, calibration.morphology_scale,
             calibration.morphology_reference) = morph  # fmt: skip
        # The same networks with the fitted numbers: both terms come out of one graph call (the
        # plane path's with the planes, the fallback's again from the same reconstructions).
        scorer = LatentInverter(inverter.generator, inverter.critic, inverter.encoder, inversion,
                                calibration)  # fmt: skip
        values: dict[str, list] = {f"{term}_score": [] for term in terms}
        plane_values: dict[str, list] = {f"{term}_score": [] for term in terms}
        seen = 0
        for batch, flux in batches():
            batch, flux = head(batch, count - seen), flux[: count - seen]
            images = batch["image"]
            out = scorer(images, flux, batch.get("variance"), batch.get("mask"))
            if used:
                for key, column in plane_values.items():
                    column.append(out[key].numpy())
                out = scorer.noise_score(images, out["reconstruction"], out["features"], flux)
            for key, column in values.items():
                column.append(out[key].numpy())
            seen += len(images)
            bar.update(len(images))
    if used:
        centres_scales = [robust_log_scale(np.concatenate(plane_values[k])) for k in plane_values]
        calibration.plane_log_centres = np.array([c for c, _ in centres_scales], np.float32)
        calibration.plane_log_scales = np.array([s for _, s in centres_scales], np.float32)
    centres_scales = [robust_log_scale(np.concatenate(values[k])) for k in values]
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
        "terms": list(terms),
        "linear_fit_count": int(min(linear_count, seen)) if linear else 0,
        "linear_components": int(len(calibration.linear_components)) if linear else 0,
        "planes": list(used),
    }
    path = run_dir / CALIBRATION_FILE
    calibration.save(path)
    seconds = time.perf_counter() - started
    with_planes = f" (with its {' and '.join(used)} plane{'s' * (len(used) > 1)})" if used else ""
    echo(f"calibrated the default score on {seen} cutouts of {data_dir}{with_planes} -> {path}")
    return {"path": path, "count": seen, "seconds": seconds, "settings": settings.to_dict()}
