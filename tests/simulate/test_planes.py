"""The simulator's variance and mask planes (``SurveyConfig.planes``): variance = sky + the sources'
Poisson noise, the images carry exactly that noise, and HSC-like bits flag what a pipeline flags."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tfanomaly.data.planes import HSC_MASK_BITS
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.simulate.config import KIND_NAMES, SurveyConfig, gain, sky_sigma
from tfanomaly.simulate.stamps import _render, simulate_stamps

from .helpers import dataclass_replace

PLANES = SurveyConfig(n_objects=24, size=32, anomaly_fraction=0.0, seed=5, planes=True)


def bit(name):
    return 1 << HSC_MASK_BITS[name]


def test_planes_off_is_the_survey_of_before_and_on_adds_only_poisson_noise():
    plain = simulate_stamps(dataclass_replace(PLANES, planes=False), 0, 24)
    assert "variances" not in plain and "masks" not in plain
    with_planes = simulate_stamps(PLANES, 0, 24)
    for key in ("object_ids", "ra", "dec", "labels"):
        np.testing.assert_array_equal(with_planes[key], plain[key])
    sigma = sky_sigma(PLANES)
    source_variance = with_planes["variances"].astype(np.float64) - sigma**2
    assert source_variance.min() > -1e-8  # sky variance exactly, plus the sources'
    extra = with_planes["images"].astype(np.float64) - plain["images"]
    # The sky noise is the same draw: the difference is the Poisson noise of the sources, a unit
    # normal once divided by its standard deviation (next to nothing where the sky is dark).
    lit = source_variance > 1e-8
    assert np.abs(extra[~lit]).max(initial=0.0) < 6e-4
    pulls = extra[lit] / np.sqrt(source_variance[lit])
    assert abs(pulls.mean()) < 0.05 and pulls.std() == pytest.approx(1.0, abs=0.05)
    assert with_planes["variances"].dtype == np.float32 and with_planes["masks"].dtype == np.int32


def test_total_noise_matches_the_variance_plane():
    images, models, variances = [], [], []
    for index in range(16):
        image, _, _, planes = _render(PLANES, index, 0)
        model, _, _, _ = _render(PLANES, index, 0, noise=False)
        images.append(image), models.append(model), variances.append(planes["variance"])
    pulls = (np.array(images, np.float64) - np.array(models)) / np.sqrt(np.array(variances))
    assert pulls.std() == pytest.approx(1.0, abs=0.03)
    # An i = 20 galaxy's brightest pixels: its Poisson noise is comparable with the sky's there
    # (HSC Wide is sky-limited for such galaxies), and negligible in its outskirts.
    peak = np.array(variances)[..., 2].max(axis=(1, 2)) / sky_sigma(PLANES)[2] ** 2
    assert 1.3 < np.median(peak) < 4
    assert np.all(gain(PLANES) > 100)


@pytest.mark.parametrize(
    "kind,flag",
    [("diffraction_spikes", "SAT"), ("cosmic_rays", "CR"), ("bad_column", "BAD")],
)
def test_artefacts_are_flagged_as_a_pipeline_would(kind, flag):
    config = dataclass_replace(PLANES, n_objects=8)
    label = KIND_NAMES.index(kind)
    flagged = 0
    for index in range(8):
        image, _, _, planes = _render(config, index, label)
        clean, _, _, clean_planes = _render(config, index, 0)
        mask = planes["mask"]
        flagged += int(np.count_nonzero(mask & bit(flag)))
        assert not (clean_planes["mask"] & (bit("SAT") | bit("CR") | bit("BAD"))).any()
        if kind != "diffraction_spikes":
            # Every pixel the artefact touched, and no other, carries the bit.
            touched = np.abs(image - clean) > 0
            np.testing.assert_array_equal((mask & bit(flag)) != 0, touched)
    assert flagged > 0
    # DETECTED marks the galaxy, and is not among the bits masked by default.
    assert (clean_planes["mask"] & bit("DETECTED")).any()


def test_survey_file_and_cli_write_the_planes(tmp_path):
    from tfanomaly.cli import main

    config = dataclass_replace(PLANES, n_objects=6, size=16, anomaly_fraction=0.5)
    simulate_survey(tmp_path / "a.h5", config, progress=False, chunk_size=4)
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["variances"].shape == f["masks"].shape == f["images"].shape
        assert SurveyConfig.from_json(f.attrs["config"]).planes
        stamps = simulate_stamps(config, 0, 6)
        np.testing.assert_array_equal(f["masks"][:], stamps["masks"])
        np.testing.assert_array_equal(f["variances"][:], stamps["variances"])
    result = CliRunner().invoke(
        main, ["simulate", str(tmp_path / "b.h5"), "-n", "3", "--size", "16", "--quiet", "--planes"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "b.h5") as f:
        assert "masks" in f and '"SAT": 1' in f.attrs["mask_bits"]
