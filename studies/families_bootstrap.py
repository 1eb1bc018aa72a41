"""How sure the families' margins are: for each family that families.py scored (run it first),
the shipped default's AUROC and AP margins over the best baseline of that family (the pixel
baselines of ``evaluate`` and the study's morphology baselines, computed again on the same rows),
with a paired, stratified bootstrap: the anomalies and the normals resampled with replacement, both
scores read on the same resampled rows, the margin's 95% interval and its chance of reaching the
+0.03 target: the tables "How sure the margins are" and "A second training" of
docs/results/detection.md.

  python studies/families_bootstrap.py [--out studies/out/families] [--resamples 2000]
About a minute a family (the pixel baselines); no network runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import families
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

TARGET = 0.03


def family_scores(name: str, out: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(anomalous, the default's scores, every baseline's scores) on the family's scored rows."""
    from tfanomaly.pipelines.evaluate import baseline_scores
    from tfanomaly.results.catalog import read_results

    folder = out / name
    columns, attrs = read_results(folder / "scores")
    train = columns if name != "real_colour_half" else read_results(folder / "scores_train")[0]
    baselines = families.family_morphology_baselines(name, out, columns, train)
    baselines.update(baseline_scores(attrs["data"], columns["object_ids"]))
    return columns["labels"] > 0, columns["scores"], baselines


def paired_bootstrap(labels, default, baseline, resamples: int, rng) -> tuple[np.ndarray, ...]:
    """(resamples,) AUROC and AP margins of ``default`` over ``baseline`` on the same resampled
    rows (anomalies and normals each drawn with replacement, so every resample has both)."""
    anomalies, normals = np.flatnonzero(labels), np.flatnonzero(~labels)
    auroc, ap = np.empty(resamples), np.empty(resamples)
    for r in range(resamples):
        rows = np.concatenate(
            [rng.choice(anomalies, len(anomalies)), rng.choice(normals, len(normals))]
        )
        y = labels[rows]
        auroc[r] = roc_auc_score(y, default[rows]) - roc_auc_score(y, baseline[rows])
        ap[r] = average_precision_score(y, default[rows]) - average_precision_score(
            y, baseline[rows]
        )
    return auroc, ap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=families.OUT)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--families",
        default=",".join(families.FAMILIES),
        help="comma-separated, among the families and the fresh ones (FRESH_FAMILIES)",
    )
    args = parser.parse_args()
    from tfanomaly.pipelines.evaluate import SCORE_NAMES

    rng = np.random.default_rng(args.seed)
    print(
        "| family | best baseline | margin, 95% interval | P(margin >= 0.03) | AP margin, 95% interval |"
    )
    print("|---|---|---|---|---|")
    for name in args.families.split(","):
        labels, default, baselines = family_scores(name, args.out)
        best = max(baselines, key=lambda key: roc_auc_score(labels, baselines[key]))
        auroc, ap = paired_bootstrap(labels, default, baselines[best], args.resamples, rng)
        margin = roc_auc_score(labels, default) - roc_auc_score(labels, baselines[best])
        ap_margin = average_precision_score(labels, default) - average_precision_score(
            labels, baselines[best]
        )
        low, high = np.percentile(auroc, [2.5, 97.5])
        ap_low, ap_high = np.percentile(ap, [2.5, 97.5])
        print(
            f"| {name} | {SCORE_NAMES.get(best, best)} | {margin:+.3f} [{low:+.3f}, {high:+.3f}] | "
            f"{np.mean(auroc >= TARGET):.2f} | {ap_margin:+.3f} [{ap_low:+.3f}, {ap_high:+.3f}] |",
            flush=True,
        )


if __name__ == "__main__":
    main()
