"""Data health of a sample of cutouts: quantisation, clipping, normalisation, duplicates."""

import json

import numpy as np

from tfanomaly.data.health import DuplicateFinder, data_health, image_hashes, quantisation_step


def galaxies(n=40, size=24, bands=3, seed=0, sky=0.02):
    """Raw flux: Gaussian sky noise and a bright square galaxy of random brightness."""
    rng = np.random.default_rng(seed)
    flux = rng.normal(0.0, sky, (n, size, size, bands))
    flux[:, 8:16, 8:16] += rng.uniform(0.5, 3.0, (n, 1, 1, 1))
    return flux.astype(np.float32)


def ml_ready(flux):
    """As ML-ready catalogues ship them: background clipped at 0, scaled to max 1 per image,
    quantised to 8 bits."""
    clipped = np.clip(flux, 0.0, None)
    scaled = clipped / clipped.max(axis=(1, 2, 3), keepdims=True)
    return (np.round(scaled * 255) / 255).astype(np.float32)


def test_ml_ready_images_are_reported_quantised_clipped_and_normalised():
    health = data_health(ml_ready(galaxies()), bands="gri")
    for band in "gri":
        record = health["bands"][band]
        assert abs(record["step"] - 1 / 255) < 1e-7
        assert record["clipped"] and record["zero"] > 0.3 and record["levels"] <= 256
    assert health["normalised"] == {"by": "max", "value": 1.0}
    lines = "\n".join(health["findings"])
    assert "band r quantised in steps of 0.003922 (8-bit?)" in lines
    assert "of pixels exactly 0 (a clipped background)" in lines
    assert "normalised per image" in lines
    json.dumps(health)  # JSON-safe


def test_continuous_images_with_gaussian_noise_are_healthy():
    health = data_health(galaxies(), object_ids=np.arange(40) + 7)
    for record in health["bands"].values():
        assert record["step"] == 0.0 and not record["clipped"] and record["zero"] == 0.0
    assert health["normalised"] is None
    assert health["constant"]["count"] == 0 and health["noise_free"]["count"] == 0
    assert health["duplicates"]["identical"] == 0 and health["findings"] == []


def test_integer_counts_have_step_one_and_float_rounding_is_no_step():
    rng = np.random.default_rng(1)
    assert quantisation_step(rng.poisson(50, 500).astype(np.float32)) == 1.0
    assert quantisation_step(rng.normal(1000.0, 0.01, 500).astype(np.float32)) == 0.0
    assert quantisation_step(np.array([0.0, 2.0, 2.0])) == 0.0  # two values: no step to tell
    assert quantisation_step(np.ones(5)) is None


def test_constant_and_noise_free_images():
    images = galaxies(6)
    images[1] = 3.0
    images[4] = 0.0
    images[4, 8:16, 8:16] = 2.0  # a noise-free square on an empty sky
    health = data_health(images, object_ids=[10, 11, 12, 13, 14, 15])
    assert health["constant"] == {"count": 1, "examples": [11]}
    assert health["noise_free"] == {"count": 1, "examples": [14]}
    lines = "\n".join(health["findings"])
    assert "1 of 6 sampled cutouts are constant images (ids 11)" in lines
    assert "noise-free images (ids 14)" in lines


def test_duplicates_up_to_rotation_and_flip():
    images = galaxies(10)
    images[3] = np.rot90(images[0], 1, axes=(0, 1))
    images[5] = images[1][::-1]  # flipped top to bottom
    images[7] = images[2]  # the same pixels
    images[8] = -0.0 * images[8] + images[8]  # unchanged
    ids = np.arange(10) * 10
    ids[9] = 0  # a repeated id
    dup = data_health(images, object_ids=ids)["duplicates"]
    assert dup["identical"] == 3 and dup["transformed"] == 2
    assert dup["examples"] == [30, 50, 70]
    assert dup["ids"] == 1 and dup["id_examples"] == [0]
    exact, canonical = image_hashes(images[0])
    assert canonical == image_hashes(images[0][:, ::-1])[1] and exact != image_hashes(images[3])[0]


def test_duplicate_finder_streams_batches():
    images = galaxies(8)
    finder = DuplicateFinder()
    finder.add(images[:5], np.arange(5))
    finder.add(np.rot90(images[:2], 2, axes=(1, 2)), [5, 6])
    assert finder.result() == {
        "checked": 7,
        "ids": 0,
        "id_examples": [],
        "identical": 2,
        "transformed": 2,
        "examples": [5, 6],
    }
