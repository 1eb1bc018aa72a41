"""Weights of the default score's terms, on the sets that quality.py scored (run it first): how
the default's term weights were chosen. Each run's stored terms and calibration are combined
again by the scorer's own ``NoiseAwareScore.combine`` with other weights: a grid of weights for
the critic-feature, extended and morphology terms (the linear term at 1) is scored on the tuning
sets, and the chosen weights, against equal ones, on every set; then the fixed weights against
the label-free per-set candidate ``term_health.tail_weights`` (each term by how far the upper tail
of its log reaches beyond its core, measured on the set's own scored terms).

  python studies/quality_weights.py [--out studies/out/quality] [--grid 0.5,1,1.5]
      [--weights feature=0.5,extended=1.5,morphology=1.5]
Seconds; no network runs.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import common
import numpy as np

from tfanomaly.models.score_config import (
    ScoreSettings,
    format_term_weights,
    parse_term_weights,
)
from tfanomaly.models.term_health import tail_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.QUALITY))
    parser.add_argument("--grid", default="0.5,1,1.5")
    parser.add_argument("--weights", default=format_term_weights(ScoreSettings.term_weights))
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    sets = common.stored_sets(out)
    tuning = [name for name in common.TUNING if name in sets]
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
        print(
            f"  {name:20s} {equal['auroc']:.3f}/{equal['average_precision']:.3f} -> "
            f"{weighted['auroc']:.3f}/{weighted['average_precision']:.3f}"
            + ("  (tuning set)" if name in common.TUNING else "")
        )
    print(f"\n{args.weights} -> tail_weights of the set's own terms (label-free), AUROC / AP")
    for name, stored in sets.items():
        terms = {t: stored.columns[f"{t}_scores"] for t in stored.calibration.terms}
        tail = tail_weights(terms)
        fixed, adaptive = (stored.metrics(w) for w in (chosen, tail))
        print(
            f"  {name:20s} {fixed['auroc']:.3f}/{fixed['average_precision']:.3f} -> "
            f"{adaptive['auroc']:.3f}/{adaptive['average_precision']:.3f}  "
            + ", ".join(f"{t} {w:.2f}" for t, w in tail.items())
        )


if __name__ == "__main__":
    main()
