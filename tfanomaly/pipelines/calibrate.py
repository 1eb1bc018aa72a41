"""Calibrate a run's default score on a data set, written to ``RUN/calibration.npz``
(``tfanomaly calibrate``).

Two passes over the same cutouts: :func:`sample_pass` samples what the fits need,
:func:`fit_calibration` fits the numbers (:mod:`tfanomaly.models.score_fit`) into a
:class:`~tfanomaly.models.calibration.Calibration`, and :func:`standardise_pass` scores the cutouts
with them to measure every term's robust standardisation; :func:`calibrate` runs them on a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfanomaly.data.dataset import load_dataset, stretch_batch
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.calibration import (
    KNN_TERMS,
    Calibration,
    FeatureGaussian,
    KnnReference,
    LinearModel,
    ResidualTerm,
    Standardisation,
)
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.morphology import constant_cutouts, morphology
from tfanomaly.models.score_config import InversionConfig, ScoreSettings
from tfanomaly.models.score_fit import (
    fit_features,
    fit_levels,
    fit_linear,
    fit_linear_levels,
    fit_morphology,
    fit_reference,
    linear_model,
    robust_log_scale,
    sample_maps,
)
from tfanomaly.models.term_health import (
    check_terms,
    leave_out_noise_terms,
    noise_model_finding,
)
from tfanomaly.pipelines.config import CalibrateConfig
from tfanomaly.pipelines.run import (
    CALIBRATION_FILE,
    check_run_takes,
    load_inverter,
    load_run,
    run_stretch,
)


def cutouts(data_dir, count: int, batch_size: int, seed: int, planes: tuple[str, ...], stretch):
    """(stretched batch with its ``planes``, raw flux) of the first ``count`` cutouts of the data
    set shuffled with ``seed``: the same cutouts in the same order every time."""
    dataset = load_dataset(data_dir, batch_size, shuffle=True, seed=seed, stretch=None)
    seen = 0
    for batch in dataset.take(-(-count // batch_size)):
        batch = {key: batch[key] for key in ("image", *planes)}
        stretched = stretch_batch(batch, stretch)
        left = count - seen
        yield {key: value[:left] for key, value in stretched.items()}, batch["image"][:left]
        seen += min(left, len(batch["image"]))


@dataclass
class Samples:
    """What the first pass keeps for the fits: the residual samples of the calibrated-scatter path
    and of the plane path (:func:`~tfanomaly.models.score_fit.sample_maps`, per batch), the critic
    features, the linear model's cutouts (with their planes), the morphology parameters and the
    residual-shape descriptors."""

    residual: list = field(default_factory=list)
    planes: list = field(default_factory=list)
    features: list = field(default_factory=list)
    pixels: list = field(default_factory=list)
    morphologies: list = field(default_factory=list)
    shapes: list = field(default_factory=list)
    count: int = 0
    bands: int = 0


def sample_pass(
    inverter,
    batches: Iterator,
    settings: ScoreSettings,
    planes: tuple[str, ...],
    pixels_per_image: int,
    linear_count: int,
    rng: np.random.Generator,
    bar,
) -> Samples:
    """The first pass: sample ``pixels_per_image`` pixels of every smoothed residual map (for the
    brightness-binned scatter; the GAN's is always fitted, its term stored even where the score
    does not combine it), keep the critic features (for the Gaussian), the first
    ``linear_count`` cutouts (for the linear model, where a term reads it) and the morphology
    parameters and residual-shape descriptors of the cutouts that are not constant (for the k-NN
    terms' reference sets)."""
    terms = settings.terms
    linear = "linear" in terms or "extended" in terms  # both read the linear model
    samples = Samples()
    for batch, flux in batches:
        images = batch["image"]
        out = inverter(images)
        n, height, width, samples.bands = images.shape
        picks = rng.integers(0, height * width, size=(n, min(pixels_per_image, height * width)))
        reconstructions = out["reconstruction"]
        samples.residual.append(sample_maps(settings, images, reconstructions, picks))
        if planes:
            samples.planes.append(
                sample_maps(
                    settings,
                    images,
                    reconstructions,
                    picks,
                    batch.get("variance"),
                    batch.get("mask"),
                )
            )
        samples.features.append(out["features"].numpy())
        if linear and samples.count < linear_count:
            left = linear_count - samples.count
            samples.pixels.append({key: np.asarray(value[:left]) for key, value in batch.items()})
        data = ~constant_cutouts(flux).numpy()  # no shape (nor a place among shapes)
        if "morphology" in terms:
            samples.morphologies.append(morphology(flux).numpy()[data])
        if "residual_shape" in terms:
            samples.shapes.append(out["residual_shape"].numpy()[data])
        samples.count += n
        bar.update(n)
    return samples


def binned(settings: ScoreSettings, parts: list, bands: int, noise: bool = False, edges=None):
    """The brightness bins and binned variances of per-batch residual samples; ``noise``: beyond
    the samples' pixel variance; ``edges``: on these bins (the plane path's)."""
    residuals, levels, pixel_noise = (
        np.concatenate(p).reshape(-1, bands).T for p in zip(*parts, strict=True)
    )
    return fit_levels(settings, residuals, levels, pixel_noise if noise else None, edges)


def fit_linear_terms(
    settings: ScoreSettings,
    pixels: list,
    planes: tuple[str, ...],
    pixels_per_image: int,
    rng: np.random.Generator,
) -> tuple[LinearModel, dict[str, ResidualTerm]]:
    """The linear model of the sampled cutouts and the residual records of the ``linear`` term
    (always, where the model is fitted) and the ``extended`` term (where the score has it), with
    their plane path's variances where there are ``planes``."""
    pixels = {key: np.concatenate([p[key] for p in pixels]) for key in pixels[0]}
    # Masked pixels are left out of the linear model's axes by leaving out the cutouts that have
    # any (few: saturated stars, cosmic rays, bad columns), unless most have.
    keep = None
    if "mask" in pixels:
        keep = ~pixels["mask"].reshape(len(pixels["mask"]), -1).any(axis=1)
        keep = keep if keep.sum() >= max(2, len(keep) // 2) else None
    cutouts = pixels["image"]
    model = LinearModel(*fit_linear(settings, cutouts, keep))
    # The projection (robust steps included) once, for every filter and path below.
    models = linear_model(model.mean, model.components, cutouts, settings.robust_iterations)
    args = (settings, cutouts, models, pixels_per_image, rng)
    names = ["linear", *(["extended"] if "extended" in settings.terms else [])]
    sigmas = {"linear": None, "extended": settings.extended_sigma}
    fitted = {name: fit_linear_levels(*args, sigma=sigmas[name]) for name in names}
    plane_variances = dict.fromkeys(names)
    if planes:
        planes_of = (pixels.get("variance"), pixels.get("mask"))
        for name in names:
            edges = fitted[name][0]
            plane_variances[name] = fit_linear_levels(*args, *planes_of, edges, sigma=sigmas[name])[
                1
            ]
    records = {
        name: ResidualTerm.fitted(settings, name, *fitted[name], plane_variances[name])
        for name in names
    }
    return model, records


def fit_calibration(
    settings: ScoreSettings,
    samples: Samples,
    planes: tuple[str, ...],
    pixels_per_image: int,
    rng: np.random.Generator,
) -> Calibration:
    """The calibration's numbers from the first pass's ``samples``; the terms' standardisation
    neutral (centre 0, scale 1) until :func:`standardise_pass` measures it."""
    terms = settings.terms
    bands = samples.bands
    edges, variances = binned(settings, samples.residual, bands)
    plane_variances = None
    if planes:
        noise = "variance" in planes
        plane_variances = binned(settings, samples.planes, bands, noise, edges)[1]
    residuals = {
        "residual": ResidualTerm.fitted(settings, "residual", edges, variances, plane_variances)
    }
    features = FeatureGaussian(*fit_features(settings, np.concatenate(samples.features)))
    calibration = Calibration(
        settings=settings,
        residuals=residuals,
        features=features,
        standard=Standardisation.neutral(len(terms)),
        info={"planes": list(planes)},
        plane_standard=Standardisation.neutral(len(terms)) if planes else None,
    )
    if samples.pixels:
        calibration.linear, linear_terms = fit_linear_terms(
            settings, samples.pixels, planes, pixels_per_image, rng
        )
        residuals.update(linear_terms)
    fits = {
        "morphology": lambda: fit_morphology(settings, np.concatenate(samples.morphologies), rng),
        "residual_shape": lambda: fit_reference(
            settings,
            np.concatenate(samples.shapes),
            rng,
            "residual_shape",
            settings.residual_shape_units,
        ),
    }
    knn_terms = [term for term in KNN_TERMS if term in terms]
    for term in knn_terms:
        *numbers, copies, trimmed = fits[term]()
        setattr(calibration, term, KnnReference(*numbers))
        calibration.info.update({f"{term}_copies": copies, f"{term}_trimmed": trimmed})
    # A small calibration set has fewer distinct cutouts than k + 1: the k-NN terms (which share
    # k) take all but the image itself of the smaller reference set (calibrate says so).
    k = min(
        [settings.morphology_neighbours]
        + [len(getattr(calibration, term).reference) - 1 for term in knn_terms]
    )
    if k < settings.morphology_neighbours:
        calibration.settings = replace(settings, morphology_neighbours=k)
    return calibration


def standardise_pass(
    inverter, batches: Iterator, calibration: Calibration, inversion: InversionConfig, bar
) -> int:
    """The second pass: score the cutouts with the fitted numbers and set each term's robust
    standardisation (median and MAD-sigma of its log), on both paths where there are planes, and
    each term's health (``term_health.check_terms``: a degenerate term weighs 0), all over the
    cutouts that are not constant (``constant_cutouts``). Returns the number of cutouts scored."""
    # The same networks with the fitted numbers: both paths come out of one graph call (the
    # plane path's with the planes, the fallback's again from the same reconstructions).
    scorer = LatentInverter(
        inverter.generator, inverter.critic, inverter.encoder, inversion, calibration
    )
    keys = [f"{term}_score" for term in calibration.terms]
    values: dict[str, list] = {key: [] for key in keys}
    plane_values: dict[str, list] = {key: [] for key in keys}
    seen = 0
    for batch, flux in batches:
        images = batch["image"]
        out = scorer(images, flux, batch.get("variance"), batch.get("mask"))
        # Constant cutouts (no light: off the footprint, a fill value) would put a spike at the
        # floor of every term and move its centre and scale by their share of the set.
        data = ~constant_cutouts(flux).numpy()
        if calibration.planes:
            for key, column in plane_values.items():
                column.append(out[key].numpy()[data])
            out = scorer.noise_score(images, out["reconstruction"], out["features"], flux)
        for key, column in values.items():
            column.append(out[key].numpy()[data])
        seen += len(images)
        bar.update(len(images))
    if not sum(len(column) for column in values[keys[0]]):
        raise ConfigError(
            f"every one of the {seen} calibration cutouts is constant (one value in every pixel): "
            "there is nothing to calibrate on; see the data's health in `tfanomaly inspect`"
        )
    if calibration.planes:
        calibration.plane_standard = standardisation(plane_values)
    calibration.standard = standardisation(values)
    calibration.health = check_terms(
        {key.removesuffix("_score"): np.concatenate(column) for key, column in values.items()},
        {key.removesuffix("_score"): np.concatenate(c) for key, c in plane_values.items()}
        if calibration.planes
        else None,
    )
    return seen


def standardisation(values: dict[str, list]) -> Standardisation:
    """Median and MAD-sigma of the log of each term's per-batch values."""
    centres_scales = [robust_log_scale(np.concatenate(column)) for column in values.values()]
    return Standardisation(
        np.array([c for c, _ in centres_scales], np.float32),
        np.array([s for _, s in centres_scales], np.float32),
    )


def calibrate(
    run_dir,
    data_dir=None,
    config: CalibrateConfig | None = None,
    *,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Fit the default score's statistics (``config.settings``) on ``config.fit_size`` cutouts of
    ``data_dir`` (default: the run's training data) drawn at random with ``config.seed``; write
    ``run_dir/calibration.npz``.

    Two passes over the same cutouts: the first (:func:`sample_pass`) samples
    ``pixels_per_image`` pixels of every smoothed residual map (for the brightness-binned
    scatter), keeps the critic features (for the Gaussian), the pixels (for the linear model)
    and the morphology parameters (for the k-NN reference set), fitted by
    :func:`fit_calibration`; the second (:func:`standardise_pass`) scores them to standardise
    every term. Anomalies in the set are few, and every statistic is robust (medians) or
    dominated by the bulk (principal axes).

    Where the data set has variance and/or mask planes (and ``config.planes``), the plane path is
    fitted beside the calibrated-scatter one (which stays the fallback for data without planes
    and for the served model): the misfit beyond the propagated pixel variance per brightness bin,
    masked pixels left out of every residual sample, cutouts with masked pixels left out of the
    linear model's principal axes, and the terms' log centres and scales on that path;
    ``info["planes"]`` records which planes.
    """
    config = config or CalibrateConfig()
    config.validate()
    settings, inversion, seed = config.settings, config.inversion, config.seed
    pixels_per_image, batch_size = config.pixels_per_image, config.batch_size
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if "encoder" not in run:
        raise ConfigError(f"{run_dir}: no trained encoder; run `tfanomaly train encoder` first")
    data_dir = Path(data_dir or run["data"]["path"])
    info = DatasetInfo.from_folder(data_dir)
    check_run_takes(run, info)
    inverter = load_inverter(run_dir, inversion, calibrated=False)
    count = min(config.fit_size, info.count)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    used = tuple(info.planes) if config.planes else ()
    stretch = run_stretch(run)

    def batches():
        return cutouts(data_dir, count, batch_size, seed, used, stretch)

    terms = settings.terms
    linear = "linear" in terms or "extended" in terms
    # The linear model's pixels of at most ~400 MB of cutouts (all of them below 96 px).
    linear_count = min(count, max(500, int(1e8 // np.prod(info.shape))))
    with tqdm(total=2 * count, unit="cutout", desc="calibrate", disable=not progress) as bar:
        samples = sample_pass(
            inverter, batches(), settings, used, pixels_per_image, linear_count, rng, bar
        )
        calibration = fit_calibration(settings, samples, used, pixels_per_image, rng)
        del samples
        seen = standardise_pass(inverter, batches(), calibration, inversion, bar)
    if config.noise_terms == "auto":
        finding = noise_model_finding(info.health)
        leave_out_noise_terms(calibration.health, calibration.terms, finding)
    # What the fits say about the k-NN terms' reference sets (nothing without those terms).
    reference_record = {
        key: calibration.info[key]
        for key in (f"{term}_{what}" for term in KNN_TERMS for what in ("copies", "trimmed"))
        if key in calibration.info
    }
    copies = reference_record.get("morphology_copies")
    calibration.info = {
        "data": str(data_dir.resolve()),
        "count": int(seen),
        "seed": seed,
        "pixels_per_image": pixels_per_image,
        "inversion": inversion.to_dict(),
        "feature_size": int(calibration.features.mean.shape[0]),
        "components": int(calibration.features.components.shape[0]),
        "terms": list(terms),
        "linear_fit_count": int(min(linear_count, seen)) if linear else 0,
        "linear_components": int(len(calibration.linear.components)) if linear else 0,
        "planes": list(used),
        **reference_record,
    }
    path = run_dir / CALIBRATION_FILE
    # Where no term carries information the weights raise (naming the terms and why), before a
    # calibration that could not score is written.
    record = calibration.weights_record()
    calibration.save(path)
    seconds = time.perf_counter() - started
    with_planes = f" (with its {' and '.join(used)} plane{'s' * (len(used) > 1)})" if used else ""
    echo(f"calibrated the default score on {seen} cutouts of {data_dir}{with_planes} -> {path}")
    for term, health in calibration.degenerate_terms().items():
        echo(health.message(term))
    if copies:
        echo(
            f"morphology reference: {copies} cutouts left out as copies of another (the same "
            "galaxy more than once: overlapping tracts, repeated visits)"
        )
    if reference_record.get("morphology_trimmed"):
        echo(
            f"morphology reference: {len(calibration.morphology.reference)} cutouts; the "
            f"{reference_record['morphology_trimmed']} farthest from their neighbours left out "
            f"as the calibration set's own anomalies (--reference-trim {settings.reference_trim})"
        )
    if reference_record.get("residual_shape_trimmed"):
        echo(
            f"residual-shape reference: {len(calibration.residual_shape.reference)} cutouts; the "
            f"{reference_record['residual_shape_trimmed']} farthest from their neighbours left "
            f"out (--reference-trim {settings.reference_trim})"
            + (
                f", {reference_record['residual_shape_copies']} as copies of another"
                if reference_record.get("residual_shape_copies")
                else ""
            )
        )
    k = calibration.settings.morphology_neighbours
    if k < settings.morphology_neighbours:
        echo(
            f"k-NN terms: k = {k} neighbours, not {settings.morphology_neighbours}: the "
            f"calibration set has {k + 1} distinct cutouts"
        )
    result = {
        "path": path,
        "count": seen,
        "seconds": seconds,
        "settings": calibration.settings.to_dict(),
        **record,
    }
    result.update(reference_record)
    return result
