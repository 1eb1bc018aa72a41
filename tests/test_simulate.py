"""Tests of the simulated HSC-like survey: file layout, labels, reproducibility and physics sanity."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.pipelines import simulate as sim
from tfanomaly.pipelines.simulate import (
    ANOMALY_KINDS,
    BANDS,
    KIND_NAMES,
    SurveyConfig,
    simulate_stamps,
    simulate_survey,
)

SMALL = SurveyConfig(n_objects=40, size=32, anomaly_fraction=0.25, seed=7)


def read_survey(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {key: f[key][...] for key in f}


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "survey.h5"
    summary = simulate_survey(path, SMALL, progress=False)
    return path, summary


def test_public_names():
    assert ANOMALY_KINDS[:8] == (
        "merger",
        "tidal_feature",
        "star_forming_clump",
        "lensed_arc",
        "satellite_trail",
        "diffraction_spikes",
        "cosmic_rays",
        "bad_column",
    )
    assert KIND_NAMES == ("normal",) + ANOMALY_KINDS
    assert BANDS == ("g", "r", "i")


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


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module")
def normal_stamps():
    config = SurveyConfig(n_objects=60, size=64, anomaly_fraction=0.0, seed=3)
    return config, simulate_stamps(config, 0, config.n_objects)["images"]


def test_sky_noise_matches_the_depths(normal_stamps):
    config, images = normal_stamps
    sigma = sim.sky_sigma(config)
    # The quoted 5-sigma depths and ZP 27 give ~0.04-0.08 flux units per pixel.
    assert np.all((sigma > 0.02) & (sigma < 0.15))
    border = np.concatenate(
        [images[:, :4].reshape(-1, 3), images[:, -4:].reshape(-1, 3)], axis=0
    ).astype(np.float64)
    median = np.median(border, axis=0)
    robust_std = 1.4826 * np.median(np.abs(border - median), axis=0)
    np.testing.assert_allclose(robust_std, sigma, rtol=0.10)
    assert np.all(np.abs(median) < 0.2 * sigma)  # background ~0, not stretched


def test_normal_galaxies_have_i_between_20_and_20_5(normal_stamps):
    config, images = normal_stamps
    flux_i = images[..., 2].sum(axis=(1, 2), dtype=np.float64)
    mag_i = config.zeropoint - 2.5 * np.log10(flux_i)
    # Light beyond the 10.75" stamp makes a few big galaxies fainter; neighbours add a little.
    assert 20.0 <= np.median(mag_i) <= 20.55
    assert np.mean((mag_i > 19.8) & (mag_i < 20.9)) >= 0.9
    colours = -2.5 * np.log10(images[..., 0].sum(axis=(1, 2)) / images[..., 1].sum(axis=(1, 2)))
    assert 0.3 < np.median(colours) < 1.6 and np.std(colours) > 0.05  # realistic g-r spread


def test_star_forming_clumps_are_bluer():
    config = SurveyConfig(
        n_objects=48, size=48, anomaly_fraction=0.5, kinds=("star_forming_clump",), seed=11
    )
    stamps = simulate_stamps(config, 0, config.n_objects)
    flux = stamps["images"].sum(axis=(1, 2), dtype=np.float64)
    g_r = -2.5 * np.log10(flux[:, 0] / flux[:, 1])
    clump = stamps["labels"] == KIND_NAMES.index("star_forming_clump")
    assert clump.sum() == 24
    assert np.median(g_r[clump]) < np.median(g_r[~clump]) - 0.15


@pytest.mark.parametrize("kind", ["satellite_trail", "bad_column", "cosmic_rays"])
def test_instrument_artefacts_sit_on_a_normal_scene(kind):
    config = SurveyConfig(n_objects=20, size=32, seed=5)
    label = KIND_NAMES.index(kind)
    sigma = sim.sky_sigma(config)
    bands_hit = []
    for index in range(6):
        with_artefact, ra, dec = sim._render_object(config, index, label)
        clean, ra0, dec0 = sim._render_object(config, index, 0)
        assert (ra, dec) == (ra0, dec0)
        residual = (with_artefact - clean).astype(np.float64)
        hit = [b for b in range(3) if np.any(residual[..., b] != 0)]
        if kind != "cosmic_rays":
            assert len(hit) == 1, f"{kind} must sit in one band only, found {hit}"
        band = hit[0]
        assert np.abs(residual[..., band]).max() > 3 * sigma[band]
        bands_hit += hit
    assert len(set(bands_hit)) > 1  # the band is random, not always the same


def test_sky_anomalies_change_the_image():
    config = SurveyConfig(n_objects=20, size=48, seed=2)
    for kind in ("merger", "tidal_feature", "lensed_arc", "diffraction_spikes"):
        image, _, _ = sim._render_object(config, 3, KIND_NAMES.index(kind))
        normal, _, _ = sim._render_object(config, 3, 0)
        assert image.shape == normal.shape == (48, 48, 3) and image.dtype == np.float32
        assert np.abs(image - normal).sum() > 100 * sim.sky_sigma(config)[2], kind


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kinds": ("merger", "supernova")}, "unknown anomaly kind"),
        ({"kinds": ("merger", "merger")}, "duplicates"),
        ({"kinds": "merger"}, "tuple of kind names"),
        ({"kinds": ()}, "kinds is empty"),
        ({"size": 8}, "size must be"),
        ({"anomaly_fraction": 1.5}, "anomaly_fraction must be in"),
        ({"anomaly_fraction": -0.1}, "anomaly_fraction must be in"),
        ({"n_objects": 0}, "n_objects must be"),
        ({"seed": -1}, "seed must be"),
        ({"pixel_scale": 0.0}, "pixel_scale"),
        ({"psf_fwhm": (0.7, 0.6)}, "psf_fwhm"),
        ({"mag_range": (20.5, 20.0)}, "mag_range"),
    ],
)
def test_validate_rejects_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclass_replace(SurveyConfig(), **changes).validate()


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
