"""Tests of the injected anomalies: colours of clumps, artefacts over a normal scene, sky kinds."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.simulate.config import KIND_NAMES, SurveyConfig, sky_sigma
from tfanomaly.simulate.stamps import _render_object, simulate_stamps


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
    sigma = sky_sigma(config)
    bands_hit = []
    for index in range(6):
        with_artefact, ra, dec = _render_object(config, index, label)
        clean, ra0, dec0 = _render_object(config, index, 0)
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
        image, _, _ = _render_object(config, 3, KIND_NAMES.index(kind))
        normal, _, _ = _render_object(config, 3, 0)
        assert image.shape == normal.shape == (48, 48, 3) and image.dtype == np.float32
        assert np.abs(image - normal).sum() > 100 * sky_sigma(config)[2], kind
