"""How well a characterisation groups the anomaly kinds of a labelled survey: the same kind among
an anomaly's nearest anomalies, clusters against kinds, artifacts apart from astrophysical
anomalies, and "more like this" precision. NumPy and scikit-learn; no TensorFlow.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import InputError

# Kinds made by the instrument, the optics or a passing satellite, not by the sky.
ARTIFACT_KINDS = ("satellite_trail", "cosmic_rays", "bad_column", "diffraction_spikes")
PURE = 0.9  # a cluster is "one or the other" when this fraction of its anomalies is


def _neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k nearest other rows (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(vectors) - 1)
    index = NearestNeighbors(n_neighbors=k + 1).fit(vectors)
    order = index.kneighbors(vectors, return_distance=False)
    return np.array([row[row != i][:k] for i, row in enumerate(order)])


def purity_at(vectors: np.ndarray, kinds: np.ndarray, k: int = 5) -> float:
    """Mean fraction of each object's ``k`` nearest objects (in ``vectors``) of its own kind."""
    kinds = np.asarray(kinds)
    if len(kinds) < 2:
        return float("nan")
    neighbours = _neighbours(np.asarray(vectors, np.float64), k)
    return float((kinds[neighbours] == kinds[:, None]).mean())


def chance_purity(kinds: np.ndarray) -> float:
    """purity_at for neighbours drawn at random: the mean over objects of the fraction of the other
    objects that share their kind."""
    kinds = np.asarray(kinds)
    _, inverse, counts = np.unique(kinds, return_inverse=True, return_counts=True)
    return float(((counts[inverse] - 1) / max(len(kinds) - 1, 1)).mean())


def separation(clusters: np.ndarray, is_artifact: np.ndarray) -> float:
    """Fraction of the objects that sit in a cluster at least ``PURE`` artifacts or at least
    ``PURE`` astrophysical (HDBSCAN's noise, -1, counts as no cluster)."""
    clusters, is_artifact = np.asarray(clusters), np.asarray(is_artifact, bool)
    good = 0
    for c in np.unique(clusters[clusters >= 0]):
        members = clusters == c
        share = is_artifact[members].mean()
        if share >= PURE or share <= 1 - PURE:
            good += int(members.sum())
    return good / max(len(clusters), 1)


def precision_similar(
    vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int = 12
) -> float:
    """ "More like this" over every object: mean fraction of the ``k`` nearest objects of each query
    row (an anomaly) that share its label."""
    from sklearn.neighbors import NearestNeighbors

    vectors = np.asarray(vectors, np.float64)
    index = NearestNeighbors(n_neighbors=k + 1).fit(vectors)
    found = index.kneighbors(vectors[queries], return_distance=False)
    hits = [
        (labels[row[row != q][:k]] == labels[q]).mean()
        for q, row in zip(queries, found, strict=True)
    ]
    return float(np.mean(hits)) if hits else float("nan")


def grouping_quality(
    vectors: np.ndarray, clusters: np.ndarray, labels: np.ndarray, kind_names
) -> dict:
    """The figures of a characterisation of labelled objects (``labels`` index ``kind_names``,
    0 = normal): ``vectors`` (N, D) where the neighbours are measured (the embedding or the map),
    ``clusters`` (N,) its clusters. Only the anomalies count.

    Returns:
        ``anomalies``; ``purity5`` and ``chance5`` (same kind among an anomaly's 5 nearest
        anomalies, and that fraction for random neighbours); ``ari`` (adjusted Rand index of the
        clusters, noise as one more cluster, against the kinds); ``separation`` (the fraction of
        anomalies in clusters >= 90% artifacts or >= 90% astrophysical; NaN when the set has only
        one of the two).
    """
    from sklearn.metrics import adjusted_rand_score

    labels = np.asarray(labels)
    if len(labels) != len(vectors) or len(labels) != len(clusters):
        raise InputError(f"{len(vectors)} vectors, {len(clusters)} clusters, {len(labels)} labels")
    anomalous = np.flatnonzero(labels > 0)
    kinds = labels[anomalous]
    names = np.asarray(kind_names)[kinds]
    is_artifact = np.isin(names, ARTIFACT_KINDS)
    both = 0 < is_artifact.sum() < len(is_artifact)
    return {
        "anomalies": int(len(anomalous)),
        "purity5": purity_at(np.asarray(vectors)[anomalous], kinds, 5),
        "chance5": chance_purity(kinds),
        "ari": float(adjusted_rand_score(kinds, np.asarray(clusters)[anomalous])),
        "separation": separation(np.asarray(clusters)[anomalous], is_artifact)
        if both
        else float("nan"),
    }


def format_grouping(figures: dict) -> str:
    """One line of ``grouping_quality``'s figures."""
    separation = figures["separation"]
    return (
        f"grouping of the {figures['anomalies']} embedded anomalies: purity@5 "
        f"{figures['purity5']:.2f} (chance {figures['chance5']:.2f}), clusters against kinds "
        f"ARI {figures['ari']:.2f}"
        + (
            ""
            if np.isnan(separation)
            else f", in clusters >= 90% artifacts or astrophysical {separation:.0%}"
        )
    )
