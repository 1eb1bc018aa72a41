"""Which space characterises anomalies best? For a scored, labelled survey: the paper's CAE on the
residual images, the CAE on the stretched images, the encoder's z (``latents``), the critic
features on the calibration's axes (``feature_axes``), the morphology parameters, the default
score's terms, and their combinations; PCA-20 of arcsinh pixels as the baseline.

Per space, on the high-anomaly sample (the CLI's default selection, or the top 500 when it holds
fewer than 300): purity@5 among the sample's anomalies in the space and in its UMAP map, the
adjusted Rand index of the HDBSCAN clusters against the kinds, the artifact / astrophysical
separation, and "more like this" precision@12 over every scored object. Also the CAE's
reconstruction against the mean image.

  python studies/characterise_spaces.py --scores demo_run/scores --data demo_run/tfrecords \
      [--cae-steps 600] [--out studies/out/characterise.json]
About 5 minutes for a 3,000-object survey on 2 cores (first UMAP fit compiles numba: ~1 min).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common
import numpy as np

from tfanomaly.pipelines.characterise import map_and_cluster
from tfanomaly.pipelines.config import EmbedConfig
from tfanomaly.results.catalog import json_attr, read_results
from tfanomaly.results.grouping import grouping_quality, precision_similar, purity_at
from tfanomaly.results.spaces import DEFAULT_SPACE, SPACES, space_vectors

TERM_KEYS = (
    "linear_scores_sigma",
    "extended_scores_sigma",
    "feature_scores_sigma",
    "morphology_scores_sigma",
    "residual_scores_sigma",
)


def standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def balanced(*blocks: np.ndarray) -> np.ndarray:
    """Standardised blocks, each scaled to the same total variance (a block of 64 dimensions
    does not outweigh one of 5)."""
    return np.concatenate([standardise(b) / np.sqrt(b.shape[1]) for b in blocks], axis=1)


def sample_rows(columns: dict) -> np.ndarray:
    rows = np.flatnonzero(columns["scores_sigma"] > 3)
    if len(rows) < 300:
        rows = np.argsort(-columns["scores_sigma"])[:500]
    return np.sort(rows)


def raw_pixels(data_dir, object_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw flux cubes and morphology parameters in the order of ``object_ids``."""
    from tfanomaly.data.dataset import load_dataset
    from tfanomaly.models.morphology import morphology

    images, morph, ids = [], [], []
    for batch in load_dataset(data_dir, batch_size=512, stretch=None):
        images.append(batch["image"].numpy())
        morph.append(morphology(batch["image"]).numpy())
        ids.append(batch["object_id"].numpy())
    ids = np.concatenate(ids)
    order = np.argsort(ids)
    where = order[np.searchsorted(ids[order], object_ids)]
    return np.concatenate(images)[where], np.concatenate(morph)[where]


def cae_space(columns: dict, rows: np.ndarray, cube: str, steps: int, model_config, seed: int):
    """Train the CAE on ``cube`` of the sample; its latents for every object and its check."""
    import keras
    import tensorflow as tf

    from tfanomaly.models.cae import CAE, cae_encoder
    from tfanomaly.pipelines.characterise import band_statistics
    from tfanomaly.pipelines.learning import check_reconstruction

    images = columns[cube][rows].astype(np.float32)
    keras.utils.set_random_seed(seed)
    offset, scale = band_statistics(images)
    cae = CAE(model_config, band_offset=offset, band_scale=scale)
    cae.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    data = tf.data.Dataset.from_tensor_slices((images, images)).shuffle(len(images), seed=seed)
    data = data.repeat().batch(32)
    cae.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    check = check_reconstruction(f"CAE on {cube}", images, cae.predict(images, verbose=0))
    latents = cae_encoder(cae).predict(columns[cube].astype(np.float32), batch_size=256, verbose=0)
    return latents, check


def kind_purity(clusters: np.ndarray, kinds: np.ndarray) -> float:
    """Mean, over the clusters holding at least 3 anomalies, of the share of their commonest kind
    (``kinds`` > 0: the anomalies); what labelling a whole cluster at once relies on."""
    shares = []
    for cluster in np.unique(clusters[(clusters >= 0) & (kinds > 0)]):
        members = kinds[(clusters == cluster) & (kinds > 0)]
        if len(members) >= 3:
            shares.append(np.bincount(members).max() / len(members))
    return float(np.mean(shares)) if shares else float("nan")


def cluster_settings(vectors, rows, labels, kind_names, seed: int) -> None:
    """HDBSCAN settings on one space's UMAP map (the map as embed makes it)."""
    from sklearn.cluster import HDBSCAN

    sample = vectors[rows]
    embedding, _ = map_and_cluster(sample, EmbedConfig(seed=seed))
    print(
        "HDBSCAN settings (method, min_cluster_size, min_samples): ARI, separation, clusters, "
        "noise, kind purity of the clusters"
    )
    for method, size, samples in (
        ("eom", 5, None),
        ("eom", 5, 1),
        ("eom", 5, 3),
        ("leaf", 5, 3),
        ("eom", 10, 3),
    ):
        clusters = HDBSCAN(
            min_cluster_size=size, min_samples=samples, cluster_selection_method=method, copy=True
        ).fit_predict(embedding)
        f = grouping_quality(sample, clusters, labels[rows], kind_names)
        print(
            f"  {method} {size} {samples}: {f['ari']:.2f} {f['separation']:.2f} "
            f"{clusters.max() + 1} {(clusters < 0).mean():.2f} "
            f"{kind_purity(clusters, labels[rows]):.2f}"
        )


def evaluate_space(vectors, rows, labels, kind_names, seed: int) -> dict:
    """The figures of one space, its map and clusters made with embed's settings."""
    sample = vectors[rows]
    embedding, clusters = map_and_cluster(sample, EmbedConfig(seed=seed))
    figures = grouping_quality(sample, clusters, labels[rows], kind_names)
    figures["kind_purity"] = kind_purity(clusters, labels[rows])
    anomalous = labels[rows] > 0
    figures["purity5_map"] = purity_at(embedding[anomalous], labels[rows][anomalous], 5)
    figures["clusters"] = int(clusters.max() + 1)
    queries = np.flatnonzero(labels > 0)
    figures["precision12"] = precision_similar(vectors, labels, queries, 12)
    return figures


def main() -> None:
    from sklearn.decomposition import PCA

    from tfanomaly.models.config import ModelConfig
    from tfanomaly.pipelines.run import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cae-steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spaces", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    print(common.machine())
    columns, attrs = read_results(args.scores, with_images=True, with_vectors=True)
    kind_names = json_attr(attrs["kind_names"])
    labels = np.asarray(columns["labels"])
    rows = sample_rows(columns)
    print(
        f"{args.scores}: {len(labels)} objects, sample {len(rows)} "
        f"({int((labels[rows] > 0).sum())} anomalies of {int((labels > 0).sum())})"
    )
    pixels, morph = raw_pixels(args.data, columns["object_ids"])
    flat = np.arcsinh(pixels.reshape(len(pixels), -1) / np.median(np.abs(pixels)))
    model_config = ModelConfig.from_dict(load_run(str(attrs["run"]))["model"])
    terms = np.stack([columns[k] for k in TERM_KEYS if k in columns], axis=1)
    spaces = {
        "pca20_pixels": PCA(20, random_state=args.seed).fit_transform(standardise(flat)),
        "latents": standardise(columns["latents"]),
        "feature_axes": standardise(columns["feature_axes"]),
        "morphology": standardise(np.clip(standardise(morph), -10, 10)),
        "terms": standardise(terms),
    }
    checks = {}
    for cube in ("residuals", "reals"):
        latents, checks[cube] = cae_space(
            columns, rows, cube, args.cae_steps, model_config, args.seed
        )
        spaces[f"cae_{cube}"] = standardise(latents)
        print(
            f"CAE on {cube}: MSE {checks[cube]['mse']:.3g} vs mean image "
            f"{checks[cube]['mean_image_mse']:.3g} (ratio {checks[cube]['ratio']:.2f})"
        )
    clipped = np.clip(standardise(morph), -10, 10)
    shape = columns["residual_shape"]
    spaces["residual_shape"] = space_vectors(columns.__getitem__, "residual_shape")
    for name in SPACES:  # the package's own spaces, as embed and the ranker build them
        spaces[name] = space_vectors(columns.__getitem__, name)
    spaces["latents+feature_axes"] = balanced(columns["latents"], columns["feature_axes"])
    spaces["latents+terms"] = balanced(columns["latents"], terms)
    spaces["latents+morphology"] = balanced(columns["latents"], clipped)
    spaces["residual_shape+terms"] = balanced(shape, terms)
    spaces["residual_shape+morphology"] = balanced(shape, clipped)
    spaces["residual_shape+latents+terms"] = balanced(shape, columns["latents"], terms)
    spaces["residual_shape+latents+morphology"] = balanced(shape, columns["latents"], clipped)
    spaces["residual_shape+feature_axes"] = balanced(shape, columns["feature_axes"])
    spaces["latents+cae_residuals"] = balanced(columns["latents"], spaces["cae_residuals"])
    wanted = [s for s in args.spaces.split(",") if s] or list(spaces)
    results = {}
    print(f"{'space':40s} {'pur5':>5s} {'map':>5s} {'ARI':>5s} {'sep':>5s} {'P@12':>5s} {'cl':>3s}")
    for name in wanted:
        figures = evaluate_space(spaces[name], rows, labels, kind_names, args.seed)
        results[name] = figures
        print(
            f"{name:40s} {figures['purity5']:5.2f} {figures['purity5_map']:5.2f} "
            f"{figures['ari']:5.2f} {figures['separation']:5.2f} {figures['precision12']:5.3f} "
            f"{figures['clusters']:3d}"
        )
    print(f"chance purity@5 {results[wanted[0]]['chance5']:.2f}")
    cluster_settings(spaces[DEFAULT_SPACE], rows, labels, kind_names, args.seed)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "machine": common.machine(),
                    "scores": args.scores,
                    "sample": len(rows),
                    "cae": checks,
                    "spaces": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
