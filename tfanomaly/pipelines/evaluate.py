"""How well scores find labelled anomalies: AUROC, average precision and precision@k for every score
and anomaly kind, beside classical baselines (isolation forests on PCA features, as in Astronomaly).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfanomaly.data.dataset import load_dataset
from tfanomaly.errors import InputError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.models.scores import SCORES
from tfanomaly.pipelines.config import EvaluateConfig
from tfanomaly.results.catalog import SCORE_KEYS, json_attr, read_results

# Classical baselines, computed in the same run from the same stretched pixels.
BASELINES = {
    "isolation_forest": "isolation forest (PCA-50)",
    "isolation_forest_smoothed": "isol. forest (smoothed PCA)",
    "pca_error_smoothed": "PCA-50 error (smoothed)",
    "knn_smoothed": "5-NN distance (smoothed PCA)",
    "morphology_forest": "isol. forest (morphology)",
}
SCORE_NAMES = {**{score.results: score.label for score in SCORES}, **BASELINES}
BASELINE_SMOOTH_SIGMA = 2.0  # px; the best of 0-2 px for forest and k-NN on the tuning survey
KNN_NEIGHBOURS = 5


def precision_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of true anomalies among the ``k`` highest scores."""
    if k < 1:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUROC, average precision, precision@k (k = number of anomalies) and precision@1%."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        return {
            "n_anomalies": positives,
            "auroc": math.nan,
            "average_precision": math.nan,
            "precision_at_k": math.nan,
            "precision_at_1pct": math.nan,
        }
    return {
        "n_anomalies": positives,
        "auroc": float(roc_auc_score(labels, scores)),
        "average_precision": float(average_precision_score(labels, scores)),
        "precision_at_k": precision_at_k(labels, scores, positives),
        "precision_at_1pct": precision_at_k(labels, scores, max(1, math.ceil(0.01 * len(labels)))),
    }


def knn_distance(
    neighbours, reference_ids: np.ndarray, points: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """Mean distance of each point to its k nearest reference points other than itself.

    ``neighbours`` is a NearestNeighbors fitted on the reference set with k + 1 neighbours. A
    point that is in the reference set finds itself, at a distance that is 0 only up to rounding
    (its projection was computed in another batch): it is left out by its id, and for any other
    point the farthest of the k + 1 neighbours is.
    """
    distances, found = neighbours.kneighbors(points)
    own = reference_ids[found] == np.asarray(ids)[:, None]
    own[:, -1] |= ~own.any(axis=1)
    return distances[~own].reshape(len(distances), -1).mean(axis=1)


def baseline_scores(
    data_dir,
    object_ids: np.ndarray,
    seed: int = 0,
    n_components: int = 50,
    fit_size: int = 20000,
    smooth_sigma: float = BASELINE_SMOOTH_SIGMA,
) -> dict[str, np.ndarray]:
    """The classical baselines, in the order of ``object_ids`` (higher = more anomalous):
    an isolation forest on the PCA of the stretched pixels (Astronomaly's recipe), the same on
    pixels smoothed with a Gaussian of ``smooth_sigma`` px (which suppresses the sky noise the
    stretch amplifies), the PCA reconstruction error of the smoothed pixels, and the mean distance
    to the 5 nearest fitted cutouts in the whitened PCA space of the smoothed pixels. PCA, forests
    and neighbours are fitted on at most ``fit_size`` cutouts; scoring streams through the data."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import NearestNeighbors

    from tfanomaly.models.filters import smooth

    def pixels(batch):
        images = batch["image"]
        flat = len(batch["idx"]), -1
        return images.numpy().reshape(flat), smooth(images, smooth_sigma).numpy().reshape(flat)

    fit_raw, fit_smooth, fit_ids, ids = [], [], [], []
    for batch in load_dataset(data_dir, batch_size=512, shuffle=True, seed=seed):
        if sum(len(b) for b in fit_raw) >= fit_size:
            break
        raw, smoothed = pixels(batch)
        fit_raw.append(raw)
        fit_smooth.append(smoothed)
        fit_ids.append(batch["object_id"].numpy())
    fit_ids = np.concatenate(fit_ids)[:fit_size]
    models, fit_projected = {}, {}
    for name, fit in (("raw", fit_raw), ("smooth", fit_smooth)):
        fit = np.concatenate(fit)[:fit_size]
        pca = PCA(n_components=min(n_components, *fit.shape), random_state=seed).fit(fit)
        fit_projected[name] = pca.transform(fit)
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(fit_projected[name])
        models[name] = pca, forest
    smooth_pca = models["smooth"][0]
    scale = np.sqrt(smooth_pca.explained_variance_)
    neighbours = NearestNeighbors(n_neighbors=KNN_NEIGHBOURS + 1).fit(
        fit_projected["smooth"] / scale
    )
    columns: dict[str, list] = {name: [] for name in BASELINES}
    for batch in load_dataset(data_dir, batch_size=512):
        ids.append(batch["object_id"].numpy())
        raw, smoothed = pixels(batch)
        projected = {
            "raw": models["raw"][0].transform(raw),
            "smooth": smooth_pca.transform(smoothed),
        }
        for key, name in (("isolation_forest", "raw"), ("isolation_forest_smoothed", "smooth")):
            columns[key].append(-models[name][1].score_samples(projected[name]))
        reconstructed = smooth_pca.inverse_transform(projected["smooth"])
        columns["pca_error_smoothed"].append(np.square(smoothed - reconstructed).sum(axis=1))
        columns["knn_smoothed"].append(
            knn_distance(
                neighbours, fit_ids, projected["smooth"] / scale, batch["object_id"].numpy()
            )
        )
    columns["morphology_forest"] = [morphology_forest(data_dir, fit_ids, seed)]
    where = {int(i): k for k, i in enumerate(np.concatenate(ids).tolist())}
    try:
        order = np.array([where[int(i)] for i in object_ids])
    except KeyError as exc:
        raise InputError(f"object {exc.args[0]} of the results is not in {data_dir}") from exc
    return {name: np.concatenate(values)[order] for name, values in columns.items()}


def morphology_forest(data_dir, fit_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """The physical-parameter peer: an isolation forest on the standard morphology parameters
    (size, concentration, asymmetry, smoothness, Gini, ellipticity, centroid offset, peak
    fraction, stamp noise, colours) of the raw flux, standardised by median and MAD, fitted on
    the cutouts ``fit_ids``; in the data set's record order."""
    from sklearn.ensemble import IsolationForest

    from tfanomaly.models.morphology import morphology

    features, ids = [], []
    for batch in load_dataset(data_dir, batch_size=512, stretch=None):
        features.append(morphology(batch["image"]).numpy())
        ids.append(batch["object_id"].numpy())
    features, ids = np.concatenate(features), np.concatenate(ids)
    fit = np.isin(ids, fit_ids)
    centre = np.median(features[fit], axis=0)
    scale = 1.4826 * np.median(np.abs(features[fit] - centre), axis=0) + 1e-6
    standard = np.clip((features - centre) / scale, -50.0, 50.0)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(standard[fit])
    return -forest.score_samples(standard)


def kind_groups(labels: np.ndarray, kind_names) -> dict[str, np.ndarray]:
    """For each anomaly kind in ``labels`` (by its name, or ``label K``), the mask of that kind's
    objects and the normal ones: a kind is measured against the normal objects alone."""
    groups = {}
    for kind in sorted(set(labels[labels > 0].tolist())):
        name = kind_names[kind] if kind < len(kind_names) else f"label {kind}"
        groups[name] = (labels == 0) | (labels == kind)
    return groups


def evaluate(
    results_dir,
    config: EvaluateConfig | None = None,
    *,
    data_dir=None,
) -> dict:
    """Evaluate a scored, labelled catalog; write evaluation.json/.csv beside the results. The
    baselines (``config.baseline``) run on ``data_dir`` (default: the data set that was scored)."""
    config = config or EvaluateConfig()
    results_dir = Path(results_dir)
    columns, attrs = read_results(results_dir)
    labels = columns.get("labels")
    if labels is None or not (labels >= 0).any():
        raise InputError(
            f"{results_dir}: no labels in the results; evaluation needs a labelled (simulated) "
            "survey"
        )
    kind_names = json_attr(attrs.get("kind_names")) or []
    scores = {key: columns[key] for key in SCORE_KEYS}
    if config.baseline:
        data_dir = data_dir or attrs.get("data")
        scores.update(baseline_scores(data_dir, columns["object_ids"], seed=config.seed))
    anomalous = labels > 0
    groups = {"all": np.ones(len(labels), bool), **kind_groups(labels, kind_names)}
    table = {
        group: {key: metrics(anomalous[mask], values[mask]) for key, values in scores.items()}
        for group, mask in groups.items()
    }
    report = {"count": int(len(labels)), "n_anomalies": int(anomalous.sum()), "table": table}
    write_json_atomic(results_dir / "evaluation.json", report)
    with atomic_path(results_dir / "evaluation.csv") as tmp:
        tmp.write_text(_csv(table))
    return report


def _csv(table: dict) -> str:
    lines = ["group,score,n_anomalies,auroc,average_precision,precision_at_k,precision_at_1pct"]
    for group, rows in table.items():
        for key, m in rows.items():
            lines.append(
                f"{group},{key},{m['n_anomalies']},{m['auroc']:.4f},"
                f"{m['average_precision']:.4f},{m['precision_at_k']:.4f},"
                f"{m['precision_at_1pct']:.4f}"
            )
    return "\n".join(lines) + "\n"


def format_table(report: dict) -> str:
    """The evaluation as aligned text: every metric over all anomalies, then the AUROC of every
    score for each kind (that kind against the normal objects); the full table is in the JSON."""
    table = report["table"]
    kinds = [group for group in table if group != "all"]
    lines = [
        f"{report['count']} objects, {report['n_anomalies']} labelled anomalies",
        f"{'all anomalies':30s} {'AUROC':>6s} {'AP':>6s} {'P@k':>6s} {'P@1%':>6s}",
    ]
    for key, m in table["all"].items():
        lines.append(
            f"{SCORE_NAMES.get(key, key):30s} {m['auroc']:6.3f} {m['average_precision']:6.3f} "
            f"{m['precision_at_k']:6.3f} {m['precision_at_1pct']:6.3f}"
        )
    if kinds:
        lines.append(f"{'AUROC per kind (n)':30s} " + " ".join(f"{kind[:9]:>9s}" for kind in kinds))
        lines.append(
            f"{'':30s} "
            + " ".join(
                f"{'(' + str(table[kind][next(iter(table[kind]))]['n_anomalies']) + ')':>9s}"
                for kind in kinds
            )
        )
        for key in table["all"]:
            lines.append(
                f"{SCORE_NAMES.get(key, key):30s} "
                + " ".join(f"{table[kind][key]['auroc']:9.3f}" for kind in kinds)
            )
    return "\n".join(lines)
