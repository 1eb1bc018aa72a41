"""The learned ranking's pieces (tfanomaly.models.preference): the logistic regression against
scikit-learn, the gate shut on labels that carry no information and open on labels that do."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.preference import (
    PreferenceConfig,
    asinh_columns,
    auroc,
    chance_z,
    fit_logistic,
    fit_preference,
    rejected_sink,
    standardised_columns,
)


def test_fit_logistic_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(float)
    beta = fit_logistic(x, y, np.ones(80), c=0.7)
    model = LogisticRegression(C=0.7).fit(x, y)
    np.testing.assert_allclose(beta[:-1], model.coef_[0], atol=1e-3)
    np.testing.assert_allclose(beta[-1], model.intercept_[0], atol=1e-3)


def test_auroc_counts_ties_half():
    assert auroc(np.array([2.0, 3.0]), np.array([1.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5


def test_a_few_objects_far_out_do_not_set_a_score_columns_scale():
    """A sigma column whose bulk is N(0, 1) with 1% of the objects at 1000 sigma: standardised by
    its standard deviation the bulk would spread over 0.01; through the robust z and asinh it
    keeps most of a unit spread, in the same order. A constant column comes out 0."""
    rng = np.random.default_rng(0)
    column = rng.normal(size=1000)
    column[:10] = 1000.0
    x = asinh_columns(np.stack([column, np.full(1000, 3.0)], axis=1))
    assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose([x[:, 0].mean(), x[:, 0].std()], [0.0, 1.0], atol=1e-5)
    assert x[10:, 0].std() > 0.5 > 0.05 > standardised_columns(column[:, None])[10:].std()
    assert (np.argsort(x[10:, 0], kind="stable") == np.argsort(column[10:], kind="stable")).all()
    assert (x[:, 1] == 0).all()
    with pytest.raises(InputError, match="finite"):
        asinh_columns(np.array([[np.nan, 1.0]]))


def design(seed=0, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:30, 0] += 5.0  # a wanted group
    return standardised_columns(x)


def test_gate_opens_on_separable_labels_and_stays_shut_on_random_ones():
    x = design()
    rows = np.r_[0:12, 100:112]
    targets = np.r_[np.ones(12), -np.ones(12)]
    fitted = fit_preference(x, rows, targets)
    # AUROC 1 from 12 against 12 is z = 4.2: the gate (open from z = 3, full at 5) half open
    config = PreferenceConfig()
    expected = (chance_z(1.0, 12, 12) - config.gate_z) / config.gate_span
    assert fitted.cv_auroc == 1.0 and fitted.gate == pytest.approx(expected) and expected > 0.5
    score = fitted.unit_logit(x)
    assert score[12:30].min() > np.median(score)
    shut = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        rows = rng.choice(np.arange(30, 600), 20, replace=False)
        targets = rng.choice([1.0, -1.0], 20)
        shut += fit_preference(x, rows, targets).gate == 0
    assert shut >= 8


def test_examples_alone_open_the_gate_and_other_labels_alone_fit_nothing():
    x = design()
    fitted = fit_preference(x, np.array([0, 1, 2, 3, 4]), np.ones(5))
    assert fitted.gate > 0
    assert fitted.unit_logit(x)[5:30].mean() > fitted.unit_logit(x)[30:].mean() + 2
    assert fit_preference(x, np.array([100, 101]), -np.ones(2)) is None
    assert fit_preference(x, np.array([], int), np.array([])) is None


def test_rejected_sink_is_local():
    x = design()
    sink = rejected_sink(x, np.array([0]), PreferenceConfig())
    assert sink[0] == pytest.approx(PreferenceConfig().sink)
    assert np.median(sink) < 0.01 and (sink > 0.5).mean() < 0.03


def test_config_is_checked():
    with pytest.raises(ConfigError):
        PreferenceConfig(c=0).validate()
    with pytest.raises(ConfigError):
        PreferenceConfig(weight=-1).validate()
