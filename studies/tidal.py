"""Why the default score misses tidal features: docs/results/detection.md "Per kind" (the paragraph
on tidal features). No GAN is trained: the linear and extended terms, the morphology k-NN and
the candidates are computed on the survey-noise tuning set (common.py's
sim_noise_tune, written when missing) with the package's own functions.

  python studies/tidal.py [--sets studies/out/quality/sets] [--objects 60]

Prints: the debris' matched-filter S/N and flux (the simulator drawn with and without it), how
much of it the PCA model reproduces, the extended term with 5-100 components, neighbour masking,
conditioning on size, the mirror-symmetric residual, and each candidate added to a GAN-free proxy
of the default (linear + extended + morphology). About 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import common
import h5py
import numpy as np
import tensorflow as tf
from scipy import ndimage
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from tfanomaly.data.stretch import auto_stretch
from tfanomaly.data.stretch import sky_sigma as measured_sky
from tfanomaly.models.calibration import knots_of
from tfanomaly.models.morphology import feature_names, morphology, stamp_noise
from tfanomaly.models.noise_score import level_variances, residual_maps
from tfanomaly.models.score_config import ScoreSettings
from tfanomaly.models.score_fit import fit_linear, fit_linear_levels, linear_model
from tfanomaly.pipelines.evaluate import kind_groups
from tfanomaly.simulate import stamps
from tfanomaly.simulate.config import SurveyConfig, sky_sigma
from tfanomaly.simulate.noise import SurveyNoise, apply_survey_noise
from tfanomaly.simulate.render import Scene

CHUNK = 500
TIDAL = 2  # the simulator's label of tidal features


class Linear:
    """The linear model of the default score, fitted on a set, with its two chi^2 terms."""

    def __init__(self, images: np.ndarray, components: int = 50, seed: int = 0):
        self.settings = dataclasses.replace(ScoreSettings(), linear_components=components)
        rng = np.random.default_rng(seed)
        self.mean, self.components = fit_linear(self.settings, images)
        models = linear_model(self.mean, self.components, images, self.settings.robust_iterations)
        self.edges, self.variances = fit_linear_levels(self.settings, images, models, 64, rng)
        self.extended_edges, self.extended_variances = fit_linear_levels(
            self.settings, images, models, 64, rng, sigma=self.settings.extended_sigma
        )

    def chi2(self, images: np.ndarray, extended: bool) -> np.ndarray:
        sigma = self.settings.extended_sigma if extended else self.settings.smooth_sigma
        edges = self.extended_edges if extended else self.edges
        variances = self.extended_variances if extended else self.variances
        out = []
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            model = linear_model(self.mean, self.components, chunk, self.settings.robust_iterations)
            residual, level = residual_maps(chunk, model, sigma)
            model = level_variances(knots_of(edges), tf.constant(variances), level)
            out.append((tf.square(residual) / model).numpy())
        return np.concatenate(out)

    def score(self, images: np.ndarray, extended: bool, mask=None) -> np.ndarray:
        fraction = self.settings.extended_top_fraction if extended else self.settings.top_fraction
        return top_mean(self.chi2(images, extended), fraction, mask)


def top_mean(chi2: np.ndarray, fraction: float, mask=None) -> np.ndarray:
    """Mean of the highest ``fraction`` of each map (``mask``: (N, H, W) pixels counted as 0)."""
    n = len(chi2)
    if mask is not None:
        chi2 = chi2 * ~mask[..., None]
    flat = chi2.reshape(n, -1)
    k = max(1, round(fraction * flat.shape[1]))
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)


def robust_z(values: np.ndarray) -> np.ndarray:
    logs = np.log(np.maximum(values, 1e-30))
    centre = np.median(logs)
    return (logs - centre) / (1.4826 * np.median(np.abs(logs - centre)))


def neighbour_masks(light: np.ndarray, noise: np.ndarray, threshold: float = 3.0):
    """Pixels of deblended sources whose peak is not the target's (watershed of the 1-px smoothed
    band sum from its local maxima above 2 x ``threshold`` sigma, inside the pixels above it)."""
    size = light.shape[1]
    centre = (size - 1) / 2
    masks = np.zeros(light.shape, bool)
    for i, image in enumerate(light):
        smoothed = ndimage.gaussian_filter(image, 1.0)
        sigma = noise[i] / (2 * np.sqrt(np.pi))  # white noise through a 1-px Gaussian
        detected = smoothed > threshold * sigma
        peaks = (smoothed == ndimage.maximum_filter(smoothed, size=5)) & (
            smoothed > 2 * threshold * sigma
        )
        markers, count = ndimage.label(peaks)
        if count == 0:
            continue
        where = ndimage.center_of_mass(peaks, markers, range(1, count + 1))
        distance = [np.hypot(y - centre, x - centre) for y, x in where]
        target = int(np.argmin(distance)) + 1 if min(distance) <= 3.0 else -2
        inverted = 255 * (1 - (smoothed - smoothed.min()) / (np.ptp(smoothed) + 1e-30))
        seeds = markers.astype(np.int16)
        seeds[~detected] = -1
        segments = ndimage.watershed_ift(inverted.astype(np.uint8), seeds)
        masks[i] = detected & (segments > 0) & (segments != target)
    return masks


def mirror_residual(light: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """chi^2 (top 20%) of the 1.5-px smoothed residual against the image's own mirror-symmetric
    version: turned to the light's principal axes about its centroid, averaged with its
    reflections about both axes. An ellipse is symmetric so; one-sided or S-shaped tails are not."""
    size = light.shape[1]
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty(len(light))
    for i, image in enumerate(light):
        positive = np.clip(image, 0, None) * (ndimage.gaussian_filter(image, 1) > 0.57 * noise[i])
        flux = positive.sum() + 1e-12
        cx, cy = (positive * x).sum() / flux, (positive * y).sum() / flux
        mxx = (positive * (x - cx) ** 2).sum() / flux
        myy = (positive * (y - cy) ** 2).sum() / flux
        mxy = (positive * (x - cx) * (y - cy)).sum() / flux
        angle = 0.5 * np.degrees(np.arctan2(2 * mxy, mxx - myy))
        centred = ndimage.shift(image, (-cy, -cx), order=1, mode="nearest")
        turned = ndimage.rotate(centred, angle, reshape=False, order=1, mode="nearest")
        symmetric = 0.25 * (turned + turned[::-1] + turned[:, ::-1] + turned[::-1, ::-1])
        residual = ndimage.gaussian_filter(turned - symmetric, 1.5)
        variance = 0.75 * noise[i] ** 2 / (4 * np.pi * 1.5**2)
        chi2 = np.sort((residual**2 / variance).ravel())
        out[i] = chi2[-len(chi2) // 5 :].mean()
    return out


def report(tag: str, values: np.ndarray, labels: np.ndarray, kinds: list[str]) -> None:
    cells = [f"all {roc_auc_score(labels > 0, values):.3f}"]
    for kind, chosen in kind_groups(labels, kinds).items():
        cells.append(f"{kind[:6]} {roc_auc_score(labels[chosen] > 0, values[chosen]):.2f}")
    print(f"  {tag:34s} " + " ".join(cells), flush=True)


def debris(config: SurveyConfig, labels: np.ndarray, stretch, model: Linear, count: int):
    """The first ``count`` tidal objects drawn with and without their debris (same noise)."""
    rows = np.where(labels == TIDAL)[0][:count]
    draw = Scene.add_map

    def without(index):
        Scene.add_map = lambda self, values, _draw=draw: _draw(self, 0 * values)
        try:
            return stamps._render_object(config, int(index), TIDAL, noise=False)[0]
        finally:
            Scene.add_map = draw

    full = np.stack([stamps._render_object(config, int(i), TIDAL, noise=False)[0] for i in rows])
    host = np.stack([without(i) for i in rows])
    sigma = sky_sigma(config)
    part = full - host
    snr = np.sqrt(((part / sigma) ** 2).sum(axis=(1, 2, 3)))
    fraction = part.sum(axis=(1, 2, 3)) / host.sum(axis=(1, 2, 3))
    pair = np.concatenate([full, host])
    noisy = apply_survey_noise(pair, sigma, SurveyNoise(flux_scale=1.0), np.random.default_rng(7))
    noise = (noisy - pair)[: len(rows)]
    images = stretch(pair + np.concatenate([noise, noise])).numpy()
    with_it, without_it = images[: len(rows)], images[len(rows) :]
    difference = with_it - without_it
    iterations = model.settings.robust_iterations
    kept = linear_model(model.mean, model.components, with_it, iterations) - linear_model(
        model.mean, model.components, without_it, iterations
    )
    reproduced = (difference * kept).sum(axis=(1, 2, 3)) / (difference**2).sum(axis=(1, 2, 3))
    extended = model.score(with_it, True) / model.score(without_it, True)
    print(
        f"debris of {len(rows)} tidal objects: matched-filter S/N median {np.median(snr):.0f} "
        f"(10-90%: {np.percentile(snr, 10):.0f}-{np.percentile(snr, 90):.0f}), flux "
        f"{np.median(fraction):.1%} of the host's; the PCA-50 model reproduces "
        f"{np.median(reproduced):.0%} of it (median); extended score with/without it "
        f"{np.median(extended):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=str(common.QUALITY / "sets"))
    parser.add_argument("--objects", type=int, default=60, help="tidal objects redrawn")
    args = parser.parse_args()
    print(common.machine())
    path = common.build_simulated_sets(Path(args.sets), names=["sim_noise_tune"])
    with h5py.File(path["sim_noise_tune"]) as f:
        flux = f["images"][...].astype(np.float32)
        labels = f["labels"][...]
        kinds = json.loads(f.attrs["kind_names"])
        drawn = json.loads(f.attrs["config"])
    config = SurveyConfig(
        **{k: drawn[k] for k in ("n_objects", "size", "seed", "anomaly_fraction")}
    )  # as common draws it
    n, size, _, bands = flux.shape
    stretch = auto_stretch(measured_sky(flux[:512]))
    images = np.concatenate([stretch(flux[i : i + CHUNK]).numpy() for i in range(0, n, CHUNK)])
    model = Linear(images)
    debris(config, labels, stretch, model, args.objects)

    linear, extended = model.score(images, False), model.score(images, True)
    features = np.concatenate([morphology(flux[i : i + CHUNK]).numpy() for i in range(0, n, CHUNK)])
    centre = np.median(features, 0)
    standard = (features - centre) / (1.4826 * np.median(np.abs(features - centre), 0) + 1e-9)
    reference = standard[np.random.default_rng(0).choice(n, min(n, 4000), replace=False)]
    distances, _ = NearestNeighbors(n_neighbors=6).fit(reference).kneighbors(standard)
    morph = distances[:, 1:].mean(1)
    proxy = robust_z(linear) + robust_z(extended) + robust_z(morph)
    print("\nterms (AUROC, all anomalies and per kind against the normal objects):")
    for tag, values in (
        ("linear", linear),
        ("extended", extended),
        ("morphology k-NN", morph),
        ("proxy: linear+extended+morphology", proxy),
    ):
        report(tag, values, labels, kinds)

    print("\nthe extended term with fewer or more components:")
    for components in (5, 10, 20, 100):
        other = Linear(images, components).score(images, True)
        report(f"extended, {components} components", other, labels, kinds)
        report(
            "  in the proxy", robust_z(linear) + robust_z(other) + robust_z(morph), labels, kinds
        )

    noise = np.concatenate([stamp_noise(flux[i : i + CHUNK]).numpy() for i in range(0, n, CHUNK)])
    total = np.sqrt((noise**2).sum(1))
    light = flux.sum(-1)
    print("\nneighbours masked out of the chi^2 maps:")
    for threshold in (3.0, 5.0):
        masks = neighbour_masks(light, total, threshold)
        masked_ext = top_mean(model.chi2(images, True), 0.3, masks)
        report(
            f"extended, masked at {threshold:g} sigma ({masks.mean():.0%})",
            masked_ext,
            labels,
            kinds,
        )
        report(
            "  in the proxy",
            robust_z(linear) + robust_z(masked_ext) + robust_z(morph),
            labels,
            kinds,
        )

    print("\nresiduals relative to galaxies of the same size (median log in r50 quintiles):")
    r50 = features[:, feature_names(bands).index("r50")]
    bins = np.searchsorted(np.quantile(r50, [0.2, 0.4, 0.6, 0.8]), r50)
    conditioned = [
        np.log(v) - np.array([np.median(np.log(v)[bins == b]) for b in bins])
        for v in (linear, extended)
    ]
    report(
        "proxy, size-conditioned",
        robust_z(np.exp(conditioned[0])) + robust_z(np.exp(conditioned[1])) + robust_z(morph),
        labels,
        kinds,
    )

    print("\nthe mirror-symmetric residual:")
    mirror = mirror_residual(light, total)
    report("mirror residual alone", mirror, labels, kinds)
    report("  in the proxy", proxy + robust_z(mirror), labels, kinds)


if __name__ == "__main__":
    main()
