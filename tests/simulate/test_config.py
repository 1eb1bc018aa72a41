"""Tests of the survey config: kind and band names, validation, JSON round trips."""

from __future__ import annotations

import json

import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.simulate.config import ANOMALY_KINDS, BANDS, KIND_NAMES, SurveyConfig

from .helpers import SMALL, SUBSTRUCTURE_OFF, dataclass_replace


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
