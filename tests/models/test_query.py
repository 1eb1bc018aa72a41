"""Which objects to show next (tfanomaly.models.query): the top, the uncertain, a batch spread over
the feature space, and the mix; a scripted user who labels each batch finds a kind that the top of
the ranking never shows. NumPy only."""

from __future__ import annotations

import numpy as np
import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.models.query import QUERIES, query_batch, top_unlabelled


def clusters(n_each=50, seed=0):
    """Three tight groups far apart in 2-d; group 0 scores highest, then 1, then 2."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    group = np.repeat(np.arange(3), n_each)
    space = (centres[group] + 0.1 * rng.normal(size=(3 * n_each, 2))).astype(np.float32)
    score = 3.0 - group + 0.1 * rng.uniform(size=3 * n_each)
    return score, space, group


def test_top_is_the_best_unlabelled_in_order():
    score = np.array([0.1, 5.0, 3.0, 4.0, 2.0, 4.0])
    labelled = np.array([False, True, False, False, False, False])
    assert top_unlabelled(score, labelled, 3).tolist() == [3, 5, 2]  # ties by row
    assert query_batch("top", score, labelled, np.zeros((6, 1)), 10).tolist() == [3, 5, 2, 4, 0]


def test_diverse_spreads_over_the_groups_of_the_high_scoring_part():
    score, space, group = clusters()
    labelled = np.zeros(len(score), bool)
    top = query_batch("top", score, labelled, space, 3)
    assert set(group[top]) == {0}
    diverse = query_batch("diverse", score, labelled, space, 3, pool=150)
    assert diverse[0] == top[0] and set(group[diverse]) == {0, 1, 2}
    # objects like those labelled come last: with group 0 labelled, the batch opens elsewhere
    labelled[group == 0] = True
    again = query_batch("diverse", score, labelled, space, 2, pool=150)
    assert set(group[again]) == {1, 2} and not labelled[again].any()
    # the pool bounds it: only the high-scoring part is searched
    assert set(
        group[query_batch("diverse", score, np.zeros_like(labelled), space, 3, pool=50)]
    ) == {0}


def test_mixed_takes_the_top_then_diverse():
    score, space, group = clusters()
    labelled = np.zeros(len(score), bool)
    batch = query_batch("mixed", score, labelled, space, 10, pool=150)
    top = query_batch("top", score, labelled, space, 7)
    assert batch[:7].tolist() == top.tolist()
    assert set(group[batch[7:]]) >= {1, 2} and len(set(batch.tolist())) == 10


def test_uncertain_is_nearest_the_boundary_among_the_high_scoring():
    score, space, group = clusters()
    labelled = np.zeros(len(score), bool)
    logit = np.linspace(-5, 5, len(score))

    batch = query_batch(
        "uncertain", score, labelled, space, 4, boundary=lambda rows: logit[rows], pool=100
    )
    candidates = top_unlabelled(score, labelled, 100)
    expected = candidates[np.argsort(np.abs(logit[candidates]), kind="stable")[:4]]
    assert batch.tolist() == expected.tolist()
    # no classifier yet: as diverse
    assert (
        query_batch("uncertain", score, labelled, space, 3, pool=150).tolist()
        == query_batch("diverse", score, labelled, space, 3, pool=150).tolist()
    )


@pytest.mark.parametrize("strategy", QUERIES)
def test_every_strategy_gives_distinct_unlabelled_objects(strategy):
    rng = np.random.default_rng(1)
    score, space = rng.normal(size=500), rng.normal(size=(500, 4)).astype(np.float32)
    labelled = rng.uniform(size=500) < 0.3
    batch = query_batch(strategy, score, labelled, space, 10, boundary=lambda r: score[r] - 1)
    assert len(batch) == 10 == len(set(batch.tolist())) and not labelled[batch].any()
    few = np.ones(500, bool)
    few[[3, 7]] = False
    assert sorted(query_batch(strategy, score, few, space, 10).tolist()) == [3, 7]


def test_a_wrong_strategy_or_size_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown query strategy 'random'.*mixed"):
        query_batch("random", np.zeros(3), np.zeros(3, bool), np.zeros((3, 1)))
    with pytest.raises(ConfigError, match="at least one"):
        query_batch("top", np.zeros(3), np.zeros(3, bool), np.zeros((3, 1)), 0)


def test_the_diverse_pool_grows_with_the_batches_labelled():
    """200 objects of group 0 score highest, 10 of group 1 come next: the first batch is drawn
    from the best 20 (group 0 only), later ones from a pool three times larger per batch
    labelled, which reaches group 1; a fixed pool (growth 1) never does."""
    rng = np.random.default_rng(2)
    group = np.repeat([0, 1], [200, 10])
    space = (np.where(group[:, None] == 1, 10.0, 0.0) + rng.normal(size=(210, 2))).astype(
        np.float32
    )
    score = np.where(group == 1, 0.0, 1.0 + rng.uniform(size=210))
    labelled = np.zeros(210, bool)
    first = query_batch("diverse", score, labelled, space, 5, pool=20)
    assert set(group[first]) == {0}
    labelled[first] = True
    fixed = query_batch("diverse", score, labelled, space, 5, pool=20, growth=1.0)
    assert set(group[fixed]) == {0}
    labelled[fixed] = True  # two batches labelled: a pool of 20 * 3**2 = 180
    assert set(group[query_batch("diverse", score, labelled, space, 5, pool=20)]) == {0}
    labelled[query_batch("diverse", score, labelled, space, 5, pool=20)] = True
    grown = query_batch("diverse", score, labelled, space, 5, pool=20)  # 20 * 3**3 = 540
    assert 1 in set(group[grown]) and not labelled[grown].any()
