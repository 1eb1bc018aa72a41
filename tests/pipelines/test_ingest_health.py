"""Data health at ingest: the manifest's record, ingest's and inspect's lines, the stretch."""

import json

import numpy as np
from click.testing import CliRunner

from tfanomaly.data.manifest import MANIFEST, DatasetInfo
from tfanomaly.data.stretch import sky_sigma
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.inspect import describe


def galaxies(n=30, size=16, seed=0, sky=0.02):
    rng = np.random.default_rng(seed)
    flux = rng.normal(0.0, sky, (n, size, size, 3))
    flux[:, 5:11, 5:11] += rng.uniform(0.5, 3.0, (n, 1, 1, 1))
    return flux.astype(np.float32)


def ml_ready(flux):
    clipped = np.clip(flux, 0.0, None)
    scaled = clipped / clipped.max(axis=(1, 2, 3), keepdims=True)
    return (np.round(scaled * 255) / 255).astype(np.float32)


def test_ml_ready_cutouts_floor_the_auto_stretch_at_the_step(tmp_path):
    from tfanomaly.cli import main

    images = ml_ready(galaxies())
    np.save(tmp_path / "ml.npy", images)
    result = CliRunner().invoke(
        main, ["ingest", str(tmp_path / "ml.npy"), str(tmp_path / "ds"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "health: band r quantised in steps of 0.003922 (8-bit?)" in result.output
    assert "(a clipped background)" in result.output
    assert "normalised per image" in result.output
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    health, stretch = manifest["health"], manifest["stretch"]
    step = health["bands"]["r"]["step"]
    assert abs(step - 1 / 255) < 1e-7 and health["bands"]["g"]["clipped"]
    assert health["duplicates"]["checked"] == 30
    assert stretch["mode"] == "auto" and stretch["intensity_sigma"] >= step
    assert stretch["stretch"] >= step
    assert all(v >= step for v in stretch["sky_sigma"].values())
    assert "clipped background" in " ".join(stretch["noise_model"].values())
    assert DatasetInfo.from_folder(tmp_path / "ds").health == health  # what calibrate reads
    shown = CliRunner().invoke(main, ["inspect", str(tmp_path / "ds")])
    assert shown.exit_code == 0, shown.output
    assert "health: band g quantised in steps of 0.003922" in shown.output


def test_a_sky_noise_below_the_step_is_replaced_by_the_step(tmp_path):
    # Coarsely quantised (step 0.05) flux with a sky noise of 0.01: the noise measured is below
    # the step, which the stretch takes instead.
    images = (np.round(galaxies(sky=0.01) / 0.05) * 0.05).astype(np.float32)
    assert np.all(sky_sigma(images) < 0.05)
    np.save(tmp_path / "coarse.npy", images)
    stretch = ingest(tmp_path / "coarse.npy", tmp_path / "ds", progress=False)["stretch"]
    assert all(abs(v - 0.05) < 1e-6 for v in stretch["sky_sigma"].values())
    assert "below the quantisation step" in stretch["noise_model"]["r"]
    assert stretch["intensity_sigma"] >= 0.05 - 1e-6


def test_healthy_float_cutouts_keep_their_measured_noise(tmp_path):
    images = galaxies()
    np.save(tmp_path / "float.npy", images)
    manifest = ingest(tmp_path / "float.npy", tmp_path / "ds", progress=False)
    assert manifest["health"]["findings"] == []
    assert all(b["step"] == 0 and not b["clipped"] for b in manifest["health"]["bands"].values())
    stretch = manifest["stretch"]
    assert "noise_model" not in stretch
    np.testing.assert_allclose(list(stretch["sky_sigma"].values()), sky_sigma(images), rtol=1e-6)


def test_duplicates_over_all_shards_beyond_the_sample(tmp_path):
    from tfanomaly.cli import main
    from tfanomaly.pipelines.config import IngestConfig

    images = galaxies(12)
    images[9] = np.rot90(images[0], 3, axes=(0, 1))
    images[10] = images[4][:, ::-1]
    images[11] = images[5]
    np.save(tmp_path / "dup.npy", images)
    config = IngestConfig(shard_size=4, stretch_sample=3)
    manifest = ingest(tmp_path / "dup.npy", tmp_path / "ds", config, progress=False)
    dup = manifest["health"]["duplicates"]
    assert dup["checked"] == 12 and dup["identical"] == 3 and dup["transformed"] == 2
    assert manifest["health"]["sample_cutouts"] == 3
    assert any(
        "3 duplicated cutouts (2 identical up to" in f for f in manifest["health"]["findings"]
    )
    shown = CliRunner().invoke(main, ["inspect", str(tmp_path / "ds")])
    assert "3 duplicated cutouts" in shown.output


def test_an_old_manifest_without_health_loads_and_inspect_says_so(tmp_path):
    from tfanomaly.cli import main

    np.save(tmp_path / "float.npy", galaxies(5))
    ingest(tmp_path / "float.npy", tmp_path / "ds", progress=False)
    path = tmp_path / "ds" / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["health"]
    path.write_text(json.dumps(manifest))
    assert DatasetInfo.from_folder(tmp_path / "ds").count == 5
    assert describe(tmp_path / "ds")["health"] is None
    shown = CliRunner().invoke(main, ["inspect", str(tmp_path / "ds")])
    assert shown.exit_code == 0, shown.output
    assert "health: not recorded" in shown.output
