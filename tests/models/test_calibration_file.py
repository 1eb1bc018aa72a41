"""Calibration files of every layout load and score as they did: the flat layout written before
the per-term records (``old_calibration``), and the current one, round trip."""

from pathlib import Path

import numpy as np

from tfanomaly.models.calibration import Calibration
from tfanomaly.models.noise_score import NoiseAwareScore

from .old_calibration import scores, write_flat

EXPECTED = Path(__file__).parent / "data" / "old_calibration_scores.npz"


def assert_scores_as_before(calibration: Calibration) -> None:
    got = scores(NoiseAwareScore(calibration))
    with np.load(EXPECTED) as expected:
        assert set(got) == set(expected.files)
        for key in expected.files:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_an_old_flat_calibration_file_loads_and_scores_as_before(tmp_path):
    write_flat(tmp_path / "old.npz")
    old = Calibration.load(tmp_path / "old.npz")
    assert old.planes == ("variance", "mask") and len(old.terms) == 5
    assert_scores_as_before(old)
    # Saved again (in the current layout) it loads to the same numbers and scores.
    old.save(tmp_path / "again.npz")
    assert_scores_as_before(Calibration.load(tmp_path / "again.npz"))
