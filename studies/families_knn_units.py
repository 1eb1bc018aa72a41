"""The residual-shape term's units, chosen with each family left out: for each family that
families.py scored (run it first), the term in the robust z (``clip``) and in asinh units,
both computed again from the stored descriptors and the calibration's reference set (the units
the run was calibrated in are reproduced to the digit), then the families.py protocol (every
weighting of its terms from its grid, fixed weights and the data-health rule, the softmax) with
the term in each unit and with both as candidates, each family left out in turn; and the shipped
weights' margin per family in each unit. The tables of docs/results/detection.md ("The
residual-shape term in asinh units").

    python studies/families_knn_units.py [--out studies/out/families] [--families a,b,...]

About a minute a family (the morphology baselines, as families.py computes them); no network
runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import families
import numpy as np

UNITS = ("clip", "asinh")


def residual_shape_z(name: str, out: Path) -> dict[str, np.ndarray]:
    """The residual-shape term's robust z on the family's scored rows in each of ``UNITS``: the
    term's k-NN distance in those units (copies judged on the robust z, constant cutouts 0),
    standardised by the median and MAD-sigma of its log over the calibration rows (the training
    rows; constant cutouts left out), as ``calibrate`` standardises it."""
    import tensorflow as tf

    from tfanomaly.models.calibration import Calibration
    from tfanomaly.models.noise_score import NoiseAwareScore, knn_distance
    from tfanomaly.models.score_fit import knn_units
    from tfanomaly.results.catalog import read_results

    folder = out / name
    columns, _ = read_results(folder / "scores", with_vectors=True)
    same_rows = name != "real_colour_half"
    train = columns if same_rows else read_results(folder / "scores_train", with_vectors=True)[0]
    calibration = Calibration.load(folder / "run" / "calibration.npz")
    scorer = NoiseAwareScore(calibration)
    reference = scorer.shape_reference.numpy()
    if calibration.settings.residual_shape_units == "asinh":
        reference = np.sinh(reference)  # the reference's robust z
    k = calibration.settings.morphology_neighbours
    centre, scale = scorer.shape_centre.numpy(), scorer.shape_scale.numpy()

    def term(cols, units: str) -> np.ndarray:
        standard = np.clip((cols["residual_shape"] - centre) / scale, -50.0, 50.0)
        distance = knn_distance(
            knn_units(standard, units),
            knn_units(reference, units),
            k,
            copy_points=standard,
            copy_reference=tf.constant(reference),
        ).numpy()
        return np.where(cols["residual_shape_scores"] == 0, 0.0, distance)  # constant cutouts

    z = {}
    for units in UNITS:
        values = term(columns, units)
        calibration_values = values if same_rows else term(train, units)
        z[units] = families.robust_z(calibration_values[calibration_values > 0], values)
    return z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=families.OUT)
    parser.add_argument("--families", default=",".join(families.FAMILIES))
    args = parser.parse_args()
    print(common.machine(), flush=True)
    names = args.families.split(",")
    rng = np.random.default_rng(0)
    grid = families.weight_grid()
    weightings = ("fixed", "health")
    candidates = families.candidate_names(grid, ["stored"], ["softmax"], weightings)
    metrics = {units: [] for units in UNITS}
    best, best_ap = [], []
    for name in names:
        family = families.Family(name, args.out, rng)
        for units, z in residual_shape_z(name, args.out).items():
            family.z["residual_shape"] = z
            metrics[units].append(
                families.candidate_metrics(family, grid, ["stored"], ["softmax"], weightings)
            )
        best.append(family.best_baseline[1]["auroc"])
        best_ap.append(family.best_baseline[1]["average_precision"])
        print(f"{name}: done", flush=True)
    best, best_ap = np.array(best)[:, None], np.array(best_ap)[:, None]
    margin = {u: np.stack([m[0] for m in metrics[u]]) - best for u in UNITS}
    ap_margin = {u: np.stack([m[1] for m in metrics[u]]) - best_ap for u in UNITS}
    shipped = np.array([families.DEFAULT_WEIGHTS.get(t, 0.0) for t in families.TERMS])
    shipped = next(
        i
        for i, (_, weighting, weights, _) in enumerate(candidates)
        if weighting == "health" and np.allclose(weights, shipped / shipped.sum())
    )
    print("\n| units | left-out worst | left-out mean | shipped weights: worst | mean |")
    print("|---|---|---|---|---|")
    for label, chosen in (*((u, (u,)) for u in UNITS), ("both as candidates", UNITS)):
        auroc = np.concatenate([margin[u] for u in chosen], axis=1)
        ap = np.concatenate([ap_margin[u] for u in chosen], axis=1)
        left_out = [
            auroc[i, families.choose(auroc, ap, [j for j in range(len(names)) if j != i])]
            for i in range(len(names))
        ]
        shipped_cells = (
            f"{margin[chosen[0]][:, shipped].min():+.3f} | {margin[chosen[0]][:, shipped].mean():+.3f}"
            if len(chosen) == 1
            else "- | -"
        )
        print(f"| {label} | {min(left_out):+.3f} | {np.mean(left_out):+.3f} | {shipped_cells} |")
    print("\n| family | shipped weights, robust z: margin / AP margin | asinh |")
    print("|---|---|---|")
    for i, name in enumerate(names):
        cells = [f"{margin[u][i, shipped]:+.3f} / {ap_margin[u][i, shipped]:+.3f}" for u in UNITS]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
