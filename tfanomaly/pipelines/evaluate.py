"""How well scores find labelled anomalies: AUROC, average precision and precision@k for every score
and anomaly kind, beside a classical baseline (isolation forest on PCA features, as in Astronomaly).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfanomaly.errors import InputError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.pipelines.catalog import SCORE_KEYS, json_attr, read_results
from tfanomaly.pipelines.dataset import load_dataset

BASELINE = "isolation_forest"
SCORE_NAMES = {
    "anomaly_scores": "anomaly (combined)",
    "gen_scores": "generator (pixel)",
    "disc_scores": "discriminator (feature)",
    BASELINE: "isolation forest (PCA-50)",
}


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
        return {"n_anomalies": positives, "auroc": math.nan, "average_precision": math.nan,
                "precision_at_k": math.nan, "precision_at_1pct": math.nan}  # fmt: skip
    return {
        "n_anomalies": positives,
        "auroc": float(roc_auc_score(labels, scores)),
        "average_precision": float(average_precision_score(labels, scores)),
        "precision_at_k": precision_at_k(labels, scores, positives),
        "precision_at_1pct": precision_at_k(labels, scores, max(1, math.ceil(0.01 * len(labels)))),
    }


def isolation_forest_scores(data_dir, object_ids: np.ndarray, seed: int = 0,
                            n_components: int = 50, fit_size: int = 20000) -> np.ndarray:  # fmt: skip
    """The Astronomaly-style baseline: PCA of the stretched pixels, then an isolation forest;
    returned in the order of ``object_ids`` (higher = more anomalous). PCA and forest are fitted
    on at most ``fit_size`` cutouts; scoring streams through the data set in batches."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest

    fit_images, ids = [], []
    for batch in load_dataset(data_dir, batch_size=512):
        ids.append(batch["object_id"].numpy())
        if sum(len(b) for b in fit_images) < fit_size:
            fit_images.append(batch["image"].numpy().reshape(len(ids[-1]), -1))
    fit = np.concatenate(fit_images)[:fit_size]
    pca = PCA(n_components=min(n_components, *fit.shape), random_state=seed).fit(fit)
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(pca.transform(fit))
    scores = []
    for batch in load_dataset(data_dir, batch_size=512):
        pixels = batch["image"].numpy().reshape(len(batch["idx"]), -1)
        scores.append(-forest.score_samples(pca.transform(pixels)))
    by_id = dict(zip(np.concatenate(ids).tolist(), np.concatenate(scores).tolist(), strict=True))
    try:
        return np.array([by_id[int(i)] for i in object_ids])
    except KeyError as exc:
        raise InputError(f"object {exc.args[0]} of the results is not in {data_dir}") from exc


def evaluate(results_dir, *, data_dir=None, baseline: bool = True, seed: int = 0) -> dict:
    """Evaluate a scored, labelled catalog; write evaluation.json/.csv beside the results."""
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
    if baseline:
        data_dir = data_dir or attrs.get("data")
        scores[BASELINE] = isolation_forest_scores(data_dir, columns["object_ids"], seed=seed)
    anomalous = labels > 0
    groups = {"all": np.ones(len(labels), bool)}
    for kind in sorted(set(labels[anomalous].tolist())):
        name = kind_names[kind] if kind < len(kind_names) else f"label {kind}"
        groups[name] = (labels == 0) | (labels == kind)  # this kind against the normal objects
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
    """The evaluation as aligned text: one block per group, one row per score."""
    lines = [
        f"{report['count']} objects, {report['n_anomalies']} labelled anomalies",
        f"{'group':22s} {'score':27s} {'n':>5s} {'AUROC':>6s} {'AP':>6s} {'P@k':>6s} {'P@1%':>6s}",
    ]
    for group, rows in report["table"].items():
        for key, m in rows.items():
            lines.append(
                f"{group:22s} {SCORE_NAMES.get(key, key):27s} {m['n_anomalies']:5d} "
                f"{m['auroc']:6.3f} {m['average_precision']:6.3f} {m['precision_at_k']:6.3f} "
                f"{m['precision_at_1pct']:6.3f}"
            )
    return "\n".join(lines)
