"""Tests of the renderer: the PSF's ellipticity, on a single star and through the survey."""

from __future__ import annotations

import numpy as np

from tfanomaly.simulate import render

from .helpers import noise_free, with_only


def test_psf_ellipticity_elongates_stars_along_its_angle():
    grid = render.grid(32, 3.0)

    def star_shape(psf_e, angle):
        scene = render.Scene(grid, np.array([4.5, 4.2, 3.6]), 3.0, psf_e, angle)
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
