"""A calibration in the flat .npz layout that tfanomaly wrote before the per-term records (24
flat fields: ``edges``, ``linear_edges``, ``plane_variances``, ...), for the test that old files
keep loading and scoring as they did. ``data/old_calibration_scores.npz`` holds the scores that
the code of that time gave on :func:`inputs` (written by ``python tests/models/old_calibration.py
OUT.npz`` at the commit before the split)."""

import json
import sys

import numpy as np

TERMS = ("residual", "feature", "linear", "extended", "morphology")
SIZE, BANDS, DIMS, N_MORPH = 8, 3, 12, 12  # N_MORPH: morphology.feature_names(3)


def settings() -> dict:
    """The settings as the flat files stored them (JSON), every field written out."""
    return {
        "smooth_sigma": 1.0,
        "n_bins": 4,
        "top_fraction": 0.05,
        "n_components": 3,
        "feature_weight": 0.7,
        "terms": list(TERMS),
        "combine": "mean",
        "term_weights": [["feature", 0.5], ["extended", 1.5], ["morphology", 1.5]],
        "linear_components": 5,
        "robust_iterations": 2,
        "extended_sigma": 2.0,
        "extended_top_fraction": 0.3,
        "morphology_neighbours": 3,
        "reference_size": 30,
    }


def flat_arrays(seed: int = 11) -> dict:
    """The flat keys and their numbers (hand-made, distinct everywhere), planes included."""
    rng = np.random.default_rng(seed)
    pixels = SIZE * SIZE * BANDS

    def edges():
        return np.sort(rng.uniform(0.0, 0.5, (BANDS, 3)), axis=1).astype("f4")

    def variances(low=0.5, high=2.0):
        return rng.uniform(low, high, (BANDS, 4)).astype("f4")

    axes = np.linalg.qr(rng.normal(size=(DIMS, 3)))[0].T.astype("f4")
    linear_axes = np.linalg.qr(rng.normal(size=(pixels, 5)))[0].T.astype("f4")
    return {
        "edges": edges(),
        "variances": variances(),
        "feature_mean": rng.normal(size=DIMS).astype("f4"),
        "components": axes,
        "eigenvalues": np.array([5.0, 3.0, 2.0], "f4"),
        "log_centres": np.array([0.3, -0.2, -5.0, -2.0, 1.0], "f4"),
        "log_scales": np.array([1.5, 0.8, 1.2, 0.9, 0.4], "f4"),
        "linear_mean": rng.uniform(0, 0.2, pixels).astype("f4"),
        "linear_components": linear_axes,
        "linear_edges": edges(),
        "linear_variances": variances(),
        "morphology_centre": rng.normal(size=N_MORPH).astype("f4"),
        "morphology_scale": rng.uniform(0.5, 2.0, N_MORPH).astype("f4"),
        "morphology_reference": rng.normal(size=(30, N_MORPH)).astype("f4"),
        "plane_variances": variances(0.0, 0.2),
        "linear_plane_variances": variances(0.0, 0.2),
        "plane_log_centres": np.array([1.3, -0.1, -4.0, -1.0, 1.2], "f4"),
        "plane_log_scales": np.array([1.1, 0.7, 1.3, 0.8, 0.5], "f4"),
        "extended_edges": edges(),
        "extended_variances": variances(0.1, 0.5),
        "extended_plane_variances": variances(0.0, 0.1),
        "residual_variance": np.float64(0.5),
    }


def write_flat(path, seed: int = 11, planes=("variance", "mask")) -> None:
    """Write the calibration in the old flat layout, exactly the keys the old ``save`` wrote."""
    info = {"data": "hand-made", "count": 30, "planes": list(planes)}
    with open(path, "wb") as handle:
        np.savez(
            handle, **flat_arrays(seed), settings=json.dumps(settings()), info=json.dumps(info)
        )


def inputs(seed: int = 12) -> dict:
    """Stretched images, reconstructions, critic features, raw flux and the planes to score."""
    rng = np.random.default_rng(seed)
    shape = (4, SIZE, SIZE, BANDS)
    mask = np.zeros(shape, bool)
    mask[0, 2, 3, 1] = mask[3, 5, 1, :] = True
    return {
        "images": rng.uniform(0, 1, shape).astype("f4"),
        "reconstructions": rng.uniform(0, 0.6, shape).astype("f4"),
        "features": rng.normal(size=(4, DIMS)).astype("f4"),
        "flux": rng.uniform(0, 2, shape).astype("f4"),
        "variance": rng.uniform(0.01, 0.05, shape).astype("f4"),
        "mask": mask,
    }


KEYS = (
    "score",
    "residual_score",
    "feature_score",
    "linear_score",
    "extended_score",
    "morphology_score",
    "feature_axes",
)


def scores(scorer) -> dict:
    """The scorer's outputs on :func:`inputs`, with the planes (``planes_*``) and without."""
    x = inputs()
    with_planes = scorer(
        x["images"], x["reconstructions"], x["features"], x["flux"], x["variance"], x["mask"]
    )
    without = scorer(x["images"], x["reconstructions"], x["features"], x["flux"])
    out = {f"planes_{key}": np.asarray(with_planes[key]) for key in KEYS}
    out.update({key: np.asarray(without[key]) for key in KEYS})
    return out


if __name__ == "__main__":  # the expected scores, with the code of the flat layout
    import tempfile
    from pathlib import Path

    from tfanomaly.models.calibration import Calibration
    from tfanomaly.models.noise_score import NoiseAwareScore

    with tempfile.TemporaryDirectory() as folder:
        write_flat(Path(folder) / "old.npz")
        scorer = NoiseAwareScore(Calibration.load(Path(folder) / "old.npz"))
        np.savez(sys.argv[1], **scores(scorer))
