"""Tests of whole simulated cutouts: sky noise, magnitudes, and the smooth simulator bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.simulate.config import SurveyConfig, sky_sigma
from tfanomaly.simulate.stamps import simulate_stamps


@pytest.fixture(scope="module")
def normal_stamps():
    config = SurveyConfig(n_objects=60, size=64, anomaly_fraction=0.0, seed=3)
    return config, simulate_stamps(config, 0, config.n_objects)["images"]


def test_sky_noise_matches_the_depths(normal_stamps):
    config, images = normal_stamps
    sigma = sky_sigma(config)
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
    expected_centre_i = [
        5.2172617912,
        3.9273972511,
        19.1041355133,
        4.3979549408,
        8.9769916534,
        12.8018455505,
    ]
    images = stamps["images"].astype(np.float64)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), expected_sums, rtol=1e-5)
    np.testing.assert_allclose(images[:, 16, 16, 2], expected_centre_i, rtol=1e-5)
