"""Weights of the default score's terms, on the sets of bench_quality.py (after it ran): README
"Detection quality on real images" (fifth round). Each run's stored terms and calibration are
combined again by the scorer's own ``NoiseAwareScore.combine`` with other weights: a grid of
weights for the critic-feature, extended and morphology terms (the linear term at 1) is scored
on the tuning sets, and the chosen weights, against equal ones, on every set.

  python benchmarks/bench_quality_weights.py --out benchmarks/bench_quality [--grid 0.5,1,1.5]
      [--weights feature=0.5,extended=1.5,morphology=1.5]
Seconds; no network runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import machine  # noqa: E402
from bench_quality import ORDER, TUNING  # noqa: E402

from tfanomaly.models.calibration import Calibration  # noqa: E402
from tfanomaly.models.noise_score import NoiseAwareScore  # noqa: E402
from tfanomaly.models.score_config import (  # noqa: E402
    ScoreSettings,
    format_term_weights,
    parse_term_weights,
)
from tfanomaly.pipelines.evaluate import metrics  # noqa: E402
from tfanomaly.results.catalog import read_results  # noqa: E402


class StoredSet:
    """One bench_quality set's stored terms, labels and calibration."""

    def __init__(self, folder: Path):
        columns, self.attrs = read_results(folder / "scores")
        self.calibration = Calibration.load(folder / "run" / "calibration.npz")
        self.scorer = NoiseAwareScore(self.calibration)
        self.terms = [tf.constant(columns[f"{term}_scores"]) for term in self.calibration.terms]
        self.columns = columns
        self.labels = columns["labels"]
        self.anomalous = self.labels > 0

    def standardised(self) -> np.ndarray:
        """(N, terms) the stored terms' robust z, as the scorer weighs them."""
        return self.scorer.standardised(self.terms).numpy()

    def default(self) -> np.ndarray:
        """The default score of the stored terms, with the calibration's own weights."""
        return self.scorer.combine(self.terms).numpy()

    def metrics(self, weights: dict[str, float]) -> dict[str, float]:
        """AUROC, AP, ... of the default score with these term weights, as ``score`` has it."""
        settings = dataclasses.replace(self.calibration.settings,
                                       term_weights=tuple(weights.items()))  # fmt: skip
        scorer = NoiseAwareScore(dataclasses.replace(self.calibration, settings=settings))
        return metrics(self.anomalous, scorer.combine(self.terms).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/bench_quality")
    parser.add_argument("--grid", default="0.5,1,1.5")
    parser.add_argument("--weights", default=format_term_weights(ScoreSettings.term_weights))
    args = parser.parse_args()
    print(machine())
    out = Path(args.out)
    sets = {name: StoredSet(out / name) for name in ORDER if (out / name / "scores").exists()}
    tuning = [name for name in TUNING if name in sets]
    grid = [float(v) for v in args.grid.split(",")]
    rows = []
    for feature, extended, morphology in itertools.product(grid, repeat=3):
        weights = {"feature": feature, "extended": extended, "morphology": morphology}
        found = [sets[name].metrics(weights) for name in tuning]
        rows.append((np.mean([m["auroc"] for m in found]), weights, found))
    rows.sort(key=lambda row: -row[0])
    print(f"\ntuning sets {', '.join(tuning)}: mean AUROC, then AUROC / AP per set")
    for mean, weights, found in rows[:10]:
        per_set = "  ".join(f"{m['auroc']:.3f}/{m['average_precision']:.3f}" for m in found)
        print(f"  {mean:.4f}  {weights}  {per_set}")
    chosen = dict(parse_term_weights(args.weights))
    print(f"\nequal weights -> {args.weights}, AUROC / AP")
    for name, stored in sets.items():
        equal, weighted = (stored.metrics(w) for w in ({}, chosen))
        print(f"  {name:20s} {equal['auroc']:.3f}/{equal['average_precision']:.3f} -> "
              f"{weighted['auroc']:.3f}/{weighted['average_precision']:.3f}"
              + ("  (tuning set)" if name in TUNING else ""))  # fmt: skip


if __name__ == "__main__":
    main()
