"""The learned ranking's pieces (tfanomaly.models.preference): the logistic regression against
scikit-learn, the gate shut on labels that carry no information and open on labels that do."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.models.preference import (
    PreferenceConfig,
    auroc,
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


def design(seed=0, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:30, 0] += 5.0  # a wanted group
    return standardised_columns(x)


def test_gate_opens_on_separable_labels_and_stays_shut_on_random_ones():
    x = design()
    rows = np.r_[0:8, 100:108]
    targets = np.r_[np.ones(8), -np.ones(8)]
    fitted = fit_preference(x, rows, targets)
    # AUROC 1 from 8 against 8 is z = 3.4: the gate (open from z = 2, full at 4) two-thirds open
    assert fitted.gate > 0.6 and fitted.cv_auroc > 0.9
    score = fitted.unit_logit(x)
    assert score[8:30].min() > np.median(score)
    shut = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        rows = rng.choice(np.arange(30, 600), 20, replace=False)
        targets = rng.choice([1.0, -1.0], 20)
        shut += fit_preference(x, rows, targets).gate == 0
    assert shut >= 8


def test_examples_alone_open_the_gate_and_other_labels_alone_fit_nothing():
    x = design()
    fitted = fit_preference(x, np.array([0, 1, 2]), np.ones(3))
    assert fitted.gate > 0
    assert fitted.unit_logit(x)[3:30].mean() > fitted.unit_logit(x)[30:].mean() + 2
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
