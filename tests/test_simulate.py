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


# --- Substructure of the discs, blends and the PSF's ellipticity -----------------------------

SUBSTRUCTURE_OFF = {
    "knot_fraction": 0.0,
    "spiral_fraction": 0.0,
    "dust_fraction": 0.0,
    "blend_fraction": 0.0,
    "psf_e_max": 0.0,
}


def noise_free(config, n, label=0):
    """Noise-free cutouts (n, H, W, 3) as float64: the main stream is the same as with noise."""
    return np.stack(
        [sim._render_object(config, i, label, noise=False)[0] for i in range(n)]
    ).astype(np.float64)


def with_only(name, value, **changes):
    """A tiny 32-px config with every kind of substructure off except ``name``."""
    off = SUBSTRUCTURE_OFF | {name: value}
    return SurveyConfig(n_objects=64, size=32, anomaly_fraction=0.0, seed=13, **off | changes)


def test_smooth_config_reproduces_the_simulator_before_substructure():
    # Recorded with the simulator of commit b2a3f76 (smooth galaxies, round PSFs): the substructure
    # draws from its own stream, so switching it off gives back the same galaxies, anomalies and
    # noise, bit for bit.
    config = SurveyConfig(n_objects=16, size=32, anomaly_fraction=0.5, seed=3).smooth()
    stamps = simulate_stamps(config, 0, 6)
    assert stamps["labels"].tolist() == [6, 1, 0, 0, 2, 7]
    expected_sums = [
        [4309.7571974643, 7796.6155200026, 8581.6199497246],
        [275.5512338899, 523.9380274235, 701.0673886857],
        [124.1772422403, 335.9203017245, 543.7266729128],
        [107.2945616602, 291.0067487881, 426.0410273655],
        [129.4600230495, 332.7410251179, 453.316913954],
        [146.3170369938, 331.2274882767, 417.2355217029],
    ]
    expected_centre_i = [5.2172617912, 3.9273972511, 19.1041355133, 4.3979549408, 8.9769916534, 12.8018455505]  # fmt: skip
    images = stamps["images"].astype(np.float64)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), expected_sums, rtol=1e-5)
    np.testing.assert_allclose(images[:, 16, 16, 2], expected_centre_i, rtol=1e-5)


def test_zero_fractions_draw_a_plain_bulge_and_disc(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a substructure code path ran with its fraction at 0")

    for name in ("_spiral_arms", "_knots", "_dust_lane", "_blend"):
        monkeypatch.setattr(sim, name, forbidden)
    monkeypatch.setattr(sim._Scene, "add_map", forbidden)
    monkeypatch.setattr(sim._Scene, "add_gaussians", forbidden)
    config = SurveyConfig(size=32, compact_fraction=0.0, neighbour_fraction=0.0, **SUBSTRUCTURE_OFF)
    grid = sim._grid(32, 3.0)
    for seed in range(10):
        scenes = []
        for sub in (None, np.random.default_rng(seed)):  # the stream exists, the fractions are 0
            scene = sim._Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            ctx = sim._Ctx(config, scene, sim.sky_sigma(config), 15.5, 15.5, 1000.0, sub=sub)
            galaxy = sim._galaxy(np.random.default_rng(seed), ctx, 15.5, 15.5, 1000.0)
            scenes.append(scene)
        assert galaxy["arms"] is None and galaxy["lane"] is None and "knots" not in galaxy
        np.testing.assert_array_equal(scenes[0].render(), scenes[1].render())


def scene_flux(scene):
    """Total pre-PSF flux per band of a scene: its transform at k = 0 plus its pixel maps."""
    maps = 0.0 if scene.maps is None else scene.maps.sum(axis=(1, 2))
    return scene.kspace[:, 0, 0].real + maps


@pytest.mark.parametrize("name", ["knot_fraction", "spiral_fraction", "dust_fraction"])
def test_substructure_moves_disc_light(name):
    grid = sim._grid(32, 3.0)
    changed = 0
    for seed in range(30):
        scenes = []
        for value in (0.0, 1.0):
            config = SurveyConfig(size=32, **SUBSTRUCTURE_OFF | {name: value})
            scene = sim._Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            ctx = sim._Ctx(config, scene, sim.sky_sigma(config), 15.5, 15.5, 1000.0)
            ctx.sub = np.random.default_rng(seed)
            sim._galaxy(np.random.default_rng(seed), ctx, 15.5, 15.5, 1000.0)
            scenes.append(scene)
        smooth, structured = scenes
        if structured.maps is None and np.array_equal(structured.kspace, smooth.kspace):
            continue
        changed += 1
        if name == "dust_fraction":  # absorbs light, most in g, and keeps the drawn i flux
            ratio = scene_flux(structured) / scene_flux(smooth)
            assert ratio[0] < ratio[1] < ratio[2] and abs(ratio[2] - 1.0) < 1e-9
        else:  # moves light from the smooth disc into knots or arms, adds none
            np.testing.assert_allclose(scene_flux(structured), scene_flux(smooth), rtol=1e-9)
    assert changed >= (3 if name == "dust_fraction" else 10)


@pytest.mark.parametrize("name", ["knot_fraction", "spiral_fraction"])
def test_knots_and_arms_change_the_cutouts_not_their_flux(name):
    smooth = noise_free(with_only(name, 0.0, compact_fraction=0.0), 24)
    structured = noise_free(with_only(name, 1.0, compact_fraction=0.0), 24)
    changed = np.abs(structured - smooth).max(axis=(1, 2, 3)) > 1e-3 * smooth.max(axis=(1, 2, 3))
    # Extended discs (bulge-to-total < 0.6) get it; bulge-dominated galaxies stay smooth.
    assert 8 <= changed.sum() <= 20
    ratio = structured[changed].sum(axis=(1, 2)) / smooth[changed].sum(axis=(1, 2))
    # Only the light that moves across the stamp's edge changes the sum (a few % at most).
    assert np.all(np.abs(np.median(ratio, axis=0) - 1) < 0.01) and np.all(np.abs(ratio - 1) < 0.06)
    # Visibly moved: at least a few percent of the galaxy's peak somewhere.
    moved = np.abs(structured - smooth)[changed].max(axis=(1, 2, 3))
    assert np.median(moved / smooth[changed].max(axis=(1, 2, 3))) > 0.02


def test_knots_are_blue_many_and_far_below_a_star_forming_clump():
    config = SurveyConfig(size=32, knot_fraction=1.0)
    grid = sim._grid(32, 3.0)
    counts, shares = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        scene = sim._Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
        ctx = sim._Ctx(config, scene, sim.sky_sigma(config), 15.5, 15.5, 1000.0, sub=rng)
        g_r, r_i = rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4)
        disc = sim._Disc(
            15.5, 15.5, ctx.px(1.0), 0.3, 0.5, sim._band_fluxes(700.0, g_r, r_i), g_r, r_i
        )
        galaxy_flux = disc.total + sim._band_fluxes(300.0, 1.2, 0.5)
        knots = sim._knots(rng, ctx, disc, galaxy_flux, None)
        counts.append(knots.shape[1])
        shares.append(knots[2].sum() / disc.total[2])
        assert np.all(knots <= 0.06 * galaxy_flux[:, None] + 1e-9)  # each <= 6% of the galaxy
        assert np.all(knots[0] / knots[1] > disc.total[0] / disc.total[1])  # bluer in g-r
        np.testing.assert_allclose(disc.flux + knots.sum(axis=1), disc.total)  # taken from disc
    assert min(counts) >= 5 and max(counts) <= 40 and max(counts) >= 25
    assert 0.02 < min(shares) and max(shares) <= 0.30 and np.median(shares) > 0.08


def test_a_dusty_disc_keeps_its_i_flux_and_loses_g():
    # The survey selects on observed i: the lane reddens the disc but keeps its drawn i flux.
    grid = sim._grid(32, 3.0)
    for hlr, e, lane in (
        (3.0, 0.55, sim._Lane(1.5, 0.5, 0.3)),
        (8.0, 0.7, sim._Lane(0.5, 2.0, -1.0)),
    ):
        fluxes = []
        for tau in (0.0, lane.tau_r):
            scene = sim._Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0)
            disc = sim._Disc(15.5, 15.5, hlr, e, 0.7, np.array([50.0, 80.0, 100.0]), 0.5, 0.25)
            sim._add_disc(scene, disc, None, dataclass_replace(lane, tau_r=tau))
            fluxes.append(scene_flux(scene))
        ratio = fluxes[1] / fluxes[0]
        assert abs(ratio[2] - 1.0) < 1e-9 and ratio[0] < ratio[1] < 1.0
        # tau_g : tau_r : tau_i = 1.3 : 1 : 0.75, so g loses more than r relative to i.
        assert 1 - ratio[0] > 1.2 * (1 - ratio[1]) > 0.005
        # The light is taken out along the major axis (angle 0.7), on the lane's offset line.
        row, col = np.unravel_index(np.argmin(scene.maps[1]), scene.maps[1].shape)
        dx, dy = col - grid.pad - 15.5, row - grid.pad - 15.5
        assert abs(-np.sin(0.7) * dx + np.cos(0.7) * dy - lane.offset) < 1.0


def test_dust_lanes_redden_inclined_discs():
    clean = noise_free(with_only("dust_fraction", 0.0, compact_fraction=0.0), 40)
    dusty = noise_free(with_only("dust_fraction", 1.0, compact_fraction=0.0), 40)
    changed = np.abs(dusty - clean).max(axis=(1, 2, 3)) > 1e-3 * clean.max(axis=(1, 2, 3))
    assert 4 <= changed.sum() <= 20  # only inclined (e > 0.5) disc galaxies
    ratio = dusty[changed].sum(axis=(1, 2)) / clean[changed].sum(axis=(1, 2))  # (n, bands)
    assert np.all(ratio[:, 0] < ratio[:, 1]) and np.all(ratio[:, 1] < ratio[:, 2])
    assert np.all(ratio[:, 2] - ratio[:, 0] > 0.02)  # g dimmed more than i
    assert np.all(np.abs(ratio[:, 2] - 1.0) < 0.05)  # the drawn i magnitude is kept


def test_blends_add_a_fainter_galaxy_at_the_expected_distance():
    size = 32
    alone = noise_free(with_only("blend_fraction", 0.0, neighbour_fraction=0.0), 20)
    blended = noise_free(with_only("blend_fraction", 1.0, neighbour_fraction=0.0), 20)
    companion = (blended - alone)[..., 2]  # the main stream is untouched: only the blend differs
    centre = (size - 1) / 2
    for target, other in zip(alone[..., 2], companion, strict=True):
        row, col = np.unravel_index(np.argmax(other), other.shape)
        distance = np.hypot(row - centre, col - centre)
        # 0.33-0.48 of the side from the target (itself within 0.7 px of the centre), or at the
        # stamp's edge when its centre is just off it.
        assert 0.33 * size - 2 <= distance <= 0.48 * size + 2
        assert other.sum() < 10 ** (-0.4 * 1.25) * target.sum() * 1.01  # >= 1.25 mag fainter
        assert other.max() < target.max()


def test_psf_ellipticity_elongates_stars_along_its_angle():
    grid = sim._grid(32, 3.0)

    def star_shape(psf_e, angle):
        scene = sim._Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0, psf_e, angle)
        scene.add_profile("point", np.ones(3), 15.5, 15.5)
        image = scene.render()[2]
        y, x = np.mgrid[:32, :32] - 15.5
        q11, q22, q12 = ((image * m).sum() / image.sum() for m in (x * x, y * y, x * y))
        return np.hypot(q11 - q22, 2 * q12) / (q11 + q22), 0.5 * np.arctan2(2 * q12, q11 - q22)

    e_round, _ = star_shape(0.0, 0.0)
    assert e_round < 1e-3
    e, angle = star_shape(0.06, 0.4)
    assert 0.05 < e < 0.15  # distortion ~2g, a bit less within the stamp
    assert abs(angle - 0.4) < 0.02
    # Through the survey: the same objects with round and with elongated PSFs differ.
    round_psf = noise_free(with_only("psf_e_max", 0.0), 4)
    elongated = noise_free(with_only("psf_e_max", 0.06), 4)
    assert not np.allclose(round_psf, elongated)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"knot_fraction": 1.5}, "knot_fraction must be in"),
        ({"spiral_fraction": -0.1}, "spiral_fraction must be in"),
        ({"dust_fraction": 2.0}, "dust_fraction must be in"),
        ({"blend_fraction": -1.0}, "blend_fraction must be in"),
        ({"psf_e_max": 0.5}, "psf_e_max must be in"),
        ({"psf_e_max": -0.01}, "psf_e_max must be in"),
    ],
)
def test_validate_rejects_bad_substructure_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclass_replace(SurveyConfig(), **changes).validate()


def test_config_json_from_before_substructure_loads_as_the_smooth_simulator():
    values = json.loads(SMALL.to_json())
    assert SMALL.knot_fraction > 0 and SurveyConfig.from_json(json.dumps(values)) == SMALL
    for name in SUBSTRUCTURE_OFF:
        del values[name]
    assert SurveyConfig.from_json(json.dumps(values)) == SMALL.smooth()


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
