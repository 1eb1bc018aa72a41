"""Which objects an astronomer is shown next to label: the top of the ranking, the ones the ranking
is least sure of, or top-ranked ones spread over the feature space. NumPy only.

A ranking learns only from what it shows: "label the top 10" confirms what it already believes,
and a kind absent from its top is never labelled. ``diverse`` (after Astronomaly's Protege) picks
from the high-scoring part of the ranking by greedy farthest-point sampling in the feature space,
far from every object labelled so far, so that each batch shows kinds not yet seen; its pool grows
with each batch labelled, so that kinds the anomaly score ranks low come up in later rounds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfanomaly.errors import ConfigError

QUERIES = ("top", "uncertain", "diverse", "mixed")
DEFAULT_QUERY = "diverse"
POOL = 200  # the high-scoring part the first batch is drawn from (uncertain, diverse)
# ... and it grows this many times with each batch already labelled (200, 600, 1800, ...), so that
# kinds the anomaly score ranks low are shown after the first rounds; bounded by POOL_MAX, which
# keeps a batch cheap on a large catalog.
POOL_GROWTH = 3.0
POOL_MAX = 5000
MIXED_TOP = 0.7  # mixed: this share of a batch from the top, the rest diverse


def check_query(name: str) -> str:
    """``name`` if it is a query strategy (ConfigError naming them otherwise)."""
    if name not in QUERIES:
        raise ConfigError(f"unknown query strategy '{name}'; choose one of {', '.join(QUERIES)}")
    return name


def top_unlabelled(score: np.ndarray, labelled: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` highest scores among the unlabelled (``labelled``: (N,) bool), best
    first; one pass over N (argpartition), ties by row."""
    score = np.where(labelled, -np.inf, np.asarray(score, dtype=np.float64))
    k = int(min(k, int((~labelled).sum())))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
    return part[np.lexsort((part, -score[part]))].astype(np.int64)


def batch_first(score: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Rows in the order an astronomer sees them: the batch to label ``first`` (rows, in showing
    order), then every other row by ``score``, higher first (ties by row)."""
    first = np.asarray(first, dtype=np.int64)
    by_score = np.argsort(-np.asarray(score), kind="stable")
    return np.concatenate([first, by_score[~np.isin(by_score, first)]])


def farthest_points(
    space: np.ndarray, pool: np.ndarray, k: int, seen: np.ndarray, first: bool
) -> np.ndarray:
    """``k`` rows of ``pool`` (in score order) chosen one by one, each the farthest in ``space``
    from the rows ``seen`` and those chosen before it; ``first``: the pool's first row (the best
    scored) opens the batch when nothing has been seen."""
    if k <= 0 or len(pool) == 0:
        return np.empty(0, dtype=np.int64)
    x = np.asarray(space[pool], dtype=np.float64)
    d2 = np.full(len(pool), np.inf)
    if len(seen):
        ref = np.asarray(space[np.asarray(seen, dtype=np.int64)], dtype=np.float64)
        # Pools and labels are small (hundreds): a dense block of distances, in chunks of labels.
        for start in range(0, len(ref), 2048):
            block = ref[start : start + 2048]
            d = (x * x).sum(1)[:, None] + (block * block).sum(1)[None, :] - 2.0 * x @ block.T
            d = np.maximum(d, 0.0).min(axis=1)
            d2 = np.minimum(d2, d)
    chosen: list[int] = []
    taken = np.zeros(len(pool), bool)
    for _ in range(min(k, len(pool))):
        if not chosen and first and not np.isfinite(d2).any():
            pick = 0
        else:
            # Farthest first; among equals (all infinite) the better scored, i.e. the lower index.
            pick = int(np.argmax(np.where(taken, -1.0, d2)))
        chosen.append(pick)
        taken[pick] = True
        d2 = np.minimum(d2, ((x - x[pick]) ** 2).sum(-1))
    return pool[np.array(chosen, dtype=np.int64)]


def query_batch(
    strategy: str,
    score: np.ndarray,
    labelled: np.ndarray,
    space: np.ndarray,
    size: int = 10,
    *,
    boundary: Callable[[np.ndarray], np.ndarray] | None = None,
    pool: int = POOL,
    growth: float = POOL_GROWTH,
    mixed_top: float = MIXED_TOP,
) -> np.ndarray:
    """The rows to show next, in showing order.

    Args:
        strategy: ``top`` (the ranking's top), ``uncertain`` (of the ``pool`` best-scored, those
            nearest the classifier's decision boundary; without a classifier yet, ``diverse``),
            ``diverse`` (of the best-scored, a pool growing with the labels, greedy
            farthest-point in ``space`` from the labelled objects and each other) or ``mixed`` (``mixed_top`` of the batch from the
            top, the rest diverse).
        score: (N,) the ranking's score, higher first.
        labelled: (N,) bool, objects already labelled (never shown again).
        space: (N, D) the feature space distances are measured in.
        size: objects in the batch.
        boundary: ``rows -> (len(rows),)`` signed distance to the classifier's decision boundary
            (its logit), or None without a classifier.
        pool: the high-scoring unlabelled objects ``uncertain`` and ``mixed`` choose from, and
            ``diverse`` while less than one batch is labelled.
        growth: ``diverse`` draws from ``pool * growth ** b`` objects (at most ``POOL_MAX``),
            ``b`` the number of whole batches of ``size`` already labelled.
        mixed_top: the share of a ``mixed`` batch taken from the top.

    Returns:
        (min(size, unlabelled),) int64 rows.
    """
    check_query(strategy)
    labelled = np.asarray(labelled, dtype=bool)
    if size < 1:
        raise ConfigError("a query batch needs at least one object")
    if strategy == "top":
        return top_unlabelled(score, labelled, size)
    seen = np.flatnonzero(labelled)
    if strategy == "diverse" or (strategy == "uncertain" and boundary is None):
        batches = int(labelled.sum()) // size
        grown = int(min(pool * float(growth) ** min(batches, 64), max(pool, POOL_MAX)))
        return farthest_points(
            space, top_unlabelled(score, labelled, max(grown, size)), size, seen, True
        )
    candidates = top_unlabelled(score, labelled, max(pool, size))
    if strategy == "uncertain":
        distance = np.abs(np.asarray(boundary(candidates), dtype=np.float64))
        return candidates[np.argsort(distance, kind="stable")[:size]]
    n_top = min(size, int(round(mixed_top * size)))
    top, rest = candidates[:n_top], candidates[n_top:]
    spread = farthest_points(space, rest, size - n_top, np.concatenate([seen, top]), False)
    return np.concatenate([top, spread]).astype(np.int64)
