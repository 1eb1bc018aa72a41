"""The public Python API: lazy imports, the examples of its docstrings, a trained run scoring NumPy
arrays as the score stage scores a data set, readers that give astropy Tables, clear errors."""

import doctest
import importlib
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from astropy.table import Table
from conftest import assert_scores_close, build_tiny_run, quiet

import tfanomaly
from tfanomaly import api
from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.models.scores import SCORES
from tfanomaly.pipelines.config import ScoreConfig
from tfanomaly.pipelines.rerank import read_catalog as read_catalog_file
from tfanomaly.pipelines.run import CALIBRATION_FILE
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import SCORE_KEYS
from tfanomaly.results.catalog import read_results as read_results_file

PACKAGES = (
    "tfanomaly",
    "tfanomaly.api",
    "tfanomaly.data",
    "tfanomaly.results",
    "tfanomaly.serving",
    "tfanomaly.simulate",
    "tfanomaly.models",
    "tfanomaly.pipelines",
)


def test_importing_the_packages_and_the_light_names_does_not_import_tensorflow():
    script = textwrap.dedent(
        f"""
        import importlib, sys
        import tfanomaly
        assert "tensorflow" not in sys.modules, "import tfanomaly"
        for name in {PACKAGES!r}:
            importlib.import_module(name)
        for name in ("read_cutouts", "read_catalog", "read_results", "read_cube", "LabelStore",
                     "Ranker", "SurveyConfig", "IngestConfig", "ScoreConfig", "simulate_survey",
                     "load_run", "Run", "SCORES", "ConfigError"):
            getattr(tfanomaly, name)
        assert "tensorflow" not in sys.modules, "a light name"
        tfanomaly.train_gan
        assert "tensorflow" in sys.modules, "train_gan needs TF"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_every_exported_name_resolves_and_the_top_level_is_the_api():
    assert set(tfanomaly.__all__) == set(api.__all__)
    for package in PACKAGES:
        module = importlib.import_module(package)
        assert len(module.__all__) == len(set(module.__all__)), package
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"
            assert name in dir(module)
    assert tfanomaly.score is score and tfanomaly.Run is api.Run
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tfanomaly.nothing  # noqa: B018


def test_docstring_examples_run():
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0


def test_every_module_s_docstring_examples_run(tmp_path, monkeypatch):
    """The examples the API reference shows run as written (those that need a survey, a run or a
    server are marked to skip), in every module of the package (in a folder of their own)."""
    import pkgutil

    monkeypatch.chdir(tmp_path)
    attempted, failed = 0, []
    for info in pkgutil.walk_packages(tfanomaly.__path__, "tfanomaly."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
        attempted += result.attempted
        if result.failed:
            failed.append(info.name)
    assert not failed, f"docstring examples fail in {failed}"
    assert attempted > 60


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny16 run and its scored catalog (with the image cubes): the score stage's output."""
    folder = build_tiny_run(tmp_path_factory.mktemp("api"), 60, seed=9, shard_size=30)
    score(
        folder / "run",
        folder / "ds",
        folder / "scores",
        ScoreConfig(batch_size=32, inversion=InversionConfig(steps=3), store_images=True),
        progress=False,
        echo=quiet,
    )
    with h5py.File(folder / "s.h5") as f:
        images, ids = f["images"][:], f["object_ids"][:]
    return {"folder": folder, "images": images, "ids": ids}


def test_load_run_scores_arrays_as_the_score_stage_does(scored):
    folder = scored["folder"]
    run = tfanomaly.load_run(folder / "run", scores=folder / "scores")
    assert run.image_shape == (16, 16, 3) and run.inversion.steps == 3
    assert "16x16" in repr(run)
    table = run.score(scored["images"], scored["ids"], batch_size=16)
    assert isinstance(table, Table) and len(table) == 60
    assert table["index"].tolist() == list(range(60))
    assert table.colnames[:2] == ["index", "object_id"]
    assert {s.catalog for s in SCORES} | {s.results for s in SCORES} <= set(table.colnames)
    columns, _ = read_results_file(folder / "scores", with_images=True)
    where = {int(i): r for r, i in enumerate(columns["object_ids"])}
    rows = np.array([where[int(i)] for i in table["object_id"]])
    expected = {
        key: columns[key][rows] for key in (*SCORE_KEYS, *(f"{k}_sigma" for k in SCORE_KEYS))
    }
    actual = {}
    for s in SCORES:
        actual[s.results] = np.asarray(table[s.results])
        actual[s.sigma] = np.asarray(table[s.catalog])
    calibration = Calibration.load(folder / "run" / CALIBRATION_FILE)
    assert_scores_close(actual, expected, list(expected), calibration, catalog=columns)
    # The residual images: what score --store-images stores.
    images = run.reconstruct(scored["images"][:5])
    np.testing.assert_allclose(images["residual"], columns["residuals"][rows[:5]], atol=1e-4)
    assert images["z"].shape[0] == 5
    # Order and batch do not matter; fast scoring is the encoder-only inversion.
    again = run.score(scored["images"][::-1][:7], batch_size=3)
    np.testing.assert_allclose(again["gen_scores"], table["gen_scores"][::-1][:7], rtol=1e-4)
    fast = run.score(scored["images"][:4], fast=True)
    assert fast.meta["inversion_steps"] == 0 and "object_id" not in fast.colnames
    empty = run.score(np.zeros((0, 16, 16, 3), np.float32))
    assert len(empty) == 0 and "score_normalized" in empty.colnames


def test_readers_give_tables_with_the_catalog_columns(scored):
    folder = scored["folder"]
    catalog = tfanomaly.read_catalog(folder / "scores")
    on_disk = read_catalog_file(folder / "scores" / "catalog.fits")
    assert isinstance(catalog, Table) and catalog.colnames == on_disk.colnames
    assert {s.catalog for s in SCORES} <= set(catalog.colnames)
    assert tfanomaly.read_catalog(folder / "scores" / "catalog.fits").colnames == catalog.colnames
    results = tfanomaly.read_results(folder / "scores")
    assert isinstance(results, Table) and len(results) == 60
    assert results.colnames[:2] == ["idxs", "object_ids"]
    assert {*SCORE_KEYS, *(f"{k}_sigma" for k in SCORE_KEYS), "kind"} <= set(results.colnames)
    assert all(results[name].ndim == 1 for name in results.colnames)  # no cubes, no vectors
    assert results.meta["run"] == str((folder / "run").resolve())
    top = np.argsort(-np.asarray(results["scores_sigma"]))[:4]
    residuals = tfanomaly.read_cube(folder / "scores", "residuals", top)
    columns, _ = read_results_file(folder / "scores", with_images=True)
    np.testing.assert_array_equal(residuals, columns["residuals"][top])
    assert tfanomaly.read_cube(folder / "scores", "latents", []).shape[0] == 0
    images, table = tfanomaly.read_cutouts(folder / "s.h5", 0, 10)
    np.testing.assert_array_equal(images, scored["images"][:10])
    assert table["object_id"].tolist() == scored["ids"][:10].tolist()
    assert {"label", "kind"} <= set(table.colnames)


def test_clear_errors(scored, tmp_path):
    folder = scored["folder"]
    with pytest.raises(ConfigError, match="not a tfanomaly run folder"):
        tfanomaly.load_run(tmp_path)
    with pytest.raises(ConfigError, match="no such run folder"):
        tfanomaly.load_run(tmp_path / "missing")
    with pytest.raises(ConfigError, match="score a reference catalog first"):
        tfanomaly.load_run(folder / "run", scores=tmp_path)
    run = tfanomaly.load_run(folder / "run", scores=folder / "scores")
    images = scored["images"][:4]
    with pytest.raises(InputError, match=r"takes 3 band\(s\) \(g, r, i\), the array has 2"):
        run.score(images[..., :2])
    with pytest.raises(InputError, match="takes 16x16 cutouts, got 8x8"):
        run.score(images[:, :8, :8])
    with pytest.raises(InputError, match=r"one cutout .*images\[None\]"):
        run.score(images[0])
    with pytest.raises(InputError, match="4-D array"):
        run.score(images.reshape(4, -1))
    with pytest.raises(InputError, match="expected 4 integer ids"):
        run.score(images, scored["ids"][:3])
    with pytest.raises(ConfigError, match="both variance and mask"):
        run.score(images, variance=np.ones_like(images))
    with pytest.raises(ConfigError, match="calibrated without variance and mask"):
        run.score(images, variance=np.ones_like(images), mask=np.zeros(images.shape, np.int32))
    with pytest.raises(InputError, match="no such results file"):
        tfanomaly.read_results(tmp_path)
    with pytest.raises(InputError, match="no catalog.fits"):
        tfanomaly.read_catalog(tmp_path)
    with pytest.raises(InputError, match="no such catalog"):
        tfanomaly.read_catalog(tmp_path / "catalog.fits")
    with pytest.raises(ConfigError, match="no cube 'images'"):
        tfanomaly.read_cube(folder / "scores", "images")
    with pytest.raises(InputError, match="rows must be in 0-59"):
        tfanomaly.read_cube(folder / "scores", "residuals", [60])
    with pytest.raises(InputError, match="not within its 60 cutouts"):
        tfanomaly.read_cutouts(folder / "s.h5", 5, 61)
