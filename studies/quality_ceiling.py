"""How far the default score's terms can go, on the sets that quality.py scored (run it first):
the table of docs/results/detection.md "How far these terms can go". For each set, against the
default (the calibrated weights of the stored terms):

- the *supervised* ceiling of any weighting of the same terms: a logistic regression on their
  robust z, trained with the labels and scored by 5-fold cross-validation (no unsupervised
  weighting can do better than the best linear one, up to the z's own noise);
- the same with the two GAN scores (residual, paper's anomaly) beside the terms, and with
  those and the five baselines of ``evaluate`` (computed again on the set's TFRecords, a
  minute a set);
- the best single term for each kind, and the best of the terms and the baselines that
  ``evaluate`` stored for that kind: the mean over kinds is what a combination would reach if it
  were as good as its best part on every kind at once (the kind-balanced AUROC; the default's own
  is printed beside it).

  python studies/quality_ceiling.py [--out studies/out/quality]
Seconds; no network runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from tfanomaly.pipelines.evaluate import baseline_scores, kind_groups, metrics
from tfanomaly.results.catalog import json_attr

GAN_SCORES = ("residual_scores", "anomaly_scores")


def cross_validated(features: np.ndarray, anomalous: np.ndarray, seed: int = 0) -> np.ndarray:
    """Out-of-fold decision values of a class-balanced logistic regression (5 folds)."""
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    model = LogisticRegression(max_iter=5000, class_weight="balanced")
    return cross_val_predict(model, features, anomalous, cv=folds, method="decision_function")


def per_kind(stored: common.StoredSet, values: np.ndarray) -> dict[str, float]:
    """AUROC of each labelled kind against the normal objects, by the kind's name."""
    names = json_attr(stored.attrs.get("kind_names")) or []
    return {
        name: metrics(stored.anomalous[chosen], values[chosen])["auroc"]
        for name, chosen in kind_groups(stored.labels, names).items()
    }


def best_stored(folder: Path, kinds) -> list[float]:
    """The highest AUROC of any score ``evaluate`` stored (terms and baselines) for each kind."""
    table = json.loads((folder / "scores" / "evaluation.json").read_text())["table"]
    return [max(row["auroc"] for row in table[kind].values()) for kind in kinds]


def log_scores(values) -> np.ndarray:
    """(N, scores) logs of positive scores (baselines below 0 are shifted up to 0 first)."""
    return np.stack([np.log(np.maximum(v - min(v.min(), 0.0), 1e-30)) for v in values], axis=1)


def report(name: str, folder: Path) -> None:
    stored = common.StoredSet(folder)
    labels, anomalous = stored.labels, stored.anomalous
    z = stored.standardised()
    gan = log_scores([stored.columns[k] for k in GAN_SCORES])
    baselines = log_scores(
        baseline_scores(folder / "tfrecords", stored.columns["object_ids"]).values()
    )
    default = stored.default()
    rows = {
        "default (unsupervised)": default,
        "logistic on the terms' z (CV)": cross_validated(z, anomalous),
        "logistic, terms + GAN scores (CV)": cross_validated(np.hstack([z, gan]), anomalous),
        "logistic, + the baselines (CV)": cross_validated(
            np.hstack([z, gan, baselines]), anomalous
        ),
    }
    kinds = list(per_kind(stored, default))
    singles = np.hstack([z, gan]).T
    best_term = np.max([list(per_kind(stored, single).values()) for single in singles], axis=0)
    best_any = best_stored(folder, kinds)
    print(
        f"\n{name} ({int(anomalous.sum())} anomalies of {len(labels)}; terms "
        f"{', '.join(stored.calibration.terms)})"
    )
    print(
        f"  {'':36s} {'AUROC':>6s} {'AP':>6s} {'kinds':>6s}  "
        + " ".join(f"{kind[:7]:>7s}" for kind in kinds)
    )
    for tag, values in rows.items():
        m = metrics(anomalous, values)
        kind_auroc = per_kind(stored, values)
        print(
            f"  {tag:36s} {m['auroc']:6.3f} {m['average_precision']:6.3f} "
            f"{np.mean(list(kind_auroc.values())):6.3f}  "
            + " ".join(f"{kind_auroc[k]:7.2f}" for k in kinds)
        )
    for tag, best in (
        ("best term per kind", best_term),
        ("best term or baseline per kind", best_any),
    ):
        print(
            f"  {tag:36s} {'':6s} {'':6s} {np.mean(best):6.3f}  "
            + " ".join(f"{b:7.2f}" for b in best)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.QUALITY))
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    for name in common.ORDER:
        if (out / name / "scores").exists():
            report(name, out / name)


if __name__ == "__main__":
    main()
