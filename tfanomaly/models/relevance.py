"""Relevance learned from an astronomer's labels, combined with the anomaly score: the ranking that
learns (after Astronomaly's NeighbourScore, Lochner & Bassett 2021). NumPy and SciPy, no TensorFlow.

The labels are interesting (+1) or not (artifact, normal: -1). An object's relevance compares its
distance to the nearest interesting label with its distance to the nearest other label, in a
ranking space: the standardised features of a model plus the anomaly score as one more coordinate
(so that "like this one" also means "about as anomalous"). Relevance is a soft nearest-label
vote, tanh(power/2 * log(d_other / d_interesting)) in (-1, 1), 0 where both kinds of label are
equally far. The ranking score is the anomaly score on the Gaussian scale of its rank plus
``weight`` times the relevance. Unlike NeighbourScore (anomaly * a factor of at most 0.95 from a
random forest's prediction), labels can lift objects above the anomaly order as well as sink them,
and no model is fitted: a re-rank is two nearest-distance passes (~0.05 s at 10^5 objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfanomaly.errors import ConfigError, InputError

INTERESTING = "interesting"
ARTIFACT = "artifact"
NORMAL = "normal"
LABELS = (INTERESTING, ARTIFACT, NORMAL)
TARGETS = {INTERESTING: 1.0, ARTIFACT: -1.0, NORMAL: -1.0}
ANOMALY_SCALES = ("rank", "sigma")
CHUNK_ROWS = 16_384  # rows per distance block: ~1 MB of float32 per 16 labels
TINY = 1e-12  # squared distances are floored here (an object's distance to its own label)


def label_targets(labels: list[str]) -> np.ndarray:
    """Targets of label names: interesting -> +1, artifact and normal -> -1."""
    unknown = sorted({str(label) for label in labels} - set(LABELS))
    if unknown:
        raise InputError(f"unknown label(s) {', '.join(unknown)}; use one of {', '.join(LABELS)}")
    return np.array([TARGETS[label] for label in labels], dtype=np.float64)


@dataclass(frozen=True)
class RelevanceConfig:
    """How labels move the ranking. The defaults were chosen on a tuning survey with scripted
    users (``benchmarks/bench_discovery.py``, survey seed 500) and reported on a fresh one.

    Args:
        weight: how far a relevance of +1 (or -1) moves an object, in units of the anomaly
            score's Gaussian scale (``anomaly_scale``, on which the anomaly has unit spread and
            the top of 10^5 objects sits at 4.4): a confident vote outweighs the anomaly
            order, a vote of 0.17 moves an object by one unit.
        power: sharpness of the vote: relevance = tanh(power/2 * log(d_other / d_interesting)),
            so an object twice as far from the other labels as from an interesting one gets
            tanh(0.69) = 0.6 at power 2.
        anomaly_coordinate: the anomaly score's weight as a coordinate of the ranking space, in
            units of one standardised feature (the score is divided by its standard deviation);
            0 measures similarity in the features alone.
        anomaly_scale: ``rank`` adds the relevance to the normal quantile of the anomaly score's
            rank (the order is kept, the long tail compressed, so that labels can move the
            highest-scoring objects); ``sigma`` adds it to the sigma values as they are.
    """

    weight: float = 6.0
    power: float = 2.0
    anomaly_coordinate: float = 2.0
    anomaly_scale: str = "rank"

    def validate(self) -> None:
        if not self.weight >= 0:
            raise ConfigError(f"the relevance weight must be at least 0, got {self.weight}")
        if not self.power > 0:
            raise ConfigError(f"the relevance power must be positive, got {self.power}")
        if not self.anomaly_coordinate >= 0:
            raise ConfigError(
                f"the anomaly coordinate must be at least 0, got {self.anomaly_coordinate}"
            )
        if self.anomaly_scale not in ANOMALY_SCALES:
            raise ConfigError(
                f"unknown anomaly scale '{self.anomaly_scale}'; choose one of "
                f"{', '.join(ANOMALY_SCALES)}"
            )


def standardise(features: np.ndarray) -> np.ndarray:
    """Features scaled to zero mean and unit variance per dimension (float32), so that every
    direction of the feature space counts alike in distances."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or not np.isfinite(features).all():
        raise InputError(f"features must be a finite (N, D) array, got shape {features.shape}")
    mean = features.mean(axis=0, dtype=np.float64)
    std = features.std(axis=0, dtype=np.float64)
    return ((features - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def check_anomaly(anomaly: np.ndarray) -> np.ndarray:
    anomaly = np.asarray(anomaly, dtype=np.float64)
    if anomaly.ndim != 1 or not np.isfinite(anomaly).all():
        raise InputError(f"the anomaly score must be a finite (N,) array, got {anomaly.shape}")
    return anomaly


def anomaly_prior(anomaly: np.ndarray, scale: str = "rank") -> np.ndarray:
    """The anomaly score on the scale the relevance is added to (same order, higher first)."""
    from scipy.special import ndtri

    anomaly = check_anomaly(anomaly)
    if scale == "sigma":
        return anomaly.copy()
    rank = np.empty(len(anomaly), dtype=np.float64)
    rank[np.argsort(anomaly, kind="stable")] = np.arange(len(anomaly))
    return ndtri((rank + 0.5) / len(anomaly))


def ranking_space(
    anomaly: np.ndarray, features: np.ndarray, config: RelevanceConfig, *, prepared: bool = False
) -> np.ndarray:
    """(N, D + 1) float32: the standardised features and the anomaly score (over its standard
    deviation, times ``config.anomaly_coordinate``), where relevance is measured.

    ``prepared``: the features are already scaled as they should weigh against each other (a
    space of several blocks, ``results.spaces``); they are only brought, all together, to a mean
    variance of 1 per dimension, the scale the anomaly coordinate is expressed in."""
    anomaly = check_anomaly(anomaly)
    if prepared:
        unit = np.asarray(features, dtype=np.float32)
        mean_variance = float(unit.var(axis=0).mean()) if unit.size else 1.0
        unit = unit / np.float32(np.sqrt(mean_variance) or 1.0)
    else:
        unit = standardise(features)
    if len(unit) != len(anomaly):
        raise InputError(f"{len(anomaly)} anomaly scores but {len(unit)} feature vectors")
    std = anomaly.std() or 1.0
    column = (config.anomaly_coordinate / std) * (anomaly - np.median(anomaly))
    return np.concatenate([unit, column[:, None].astype(np.float32)], axis=1)


def nearest_squared_distances(space: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(N,) each object's squared distance to the nearest of the objects ``rows``."""
    labelled = space[rows]
    norms = (labelled * labelled).sum(axis=1)
    out = np.empty(len(space), dtype=np.float64)
    for start in range(0, len(space), CHUNK_ROWS):
        x = space[start : start + CHUNK_ROWS]
        d2 = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ labelled.T) + norms[None, :]
        out[start : start + CHUNK_ROWS] = d2.min(axis=1)
    return np.maximum(out, TINY)  # rounding can make a distance slightly negative


def relevance(
    space: np.ndarray, rows: np.ndarray, targets: np.ndarray, config: RelevanceConfig
) -> np.ndarray:
    """(N,) relevance in [-1, 1]: tanh(power/2 * log(d_- / d_+)), d_+ the distance to the
    nearest interesting label, d_- to the nearest other label, in ``space``.

    One class only: the missing distance is the median, over all objects, of the distance to the
    labels there are. With interesting labels only, objects nearer to one than that median rise
    and those farther sink; with artifact / normal labels only, objects nearer to one sink and
    those farther (the unexplored) rise. With no labels, 0 everywhere.
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.float64)
    if len(rows) == 0:
        return np.zeros(len(space))
    positive, negative = rows[targets > 0], rows[targets <= 0]
    d2_pos = nearest_squared_distances(space, positive) if len(positive) else None
    d2_neg = nearest_squared_distances(space, negative) if len(negative) else None
    if d2_pos is None:
        d2_pos = np.full(len(space), np.median(d2_neg))
    if d2_neg is None:
        d2_neg = np.full(len(space), np.median(d2_pos))
    return np.tanh(0.25 * config.power * (np.log(d2_neg) - np.log(d2_pos)))


def relevance_scores(
    anomaly: np.ndarray,
    features: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    config: RelevanceConfig | None = None,
) -> np.ndarray:
    """The score to rank by (higher first): the anomaly score moved by the relevance the labels
    give each object (see ``relevance``). With no labels, the anomaly order (cold start).

    Args:
        anomaly: (N,) the unsupervised score in sigma units, higher = more anomalous.
        features: (N, D) each object's vector in a feature space of the model.
        rows: (M,) the rows of the labelled objects.
        targets: (M,) their targets, +1 (interesting) or -1 (artifact, normal).
        config: the knobs; ``RelevanceConfig()`` when None.

    Example:
        score = relevance_scores(sigma, feature_axes, np.array([7, 42]),
                                 label_targets(["interesting", "artifact"]))
        order = np.argsort(-score, kind="stable")
    """
    config = config or RelevanceConfig()
    config.validate()
    prior = anomaly_prior(anomaly, config.anomaly_scale)
    rows, targets = check_labelled(rows, targets, len(prior))
    if len(rows) == 0:
        return prior
    space = ranking_space(anomaly, features, config)
    return prior + config.weight * relevance(space, rows, targets, config)


def check_labelled(rows, targets, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and targets as arrays, checked against each other and the catalog's size ``n``."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    if len(rows) != len(targets):
        raise InputError(f"{len(rows)} labelled rows but {len(targets)} targets")
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise InputError(f"labelled rows must lie in 0..{n - 1}")
    if len(np.unique(rows)) != len(rows):
        raise InputError("a labelled row appears twice")
    return rows, targets
