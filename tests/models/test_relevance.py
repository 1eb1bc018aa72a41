"""The relevance learned from labels (tfanomaly.models.relevance) on tiny synthetic feature spaces:
cold start, labels moving similar objects, one-class labels, the knobs' checks."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.relevance import (
    ARTIFACT,
    INTERESTING,
    LABELS,
    NORMAL,
    RelevanceConfig,
    anomaly_prior,
    label_targets,
    nearest_squared_distances,
    ranking_space,
    relevance,
    relevance_scores,
    standardise,
)


def clusters(seed=0, n_background=400, n_cluster=40, dim=8):
    """A background of normal objects, an 'interesting' cluster of modest anomaly (1-1.5 sigma)
    and an 'artifact' cluster of the highest anomaly (3-4 sigma), far apart in feature space."""
    rng = np.random.default_rng(seed)
    background = rng.normal(size=(n_background, dim))
    interesting = 0.3 * rng.normal(size=(n_cluster, dim)) + 6.0 * np.eye(dim)[0]
    artifact = 0.3 * rng.normal(size=(n_cluster, dim)) + 6.0 * np.eye(dim)[1]
    features = np.concatenate([background, interesting, artifact]).astype(np.float32)
    anomaly = np.concatenate(
        [
            rng.normal(0.0, 0.7, n_background),
            rng.uniform(1.0, 1.5, n_cluster),
            rng.uniform(3.0, 4.0, n_cluster),
        ]
    )
    rows = {
        "interesting": np.arange(n_background, n_background + n_cluster),
        "artifact": np.arange(n_background + n_cluster, n_background + 2 * n_cluster),
    }
    return anomaly, features, rows


def order_of(score):
    return np.argsort(-score, kind="stable")


def test_label_targets():
    assert LABELS == (INTERESTING, ARTIFACT, NORMAL)
    targets = label_targets(["interesting", "artifact", "normal", "interesting"])
    np.testing.assert_array_equal(targets, [1.0, -1.0, -1.0, 1.0])
    assert targets.dtype == np.float64
    assert label_targets([]).shape == (0,)
    with pytest.raises(InputError, match="boring"):
        label_targets(["interesting", "boring"])


def test_cold_start_is_the_anomaly_order():
    anomaly, features, _ = clusters()
    empty = np.array([], dtype=np.int64)
    score = relevance_scores(anomaly, features, empty, np.array([]))
    np.testing.assert_array_equal(order_of(score), order_of(anomaly))
    sigma = relevance_scores(
        anomaly, features, empty, np.array([]), RelevanceConfig(anomaly_scale="sigma")
    )
    np.testing.assert_array_equal(sigma, anomaly)


def test_anomaly_prior_keeps_the_order_and_is_gaussian_by_rank():
    anomaly = np.array([5.0, -1.0, 30.0, 0.5, 2.0])
    prior = anomaly_prior(anomaly)
    np.testing.assert_array_equal(order_of(prior), order_of(anomaly))
    np.testing.assert_allclose(np.sort(prior), -np.sort(prior)[::-1], atol=1e-12)  # symmetric
    assert prior.max() < 1.3  # the 30-sigma tail is compressed to the top quantile of 5 objects
    with pytest.raises(InputError):
        anomaly_prior(np.array([0.0, np.nan]))


def test_two_interesting_labels_lift_their_cluster_above_unlabelled_artifacts():
    anomaly, features, rows = clusters()
    labelled = rows["interesting"][:2]
    score = relevance_scores(anomaly, features, labelled, label_targets([INTERESTING] * 2))
    others = rows["interesting"][2:]
    assert score[others].min() > score[rows["artifact"]].max()
    # unsupervised, the artifacts were all above them
    assert anomaly[others].max() < anomaly[rows["artifact"]].min()


def test_artifact_labels_sink_their_cluster_below_the_interesting_one():
    anomaly, features, rows = clusters()
    labelled = rows["artifact"][:2]
    score = relevance_scores(anomaly, features, labelled, label_targets([ARTIFACT, NORMAL]))
    assert score[rows["artifact"][2:]].max() < score[rows["interesting"]].min()


def test_both_classes_together():
    anomaly, features, rows = clusters()
    labelled = np.concatenate([rows["interesting"][:2], rows["artifact"][:2]])
    targets = label_targets([INTERESTING, INTERESTING, ARTIFACT, ARTIFACT])
    score = relevance_scores(anomaly, features, labelled, targets)
    top = order_of(score)[:40]
    assert set(rows["interesting"][2:]) <= set(top)
    assert not set(rows["artifact"]) & set(top)


def test_one_class_interesting_labels_lift_their_neighbourhood_and_sink_the_far():
    """Documented: with interesting labels only, objects nearer to one than the median object
    rise and the farther ones sink; the anomaly order stands among objects equally far."""
    anomaly, features, rows = clusters()
    config = RelevanceConfig()
    labelled = rows["interesting"][:3]
    score = relevance_scores(anomaly, features, labelled, label_targets([INTERESTING] * 3), config)
    shift = score - anomaly_prior(anomaly)
    assert shift[rows["interesting"]].min() > 0.5 * config.weight
    space = ranking_space(anomaly, features, config)
    d2 = nearest_squared_distances(space, labelled)
    nearer = d2 < np.median(d2)
    assert (shift[nearer] > 0).all() and (shift[~nearer] <= 0).all()
    assert shift[rows["artifact"]].max() < 0


@pytest.mark.parametrize("label", [ARTIFACT, NORMAL])
def test_one_class_other_labels_sink_their_neighbourhood_and_lift_the_unexplored(label):
    """Documented: with artifact / normal labels only, objects nearer to one than the median
    object sink, the farther ones (away from everything labelled so far) rise."""
    anomaly, features, rows = clusters()
    config = RelevanceConfig()
    labelled = rows["artifact"][:3]
    score = relevance_scores(anomaly, features, labelled, label_targets([label] * 3), config)
    shift = score - anomaly_prior(anomaly)
    assert shift[rows["artifact"]].max() < -0.5 * config.weight
    space = ranking_space(anomaly, features, config)
    d2 = nearest_squared_distances(space, labelled)
    assert ((shift < 0) == (d2 < np.median(d2))).all()
    farthest = np.argsort(d2)[-20:]
    assert shift[farthest].min() > 0.25 * config.weight


def test_relevance_is_the_soft_nearest_label_vote():
    rng = np.random.default_rng(3)
    space = rng.normal(size=(200, 5)).astype(np.float32)
    rows = np.array([3, 50, 120, 7])
    targets = np.array([1.0, -1.0, 1.0, -1.0])
    config = RelevanceConfig(power=2.5)
    d = np.sqrt(((space[:, None, :].astype(np.float64) - space[rows][None]) ** 2).sum(-1))
    d = np.maximum(d, 1e-6)
    d_pos, d_neg = d[:, targets > 0].min(1), d[:, targets < 0].min(1)
    expected = np.tanh(1.25 * np.log(d_neg / d_pos))
    got = relevance(space, rows, targets, config)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got[[3, 120]], 1.0, atol=1e-6)  # a label speaks for itself
    np.testing.assert_allclose(got[[50, 7]], -1.0, atol=1e-6)
    assert (relevance(space, np.array([], dtype=np.int64), np.array([]), config) == 0).all()


def test_ranking_space_is_the_features_and_the_anomaly_coordinate():
    anomaly, features, _ = clusters()
    space = ranking_space(anomaly, features, RelevanceConfig(anomaly_coordinate=2.0))
    assert space.shape == (len(anomaly), features.shape[1] + 1) and space.dtype == np.float32
    np.testing.assert_allclose(space[:, :-1], standardise(features))
    np.testing.assert_allclose(
        np.diff(space[:, -1]), 2.0 * np.diff(anomaly) / anomaly.std(), rtol=1e-4, atol=1e-5
    )
    flat = ranking_space(anomaly, features, RelevanceConfig(anomaly_coordinate=0.0))
    assert (flat[:, -1] == 0).all()  # similarity in the features alone


def test_nearest_squared_distances_against_brute_force():
    rng = np.random.default_rng(4)
    space = rng.normal(size=(300, 7)).astype(np.float32)
    rows = np.array([0, 10, 299])
    brute = ((space[:, None, :].astype(np.float64) - space[rows][None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(
        nearest_squared_distances(space, rows), np.maximum(brute, 1e-12), rtol=1e-4, atol=1e-5
    )


def test_inputs_are_checked():
    anomaly, features, rows = clusters()
    with pytest.raises(InputError, match="targets"):
        relevance_scores(anomaly, features, np.array([1, 2]), np.array([1.0]))
    with pytest.raises(InputError, match="rows"):
        relevance_scores(anomaly, features, np.array([len(anomaly)]), np.array([1.0]))
    with pytest.raises(InputError, match="feature vectors"):
        relevance_scores(anomaly, features[:-1], np.array([1]), np.array([1.0]))
    with pytest.raises(InputError, match="twice"):
        relevance_scores(anomaly, features, np.array([1, 1]), np.array([1.0, -1.0]))


@pytest.mark.parametrize(
    "change",
    [dict(weight=-1.0), dict(power=0.0), dict(anomaly_coordinate=-1.0), dict(anomaly_scale="log")],
)
def test_config_is_validated(change):
    with pytest.raises(ConfigError):
        RelevanceConfig(**change).validate()
