"""Shared by the simulator's tests: a small survey, the substructure switches, noise-free cutouts."""

from __future__ import annotations

import numpy as np

from tfanomaly.simulate.config import SurveyConfig
from tfanomaly.simulate.stamps import _render_object

SMALL = SurveyConfig(n_objects=40, size=32, anomaly_fraction=0.25, seed=7)

SUBSTRUCTURE_OFF = {
    "knot_fraction": 0.0,
    "spiral_fraction": 0.0,
    "dust_fraction": 0.0,
    "blend_fraction": 0.0,
    "psf_e_max": 0.0,
}


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def noise_free(config, n, label=0):
    """Noise-free cutouts (n, H, W, 3) as float64: the main stream is the same as with noise."""
    return np.stack([_render_object(config, i, label, noise=False)[0] for i in range(n)]).astype(
        np.float64
    )


def with_only(name, value, **changes):
    """A tiny 32-px config with every kind of substructure off except ``name``."""
    off = SUBSTRUCTURE_OFF | {name: value}
    return SurveyConfig(n_objects=64, size=32, anomaly_fraction=0.0, seed=13, **off | changes)
