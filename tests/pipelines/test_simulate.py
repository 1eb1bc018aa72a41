"""Tests of the `simulate` stage: the survey file's layout, labels, reproducibility, the CLI switch."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from simulate.helpers import SMALL, SUBSTRUCTURE_OFF, dataclass_replace

from tfanomaly.errors import ConfigError
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.simulate.config import KIND_NAMES, SurveyConfig
from tfanomaly.simulate.stamps import simulate_stamps


def read_survey(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {key: f[key][...] for key in f}


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "survey.h5"
    summary = simulate_survey(path, SMALL, progress=False)
    return path, summary


def test_file_layout_and_attributes(small_survey):
    path, summary = small_survey
    n, size = SMALL.n_objects, SMALL.size
    with h5py.File(path, "r") as f:
        assert {"images", "idxs", "object_ids", "ra", "dec", "labels"} <= set(f)
        assert f["images"].shape == (n, size, size, 3) and f["images"].dtype == np.float32
        assert f["images"].chunks[0] <= 8 and f["images"].chunks[1:] == (size, size, 3)
        expected = {"idxs": np.int64, "object_ids": np.uint64, "ra": np.float64}
        expected |= {"dec": np.float64, "labels": np.uint8}
        for key, dtype in expected.items():
            assert f[key].dtype == dtype and f[key].shape == (n,), key
        assert f.attrs["bands"] == "g,r,i"
        assert json.loads(f.attrs["kind_names"]) == list(KIND_NAMES)
        assert f.attrs["generator"] == "tfanomaly.simulate"
        assert f.attrs["pixel_scale"] == pytest.approx(0.168)
        assert f.attrs["zeropoint"] == 27.0 and f.attrs["seed"] == 7
        assert SurveyConfig.from_json(f.attrs["config"]) == SMALL
    data = read_survey(path)
    np.testing.assert_array_equal(data["idxs"], np.arange(n))
    assert np.all(np.isfinite(data["images"]))
    assert np.all((data["ra"] > 129) & (data["ra"] < 141) & (data["dec"] > -2) & (data["dec"] < 5))
    # No partial file is left next to the result.
    assert [p.name for p in path.parent.iterdir()] == ["survey.h5"]
    assert summary["n_objects"] == n and summary["path"] == str(path)
    assert summary["stamps_per_second"] > 0


def test_object_ids_are_exact_hsc_like_uint64(small_survey):
    ids = read_survey(small_survey[0])["object_ids"]
    assert ids.dtype == np.uint64 and len(np.unique(ids)) == len(ids)
    assert np.all(ids > np.uint64(2**53))
    assert all(len(str(int(i))) == 17 for i in ids)
    # float64 (or the paper's float32) would not keep them: the file must hold them exactly.
    assert np.any(ids.astype(np.float64).astype(np.uint64) != ids)
    np.testing.assert_array_equal(ids, simulate_stamps(SMALL, 0, SMALL.n_objects)["object_ids"])


def test_labels_follow_fraction_and_kinds(small_survey):
    path, summary = small_survey
    labels = read_survey(path)["labels"]
    assert np.count_nonzero(labels) == 10 == summary["n_anomalies"]
    counts = np.bincount(labels, minlength=len(KIND_NAMES))
    assert counts[0] == 30 and set(counts[1:]) <= {1, 2}  # 10 over 8 kinds, as even as possible
    assert summary["counts"] == dict(zip(KIND_NAMES, counts.tolist(), strict=True))

    subset = SurveyConfig(
        n_objects=31, size=32, anomaly_fraction=0.3, kinds=("lensed_arc", "merger")
    )
    sub_labels = simulate_stamps(subset, 0, 31)["labels"]
    assert set(np.unique(sub_labels)) == {0, KIND_NAMES.index("merger"), 4}
    assert np.count_nonzero(sub_labels) == 9  # round(0.3 * 31)
    assert sorted(np.bincount(sub_labels)[[1, 4]]) == [4, 5]
    none = SurveyConfig(n_objects=20, size=32, anomaly_fraction=0.0)
    assert not simulate_stamps(none, 0, 20)["labels"].any()


def test_reproducible_and_independent_of_workers_and_chunking(small_survey, tmp_path):
    reference = read_survey(small_survey[0])
    simulate_survey(tmp_path / "again.h5", SMALL, workers=2, progress=False, chunk_size=7)
    again = read_survey(tmp_path / "again.h5")
    for key, values in reference.items():
        np.testing.assert_array_equal(values, again[key], err_msg=key)
    part = simulate_stamps(SMALL, 13, 29)
    for key, values in part.items():
        np.testing.assert_array_equal(values, reference[key][13:29], err_msg=key)
    other = simulate_stamps(dataclass_replace(SMALL, seed=8), 0, 5)
    assert not np.allclose(other["images"], reference["images"][:5])


def test_bad_arguments_raise_config_errors(tmp_path):
    SurveyConfig().validate()
    SurveyConfig(kinds=(), anomaly_fraction=0.0).validate()
    with pytest.raises(ConfigError, match="start"):
        simulate_stamps(SMALL, 5, SMALL.n_objects + 1)
    with pytest.raises(ConfigError, match="workers"):
        simulate_survey(tmp_path / "x.h5", SMALL, workers=-1, progress=False)
    with pytest.raises(ConfigError, match="size"):
        simulate_survey(tmp_path / "x.h5", dataclass_replace(SMALL, size=4), progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_cli_smooth_switch(tmp_path):
    from click.testing import CliRunner

    from tfanomaly.cli import main

    for flag, expected in (("--smooth", SUBSTRUCTURE_OFF), ("--substructure", None)):
        out = tmp_path / f"s{flag}.h5"
        args = ["simulate", str(out), "-n", "4", "--size", "16", "--quiet", flag]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        with h5py.File(out, "r") as f:
            config = SurveyConfig.from_json(f.attrs["config"])
        defaults = {name: getattr(SurveyConfig(), name) for name in SUBSTRUCTURE_OFF}
        assert {name: getattr(config, name) for name in SUBSTRUCTURE_OFF} == (expected or defaults)
