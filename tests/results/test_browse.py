"""The tolerant results view the explorer reads: tfanomaly's results.h5 and the paper's published
layout, lazy image rows, simulated kinds, feature vectors, and what it says when something is
missing. ``write_results_file`` and ``write_paper_file`` build small files for other tests."""

import json
import tracemalloc

import h5py
import numpy as np
import pytest
from conftest import BIG_ID

from tfanomaly.errors import InputError
from tfanomaly.results.browse import ResultsView
from tfanomaly.results.catalog import SCORE_KEYS, score_statistics, write_results

KINDS = ["normal", "merger", "lensed_arc", "bad_column"]


def cubes(n: int, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Stretched-looking images: a blob of random colour and brightness, a smooth reconstruction."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(x**2 + y**2) / (2 * (size / 6) ** 2))[None, :, :, None]
    reals = blob * rng.uniform(0.3, 1.0, (n, 1, 1, 3)) + rng.normal(0, 0.04, (n, size, size, 3))
    reals = np.clip(reals, 0, 1).astype(np.float32)
    reconstructed = np.clip(blob * reals.mean(axis=(1, 2), keepdims=True) * 1.6, 0, 1)
    reconstructed = reconstructed.astype(np.float32)
    return {
        "reals": reals,
        "reconstructed": reconstructed,
        "residuals": np.abs(reals - reconstructed),
    }


def write_results_file(
    folder,
    n: int = 50,
    size: int = 16,
    seed: int = 0,
    images: bool = True,
    vectors: bool = True,
    ids=None,
):
    """A results folder written by tfanomaly's own writer (``catalog.write_results``), as
    ``score --store-images`` leaves it, with simulated kinds; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    # the score columns from their own stream: the survey stays the same whatever the score terms
    terms = np.random.default_rng(seed + 1)
    columns = {key: terms.gamma(2.0, 1.0, n) for key in SCORE_KEYS}
    columns["object_ids"] = (
        np.asarray(ids, np.uint64)
        if ids is not None
        else np.uint64(BIG_ID) + np.arange(n, dtype=np.uint64) * np.uint64(3)
    )
    columns.update(
        idxs=np.arange(n, dtype=np.int64) + 100,
        ra=rng.uniform(130, 140, n),
        dec=rng.uniform(-1, 4, n),
        labels=np.arange(n, dtype=np.int64) % len(KINDS),
    )
    if vectors:
        columns["latents"] = rng.normal(size=(n, 8)).astype(np.float32)
        columns["feature_axes"] = rng.normal(size=(n, 6)).astype(np.float32)
    parts = []
    if images:
        parts = [folder / "part.npz"]
        np.savez(parts[0], object_ids=columns["object_ids"], **cubes(n, size, seed))
    attrs = {
        "kind_names": json.dumps(KINDS),
        "run": str(folder / "run"),
        "data": str(folder / "ds"),
    }
    write_results(folder / "results.h5", columns, parts, attrs, score_statistics(columns))
    for part in parts:
        part.unlink()
    return folder


def write_paper_file(path, n: int = 40, size: int = 16, seed: int = 1, float_ids: bool = False):
    """A file in the layout of the paper's results_gri_lambda0.3_3sigd.h5: the three scores with
    their sigma values, idxs, object_ids and the three cubes; no ra/dec, no labels."""
    rng = np.random.default_rng(seed)
    ids = np.uint64(36407037849600000) + np.arange(n, dtype=np.uint64) * np.uint64(977)
    with h5py.File(path, "w") as f:
        for key in ("anomaly_scores", "disc_scores", "gen_scores"):
            raw = rng.gamma(2.0, 1.0, n)
            f[key] = raw.astype(np.float32)
            f[f"{key}_sigma"] = ((raw - raw.mean()) / raw.std()).astype(np.float32)
        f["idxs"] = rng.permutation(10 * n)[:n]
        f["object_ids"] = ids.astype(np.float32) if float_ids else ids.astype(np.int64)
        for key, cube in cubes(n, size, seed).items():
            f[key] = cube
    return path


def test_tfanomaly_results_columns_ranking_and_lazy_rows(tmp_path):
    folder = write_results_file(tmp_path / "scores")
    with h5py.File(folder / "results.h5") as f:
        scores = f["scores_sigma"][:]
        ids = f["object_ids"][:]
        reals = f["reals"][:]
    with ResultsView(folder) as view:
        assert view.layout == "tfanomaly" and view.sort_key == "scores_sigma" and len(view) == 50
        assert view.object_ids.dtype == np.uint64 and int(view.object_ids[0]) == BIG_ID
        np.testing.assert_array_equal(view.object_ids, ids)
        assert view.row_of(BIG_ID + 3) == 1
        assert list(view.sigma)[:3] == [
            "scores_sigma",
            "residual_scores_sigma",
            "feature_scores_sigma",
        ]
        order = view.ranking()
        assert (np.diff(scores[order]) <= 0).all()
        real, reconstructed, residual = view.cubes(order[0])
        np.testing.assert_array_equal(real, reals[order[0]])
        assert real.shape == reconstructed.shape == residual.shape == (16, 16, 3)
        assert view.image_shape == (16, 16, 3)
        assert view.kind(1) == "merger" and view.kind(4) == "normal"
        assert view.vector_keys == ["latents", "feature_axes"]
        assert view.vectors("feature_axes").shape == (50, 6)
        assert view.warnings == [] and view.unique_ids


def test_results_without_cubes_say_which_option_to_rerun_with(tmp_path):
    folder = write_results_file(tmp_path / "scores", images=False, vectors=False)
    with ResultsView(folder / "results.h5") as view:
        assert not view.has_images and view.image_shape is None
        hint = view.images_hint()
        assert "--store-images" in hint and "tfanomaly score" in hint
        assert f"score {folder / 'ds'} --run {folder / 'run'} --out {folder} --store-images" in hint
        with pytest.raises(InputError, match="no image cubes"):
            view.cubes(0)
        with pytest.raises(InputError, match="no 'latents' vectors"):
            view.vectors("latents")


def test_the_papers_layout(tmp_path):
    path = write_paper_file(tmp_path / "results_gri_lambda0.3_3sigd.h5")
    with h5py.File(path) as f:
        sigma = f["anomaly_scores_sigma"][:]
    with ResultsView(path) as view:
        assert view.layout == "paper" and view.sort_key == "anomaly_scores_sigma"
        assert list(view.sigma) == ["disc_scores_sigma", "gen_scores_sigma", "anomaly_scores_sigma"]
        assert view.has_images and view.vector_keys == [] and view.kind(0) is None
        assert np.isnan(view.ra).all() and view.idxs is not None
        assert (np.diff(sigma[view.ranking()]) <= 0).all()
        assert view.folder == tmp_path


def test_float_ids_of_the_paper_warn_and_duplicates_are_named(tmp_path):
    path = tmp_path / "paper.h5"
    write_paper_file(path, n=10, float_ids=True)  # ids 977 apart: float32 makes them one
    with ResultsView(path) as view:
        assert any("floating point" in w for w in view.warnings)
        assert any("9 objects share their id" in w for w in view.warnings)
        assert not view.unique_ids and view.row_of(int(view.object_ids[3])) == 0


def test_what_is_not_a_results_file(tmp_path):
    with pytest.raises(InputError, match="no such results file"):
        ResultsView(tmp_path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        ResultsView(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["images"] = np.zeros((2, 4, 4, 3))
    with pytest.raises(InputError, match="no object_ids"):
        ResultsView(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["object_ids"] = np.arange(3, dtype=np.uint64)
    with pytest.raises(InputError, match="no score to rank by"):
        ResultsView(tmp_path / "b.h5")


def test_a_survey_of_1e5_objects_keeps_only_ids_and_scores_in_memory(tmp_path):
    """Cubes of 100,000 96-px objects (11 GB if read) stay in the file; one row reads alone."""
    n = 100_000
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f["object_ids"] = np.arange(n, dtype=np.uint64) + np.uint64(BIG_ID)
        f["anomaly_scores_sigma"] = np.linspace(-1, 5, n)
        for key in ("reals", "reconstructed", "residuals"):  # unwritten chunks: a tiny file
            f.create_dataset(
                key, (n, 96, 96, 3), "float32", chunks=(64, 96, 96, 3), compression="gzip"
            )
    tracemalloc.start()
    with ResultsView(path) as view:
        rows = view.ranking()[:20]
        panels = [view.cubes(r) for r in rows]
        _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rows[0] == n - 1 and panels[0][0].shape == (96, 96, 3)
    assert peak < 150e6  # ids, scores, the order and an h5py chunk cache; not 11 GB of cubes
