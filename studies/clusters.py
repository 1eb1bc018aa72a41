"""How well do the UMAP + HDBSCAN clusters separate the anomaly kinds? Adjusted Rand index and
cluster purity against the simulated labels, for CAE latents of residual images (the paper), CAE
latents of the real images, and raw residual pixels.

Uses a trained run and its data set (e.g. from detection.py); the sample is every
labelled anomaly plus four times as many random normal objects.
Usage: python studies/clusters.py --run studies/out/det32/run_seed1 \\
    --data studies/out/det32/tfrecords [--out studies/out/clusters]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import h5py
import numpy as np

from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.characterise import embed, train_cae
from tfanomaly.pipelines.config import CaeTrainConfig, ScoreConfig
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import read_results


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of clustered objects (noise excluded) whose cluster's majority kind is theirs."""
    inside = clusters >= 0
    if not inside.any():
        return float("nan")
    hits = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters[inside]))
    return hits / inside.sum()


def cluster_pixels(pixels: np.ndarray, seed: int) -> np.ndarray:
    import umap
    from sklearn.cluster import HDBSCAN

    embedding = umap.UMAP(n_neighbors=5, min_dist=0.1, random_state=seed, n_jobs=1).fit_transform(
        pixels
    )
    return HDBSCAN(min_cluster_size=5, copy=True).fit_predict(embedding)


def main() -> None:
    from sklearn.metrics import adjusted_rand_score

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default=str(common.OUT / "clusters"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    scores = out / "scores"
    if not (scores / "results.h5").exists():
        score(
            args.run,
            args.data,
            scores,
            ScoreConfig(batch_size=256, store_images=True, inversion=InversionConfig(steps=0)),
            progress=False,
            echo=lambda *_: None,
        )
    columns, _ = read_results(scores)
    labels = columns["labels"]
    rng = np.random.default_rng(args.seed)
    anomalies = np.flatnonzero(labels > 0)
    normals = rng.choice(np.flatnonzero(labels == 0), 4 * len(anomalies), replace=False)
    ids_file = out / "sample_ids.txt"
    ids_file.write_text(
        "\n".join(str(int(i)) for i in columns["object_ids"][np.concatenate([anomalies, normals])])
    )
    selection = f"ids:{ids_file}"
    print(
        f"sample: {len(anomalies)} anomalies of {len(set(labels[anomalies]))} kinds + "
        f"{len(normals)} normal objects"
    )
    print(
        f"{'features':32s} {'clusters':>8s} {'noise':>6s} {'ARI':>6s} {'purity':>7s} "
        f"{'ARI (anomalies only)':>21s}"
    )
    rows_sorted = np.sort(np.concatenate([anomalies, normals]))
    truth = labels[rows_sorted]
    for images in ("residuals", "reals"):
        cae_dir = out / f"cae_{images}"
        train_cae(
            scores,
            cae_dir,
            CaeTrainConfig(
                selection=selection,
                images=images,
                steps=args.steps,
                checkpoint_every=500,
                seed=args.seed,
            ),
            progress=False,
            echo=lambda *_: None,
        )
        embed(cae_dir, scores, seed=args.seed)
        with h5py.File(cae_dir / "embedding.h5") as f:
            clusters = f["cluster"][:]
        report(f"CAE latents of {images}", truth, clusters, adjusted_rand_score)
    with h5py.File(scores / "results.h5") as f:
        pixels = f["residuals"][rows_sorted].reshape(len(rows_sorted), -1)
    report("raw residual pixels", truth, cluster_pixels(pixels, args.seed), adjusted_rand_score)


def report(name, truth, clusters, ari) -> None:
    anomalous = truth > 0
    print(
        f"{name:32s} {clusters.max() + 1:8d} {np.mean(clusters < 0):6.0%} "
        f"{ari(truth, clusters):6.3f} {purity(truth, clusters):7.3f} "
        f"{ari(truth[anomalous], clusters[anomalous]):21.3f}"
    )


if __name__ == "__main__":
    main()
