"""Which terms of a score find which anomalies, on the sets that quality.py scored (run it first):
every candidate term and rank-level combination of them, AUROC / AP overall and per kind.

Terms, per object, from the run's own networks and the data set's pixels:
  gan_residual   the default score's noise-aware residual (brightness-binned scatter)
  gan_stamp      the same residual with the scatter rescaled by the stamp's own sky noise
  gan_feature    density of the critic's last features
  gan_layers_*   density (5-NN, Mahalanobis under PCA) of every critic layer's spatial mean and
                 maximum per channel: features of several critic layers
  lin_wide       the linear residual smoothed by 3 px, chi^2 over the top 30% of pixels (faint,
                 extended misfit; measured here first, now the default's ``extended`` term)
  sharp          fine structure sharper than the PSF (cosmic rays, hot or dead columns), as
                 L.A.Cosmic sees it: |x - median3(x)| over the stamp noise plus the fine structure
                 median3 - median7(median3), top 0.5% of pixels, from the flux
  pca_error      PCA-50 reconstruction error of the pixels smoothed by 2 px (a linear model)
  morph_knn      5-NN distance in standardised morphology parameters (tfanomaly.models.morphology)
  morph_forest   isolation forest on the same parameters (the astronomer's classical peer)
Combinations: the mean or the maximum of the terms' robust z of log, and the mean of their rank
quantiles. Prints the table and writes terms.npz per set for further study.

  python studies/quality_terms.py [--out studies/out/quality] [--sets a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import common
import numpy as np

from tfanomaly.data.dataset import load_dataset
from tfanomaly.models.morphology import morphology
from tfanomaly.models.score_config import ScoreSettings
from tfanomaly.pipelines.evaluate import baseline_scores, metrics
from tfanomaly.results.catalog import read_results


def robust_z(values: np.ndarray) -> np.ndarray:
    logs = np.log(np.maximum(values - values.min() + 1e-6 * (np.ptp(values) + 1e-30), 1e-30))
    centre = np.median(logs)
    return (logs - centre) / (1.4826 * np.median(np.abs(logs - centre)) + 1e-12)


def density_terms(features: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors

    centre = np.median(features, axis=0)
    scale = 1.4826 * np.median(np.abs(features - centre), axis=0) + 1e-6
    standard = np.clip((features - centre) / scale, -50, 50)
    distances, _ = NearestNeighbors(n_neighbors=6).fit(standard).kneighbors(standard)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(standard)
    return {"knn": distances[:, 1:].mean(axis=1), "forest": -forest.score_samples(standard)}


def layer_features(critic, data: Path, ids: np.ndarray) -> np.ndarray:
    """Every critic layer's spatial mean and maximum per channel, in the order of ``ids``."""
    import keras

    names = [layer.name for layer in critic.layers if layer.name.endswith("_lrelu")]
    model = keras.Model(critic.inputs, [critic.get_layer(n).output for n in names])
    rows, seen = [], []
    for batch in load_dataset(data, batch_size=256):
        maps = model(batch["image"], training=False)
        rows.append(
            np.concatenate(
                [
                    np.concatenate(
                        [m.numpy().mean(axis=(1, 2)), m.numpy().max(axis=(1, 2))], axis=1
                    )
                    for m in maps
                ],
                axis=1,
            )
        )
        seen.append(batch["object_id"].numpy())
    order = {int(i): k for k, i in enumerate(np.concatenate(seen).tolist())}
    return np.concatenate(rows)[[order[int(i)] for i in ids]]


def mahalanobis_pca(features: np.ndarray, variance: float = 0.95) -> np.ndarray:
    """Squared Mahalanobis distance under a PCA Gaussian keeping ``variance`` of the spread, plus
    the residual off those axes at the mean left-over variance (probabilistic PCA)."""
    from sklearn.decomposition import PCA

    centre = np.median(features, axis=0)
    scale = 1.4826 * np.median(np.abs(features - centre), axis=0) + 1e-6
    standard = np.clip((features - centre) / scale, -50, 50)
    pca = PCA(n_components=variance, svd_solver="full").fit(standard)
    projected = pca.transform(standard)
    rest = np.sum((standard - pca.mean_) ** 2, axis=1) - np.sum(projected**2, axis=1)
    noise = max(pca.noise_variance_, 1e-6)
    return np.sum(projected**2 / pca.explained_variance_, axis=1) + rest / noise


def sharp_structure(flux: np.ndarray, noise: np.ndarray, top: float = 0.005) -> np.ndarray:
    """Per cutout (B, H, W, C flux, B, C stamp noise): the mean of the top ``top`` of
    (|x - m3| / (noise + |m3 - m7(m3)|))^2 over pixels and bands, m3 and m7 median filters of 3
    and 7 pixels. A cosmic ray or a one-pixel column leaves m3 at the sky, a resolved core does not."""
    from scipy.ndimage import median_filter

    m3 = median_filter(flux, size=(1, 3, 3, 1), mode="reflect")
    m7 = median_filter(m3, size=(1, 7, 7, 1), mode="reflect")
    sigma = np.maximum(noise, 1e-12)[:, None, None, :]
    ratio = np.abs(flux - m3) / (sigma + np.abs(m3 - m7))
    flat = np.sort(ratio.reshape(len(flux), -1) ** 2, axis=1)
    k = max(1, round(top * flat.shape[1]))
    return flat[:, -k:].mean(axis=1)


def add_later_terms(folder: Path, terms: dict) -> dict:
    """The gan_layers_*, sharp and lin_wide terms of a set whose terms.npz was written before they
    existed."""
    from tfanomaly.models.morphology import stamp_noise
    from tfanomaly.pipelines.run import load_inverter

    if "lin_wide" in terms:
        return terms
    ids = read_results(folder / "scores")[0]["object_ids"]
    features = layer_features(load_inverter(folder / "run").critic, folder / "tfrecords", ids)
    terms["gan_layers_knn"] = density_terms(features)["knn"]
    terms["gan_layers_maha"] = mahalanobis_pca(features)
    sharp, seen = [], []
    for batch in load_dataset(folder / "tfrecords", batch_size=256, stretch=None):
        flux = batch["image"]
        sharp.append(sharp_structure(flux.numpy(), stamp_noise(flux).numpy()))
        seen.append(batch["object_id"].numpy())
    order = {int(i): k for k, i in enumerate(np.concatenate(seen).tolist())}
    terms["sharp"] = np.concatenate(sharp)[[order[int(i)] for i in ids]]
    batches = list(load_dataset(folder / "tfrecords", batch_size=512))
    pixels = np.concatenate([b["image"].numpy() for b in batches])
    order = {
        int(i): k
        for k, i in enumerate(np.concatenate([b["object_id"].numpy() for b in batches]).tolist())
    }
    wide = dataclasses.replace(ScoreSettings(), smooth_sigma=3.0, top_fraction=0.3)
    terms["lin_wide"] = linear_residual(pixels, wide)[[order[int(i)] for i in ids]]
    np.savez(folder / "terms.npz", **terms)
    return terms


def terms_for(folder: Path) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from tfanomaly.models.morphology import stamp_noise
    from tfanomaly.pipelines.run import load_inverter

    cache = folder / "terms.npz"
    if cache.exists():
        with np.load(cache) as f:
            return add_later_terms(folder, dict(f))
    data, results = folder / "tfrecords", folder / "scores"
    columns, _ = read_results(results)
    ids = columns["object_ids"]
    inverter = load_inverter(folder / "run")
    scorer = inverter.noise_score
    stamp, morph_flux, morph_stretched, seen, pixels = [], [], [], [], []
    raw_batches = iter(load_dataset(data, batch_size=256, stretch=None))
    for batch in load_dataset(data, batch_size=256):
        raw = next(raw_batches)["image"]
        images = batch["image"]
        out = inverter(images, flux=raw)
        chi2 = scorer.chi2_map(images, out["reconstruction"])
        noise = stamp_noise(images)  # stretched units, per band
        stamp.append((chi2, noise))
        morph_flux.append(morphology(raw).numpy())
        morph_stretched.append(morphology(images).numpy())
        seen.append(batch["object_id"].numpy())
        pixels.append(images.numpy())
    noises = np.concatenate([n.numpy() for _, n in stamp])
    typical = np.median(noises, axis=0)
    gan_stamp = []
    for chi2, noise in stamp:
        # chi2 was divided by the set's scatter; rescale by the stamp's sky variance over the
        # typical one (capped below so that a noiseless stamp does not explode).
        ratio = tf.square(tf.maximum(noise / typical, 0.3))[:, None, None, :]
        flat = tf.reshape(chi2 / ratio, [chi2.shape[0], -1])
        k = max(1, round(scorer.settings.top_fraction * flat.shape[1]))
        gan_stamp.append(tf.reduce_mean(tf.math.top_k(flat, k).values, axis=1).numpy())
    lin_resid = linear_residual(np.concatenate(pixels), scorer.settings)
    order = {int(i): k for k, i in enumerate(np.concatenate(seen).tolist())}
    index = np.array([order[int(i)] for i in ids])
    terms = {
        "labels": columns["labels"],
        "gan_residual": columns["residual_scores"],
        "gan_feature": columns["feature_scores"],
        "gan_default": columns["scores"],
        "paper_anomaly": columns["anomaly_scores"],
        "gan_stamp": np.concatenate(gan_stamp)[index],
        "lin_resid": lin_resid[index],
    }
    vectors, _ = read_results(results, with_vectors=True)
    axes = vectors["feature_axes"]
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=6).fit(axes).kneighbors(axes)
    terms["gan_feature_knn"] = distances[:, 1:].mean(axis=1)
    baselines = baseline_scores(data, ids)
    terms.update({f"baseline_{k}": v for k, v in baselines.items()})
    terms["pca_error"] = baselines["pca_error_smoothed"]
    for name, values in (("flux", morph_flux), ("stretched", morph_stretched)):
        features = np.concatenate(values)[index]
        for kind, column in density_terms(features).items():
            terms[f"morph_{name}_{kind}"] = column
    terms["baseline_morphology_forest"] = terms["morph_flux_forest"]
    np.savez(cache, **terms)
    return add_later_terms(folder, terms)


def linear_residual(images: np.ndarray, settings, n_components: int = 50) -> np.ndarray:
    """The default score's noise-aware residual with a PCA-50 reconstruction of the stretched
    pixels in place of G(E(x)): brightness-binned scatter fitted on the set, top-3% chi^2."""
    from sklearn.decomposition import PCA

    from tfanomaly.models.calibration import (
        Calibration,
        FeatureGaussian,
        ResidualTerm,
        Standardisation,
    )
    from tfanomaly.models.noise_score import NoiseAwareScore, residual_maps
    from tfanomaly.models.score_fit import fit_levels

    n = len(images)
    flat = images.reshape(n, -1)
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=0).fit(flat[:5000])
    recon = pca.inverse_transform(pca.transform(flat)).reshape(images.shape).astype("f4")
    residual, level = (t.numpy() for t in residual_maps(images, recon, settings.smooth_sigma))
    bands = images.shape[-1]
    rng = np.random.default_rng(0)
    pick = rng.integers(0, residual[..., 0].size, 300_000)
    edges, variances = fit_levels(
        settings, residual.reshape(-1, bands)[pick].T, level.reshape(-1, bands)[pick].T
    )
    dims = 4
    settings = dataclasses.replace(settings, terms=("residual", "feature"))  # the residual alone
    c = Calibration(
        settings=settings,
        residuals={"residual": ResidualTerm.fitted(settings, "residual", edges, variances)},
        features=FeatureGaussian(
            np.zeros(dims, "f4"), np.eye(1, dims, dtype="f4"), np.ones(1, "f4"), 1.0
        ),
        standard=Standardisation.neutral(2),
        info={},
    )
    scorer = NoiseAwareScore(c)
    return np.concatenate(
        [
            scorer.residual_score(images[k : k + 512], recon[k : k + 512]).numpy()
            for k in range(0, n, 512)
        ]
    )


def combinations(terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    parts = (
        "gan_residual",
        "gan_stamp",
        "gan_feature",
        "gan_feature_knn",
        "gan_layers_knn",
        "gan_layers_maha",
        "pca_error",
        "lin_resid",
        "morph_flux_knn",
        "morph_stretched_knn",
        "sharp",
        "lin_wide",
    )
    features = ("gan_feature", "gan_feature_knn", "gan_layers_knn", "gan_layers_maha")
    z = {k: robust_z(terms[k]) for k in parts}
    ranks = {k: (np.argsort(np.argsort(terms[k])) + 0.5) / len(terms[k]) for k in parts}
    out = {}
    for size in (2, 3, 4):
        for combo in itertools.combinations(parts, size):
            if "gan_residual" in combo and "gan_stamp" in combo:
                continue
            if "morph_flux_knn" in combo and "morph_stretched_knn" in combo:
                continue
            if sum(c in features for c in combo) > 1:
                continue
            name = "+".join(c.replace("morph_", "m_").replace("gan_", "g_") for c in combo)
            out[f"mean z {name}"] = np.mean([z[c] for c in combo], axis=0)
            out[f"max z {name}"] = np.max([z[c] for c in combo], axis=0)
            out[f"rank {name}"] = np.mean([ranks[c] for c in combo], axis=0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.QUALITY))
    parser.add_argument("--sets", default=None)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    names = (
        args.sets.split(",")
        if args.sets
        else sorted(p.parent.parent.name for p in out.glob("*/scores/evaluation.json"))
    )
    summary = {}
    for name in names:
        terms = terms_for(out / name)
        labels = terms.pop("labels") > 0
        scores = {**terms, **combinations(terms)}
        summary[name] = {k: metrics(labels, v) for k, v in scores.items()}
        best_single = max((k for k in terms), key=lambda k: summary[name][k]["auroc"])
        print(f"\n{name}: best single term {best_single} {summary[name][best_single]['auroc']:.3f}")
        for key in list(terms):
            m = summary[name][key]
            print(f"  {key:45s} {m['auroc']:.3f} {m['average_precision']:.3f}")
    if names:
        keys = list(summary[names[0]])
        mean = {k: np.mean([summary[n][k]["auroc"] for n in names]) for k in keys}
        worst = {
            k: min(
                summary[n][k]["auroc"]
                - max(summary[n][b]["auroc"] for b in summary[n] if b.startswith("baseline_"))
                for n in names
            )
            for k in keys
        }
        print(f"\nmean AUROC over {names}, and the worst margin over the best baseline:")
        for key in sorted(keys, key=lambda k: -worst[k])[: args.top]:
            cells = " ".join(
                f"{summary[n][key]['auroc']:.3f}/{summary[n][key]['average_precision']:.3f}"
                for n in names
            )
            print(f"  {key:60s} mean {mean[key]:.3f} worst margin {worst[key]:+.3f}  {cells}")


if __name__ == "__main__":
    main()
