"""Feature spaces of stored vectors, and the figures of how well a space groups anomaly kinds."""

import numpy as np
import pytest

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.results.grouping import (
    chance_purity,
    format_grouping,
    grouping_quality,
    precision_similar,
    purity_at,
    separation,
)
from tfanomaly.results.spaces import (
    DEFAULT_SPACE,
    SPACES,
    available_spaces,
    space_vectors,
    standardised_block,
)


def test_blocks_weigh_alike_whatever_their_size():
    rng = np.random.default_rng(0)
    stored = {"residual_shape": rng.normal(5, 3, (100, 18)), "latents": rng.normal(0, 1, (100, 64))}
    vectors = space_vectors(stored.__getitem__, "residual_shape+latents")
    assert vectors.shape == (100, 82) and vectors.dtype == np.float32
    assert vectors[:, :18].var(axis=0).sum() == pytest.approx(1.0, rel=0.01)
    assert vectors[:, 18:].var(axis=0).sum() == pytest.approx(1.0, rel=0.01)
    block = standardised_block(np.c_[np.ones(10), np.r_[np.zeros(9), 1e6]])
    assert (block[:, 0] == 0).all() and block[:, 1].max() <= 8.0 / np.sqrt(2)  # constant; clipped
    with pytest.raises(ConfigError, match="unknown feature space 'pixels'"):
        space_vectors(stored.__getitem__, "pixels")
    with pytest.raises(InputError, match="finite"):
        standardised_block(np.array([[np.nan, 1.0], [1.0, 2.0]]))
    assert DEFAULT_SPACE in SPACES
    assert available_spaces(["latents", "feature_axes"]) == ["latents", "feature_axes"]


def test_grouping_figures_on_known_groups():
    kinds = np.repeat([1, 2, 3], 10)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    vectors = centres[kinds - 1] + np.random.default_rng(0).normal(0, 0.5, (30, 2))
    assert purity_at(vectors, kinds, 5) == 1.0
    assert chance_purity(kinds) == pytest.approx(9 / 29)
    labels = np.r_[np.zeros(20, int), kinds]
    all_vectors = np.r_[np.random.default_rng(1).normal(5, 0.5, (20, 2)), vectors]
    names = ["normal", "merger", "bad_column", "cosmic_rays"]
    clusters = np.r_[np.full(20, -1), kinds - 1]
    figures = grouping_quality(all_vectors, clusters, labels, names)
    assert figures["anomalies"] == 30 and figures["purity5"] == 1.0 and figures["ari"] == 1.0
    assert figures["separation"] == 1.0  # each cluster is all artifacts or all astrophysical
    assert "purity@5 1.00" in format_grouping(figures)
    # One cluster holding a merger and artifacts half and half: its members are not separated.
    assert separation(np.array([0, 0, 1, 1]), np.array([True, False, True, True])) == 0.5
    queries = np.flatnonzero(labels > 0)
    assert precision_similar(all_vectors, labels, queries, 5) == 1.0
    shuffled = np.random.default_rng(2).permutation(kinds)
    assert purity_at(vectors, shuffled, 5) < 0.6
