"""A ranking that learns what the astronomer wants from a few labels: the anomaly score's prior plus
a regularised classifier of the labels whose influence grows with the evidence that it separates
them. NumPy and SciPy, no TensorFlow.

The classifier is an L2-regularised logistic regression (classes balanced) on a design matrix of
the characterisation space (``results.spaces``; each column standardised and clipped), the score
terms' sigma columns and the prior (each through asinh of its robust z: :func:`asinh_columns`).
Unlabelled objects are used too: a fixed random sample of them stands in as weak negatives
(anomalies are rare, so a random object is almost always normal), which lets the classifier learn
from interesting labels alone (a cold start from examples) and from other labels alone (the kinds
already rejected sink).

The ranking score is ``prior + weight * gate * f``, ``f`` the classifier's logit on a robust unit
scale and ``gate`` in [0, 1] the evidence that it separates the labels: cross-validated (each label
held out in turn) AUROC of the labelled interesting against the labelled others, as a z-score
against chance; it opens from ``gate_z`` and is fully open ``gate_span`` sigma later. Labels that
carry no information (random labels) keep the gate shut, so the ranking stays the anomaly order.
With interesting labels only, the held-out interesting objects are measured against held-out
unlabelled ones instead, and the gate is the same z-score.

Before the evidence is in (one to three interesting labels cannot pass a cross-validation), the
classifier's best matches are lifted: ``lift * (1 - gate) * b``, ``b`` 0 below the top
``lift_fraction`` of its logit and 1 at the top tenth of that, so that objects like the first
interesting ones come up at once while labels that carry no information can reorder only that
small fraction of the catalog (measured with scripted users on eight data families: docs,
Results > Discovery).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfanomaly.errors import ConfigError, InputError

CLIP = 8.0  # the feature-space block's standardised values are clipped here
MIN_WEIGHT = 10.0  # the labelled objects weigh at least as much as ten


@dataclass(frozen=True)
class PreferenceConfig:
    """Knobs of the learned ranking (chosen with scripted users, ``studies/discovery_users.py``).

    Args:
        weight: how far a fully trusted classifier moves an object, in robust units of its logit
            per unit of the prior (the anomaly score's rank on a Gaussian scale).
        c: inverse L2 strength of the logistic regression (sklearn's C, balanced classes).
        background: unlabelled objects sampled as weak negatives.
        background_weight: their total weight, as a fraction of one class's weight.
        gate_z: the cross-validated AUROC's z-score against chance where the gate opens.
        gate_span: sigma from opening to fully open.
        seed: the background sample's seed.
        sink: with other labels only (nothing interesting yet), how far the objects nearest the
            rejected ones sink (prior units, at distance 0), so that other kinds come up.
        sink_fraction: the fraction of all objects within the sink's scale distance.
        example_gate: the least gate when examples are given ("find more like this", ``--like``):
            the astronomer says what they want, so the classifier is trusted from one example.
        lift: how far the classifier's best matches rise before the evidence opens the gate
            (prior units, scaled by 1 - gate): only the top ``lift_fraction`` of its logit moves,
            so labels that carry no information reorder few objects.
        lift_fraction: the fraction of objects the lift can raise.
    """

    weight: float = 1.0
    c: float = 0.1
    background: int = 400
    background_weight: float = 0.5
    gate_z: float = 3.0
    gate_span: float = 2.0
    seed: int = 0
    sink: float = 1.0
    sink_fraction: float = 0.01
    example_gate: float = 1.0
    lift: float = 2.0
    lift_fraction: float = 0.01

    def validate(self) -> None:
        for name in ("weight", "background_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"preference {name} must be at least 0")
        if not self.c > 0 or not self.gate_span > 0:
            raise ConfigError("preference c and gate_span must be positive")
        if self.background < 0:
            raise ConfigError("preference background must be at least 0")


def standardised_columns(design: np.ndarray) -> np.ndarray:
    """(N, F) float32 columns at zero median and unit standard deviation, clipped at +-CLIP: the
    learned ranking's feature-space block."""
    design = _finite(design)
    centre = np.median(design, axis=0)
    spread = design.std(axis=0)
    unit = (design - centre) / np.where(spread > 0, spread, np.inf)
    return np.clip(unit, -CLIP, CLIP).astype(np.float32)


def asinh_columns(design: np.ndarray) -> np.ndarray:
    """(N, F) float32: each column's robust z (median, MAD-sigma; the standard deviation where the
    MAD is 0; constant columns 0) through asinh, then at zero mean and unit variance: the learned
    ranking's score columns (each term's sigma and the prior). asinh is z near the median and
    grows as log(2z) beyond a few sigma, so that the few objects far out in a term (those the
    score already ranks first) do not set its scale for the rest; over twelve data families the
    ranking from five examples rose from 0.922 to 0.928 in the mean (docs, Results > Discovery)."""
    design = _finite(design)
    centre = np.median(design, axis=0)
    spread = 1.4826 * np.median(np.abs(design - centre), axis=0)
    spread = np.where(spread > 0, spread, design.std(axis=0))
    unit = np.arcsinh((design - centre) / np.where(spread > 0, spread, np.inf))
    deviation = unit.std(axis=0)
    return ((unit - unit.mean(axis=0)) / np.where(deviation > 0, deviation, np.inf)).astype(
        np.float32
    )


def _finite(design: np.ndarray) -> np.ndarray:
    design = np.asarray(design, dtype=np.float64)
    if design.ndim != 2 or not np.isfinite(design).all():
        raise InputError(f"the design matrix must be a finite (N, F) array, got {design.shape}")
    return design


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, iterations: int = 25
) -> np.ndarray:
    """Weighted L2 logistic regression by Newton's method: (F + 1,) coefficients, the intercept
    last (not penalised). ``y`` in {0, 1}; minimises sum w log-loss + |beta|^2 / (2 c)."""
    x = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)
    penalty = np.full(x.shape[1], 1.0 / c)
    penalty[-1] = 1e-6
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        gradient = x.T @ (w * (p - y)) + penalty * beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-6:
            break
    return beta


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive > negative), ties half."""
    if len(positive) == 0 or len(negative) == 0:
        return 0.5
    diff = np.asarray(positive)[:, None] - np.asarray(negative)[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def chance_z(auc: float, n_pos: int, n_neg: int) -> float:
    """The AUROC's z-score against chance (Mann-Whitney's null spread)."""
    if n_pos == 0 or n_neg == 0:
        return 0.0
    se = np.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))
    return float((auc - 0.5) / se)


@dataclass
class Preference:
    """A fitted preference: ``coef`` (F,) on the standardised design, the intercept, the gate and
    the cross-validated AUROC it came from, and the logit's robust scale."""

    coef: np.ndarray
    intercept: float
    gate: float
    cv_auroc: float
    sign: float  # +1: interesting labels drive it; -1: other labels only (their likes sink)
    scale: float
    centre: float

    def unit_logit(self, design: np.ndarray) -> np.ndarray:
        return (design @ self.coef.astype(np.float32) - self.centre) / self.scale


def _training_set(design, rows, targets, background, config):
    """Rows, 0/1 targets and weights of one fit: labelled objects (classes balanced) and the
    background sample as weak negatives."""
    pos, neg = rows[targets > 0], rows[targets <= 0]
    fit_rows = np.concatenate([pos, neg, background])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg) + len(background))])
    n = len(pos) + len(neg)
    half = max(n, MIN_WEIGHT) / 2.0  # a few labels still outweigh the L2 penalty
    w = np.concatenate(
        [
            np.full(len(pos), half / max(len(pos), 1)),
            np.full(len(neg), half / max(len(neg), 1)),
            np.full(len(background), config.background_weight * half / max(len(background), 1)),
        ]
    )
    return fit_rows, y, w


def fit_preference(
    design: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    config: PreferenceConfig | None = None,
) -> Preference | None:
    """The classifier of the labels (``targets`` +1 interesting, -1 other) on ``design``
    (standardised, :func:`standardised_columns`) and its gate; None without labels."""
    config = config or PreferenceConfig()
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.float64)
    if len(rows) == 0:
        return None
    n = len(design)
    rng = np.random.default_rng(config.seed)
    # A sample of unlabelled rows, without a pass over all N (setdiff1d is 0.4 s at 10^6).
    draw = rng.choice(n, min(n, config.background + len(rows)), replace=False)
    background = np.sort(draw[~np.isin(draw, rows)][: config.background])
    sign = 1.0
    if not (targets > 0).any():
        return None  # other labels only: no classifier (the caller sinks their neighbours)
    fit_rows, y, w = _training_set(design, rows, targets, background, config)
    beta = fit_logistic(design[fit_rows], y, w, config.c)
    cv_auc, z = _cross_validated(design, rows, targets, background, config)
    gate = float(np.clip((z - config.gate_z) / config.gate_span, 0.0, 1.0))
    logit = design @ beta[:-1].astype(np.float32)
    centre = float(np.median(logit))
    q25, q75 = np.percentile(logit, [25, 75])
    scale = float(max((q75 - q25) / 1.349, 1e-6))
    return Preference(beta[:-1], float(beta[-1]), gate, cv_auc, sign, scale, centre)


def _cross_validated(design, rows, targets, background, config) -> tuple[float, float]:
    """Cross-validated AUROC (each labelled object held out once, the background in as many
    folds) and its z against chance: interesting against other labels where both have two or
    more; interesting against held-out background otherwise."""
    pos_n, neg_n = int((targets > 0).sum()), int((targets <= 0).sum())
    folds = len(rows)
    bg_fold = np.arange(len(background)) % max(folds, 1)
    held = np.empty(len(rows))
    held_bg = np.empty(len(background))
    for k in range(folds):
        keep = np.arange(len(rows)) != k
        bg_keep = bg_fold != k
        fit_rows, y, w = _training_set(
            design, rows[keep], targets[keep], background[bg_keep], config
        )
        if not (y > 0).any():
            held[k] = 0.0
            held_bg[~bg_keep] = 0.0
            continue
        beta = fit_logistic(design[fit_rows], y, w, config.c)
        held[k] = design[rows[k]] @ beta[:-1] + beta[-1]
        held_bg[~bg_keep] = design[background[~bg_keep]] @ beta[:-1] + beta[-1]
    pos = held[targets > 0]
    if pos_n >= 2 and neg_n >= 2:
        neg = held[targets <= 0]
        auc = auroc(pos, neg)
        return auc, chance_z(auc, pos_n, neg_n)
    if pos_n >= 1 and neg_n < 2:  # interesting only (examples): against the unlabelled
        auc = auroc(pos, held_bg)
        return auc, chance_z(auc, pos_n, len(held_bg))
    return 0.5, 0.0  # a single interesting label among others: no evidence yet


def lift_bump(unit_logit: np.ndarray, fraction: float) -> np.ndarray:
    """(N,) in [0, 1]: 0 below the logit's ``1 - fraction`` quantile, 1 above its
    ``1 - fraction / 10`` quantile, linear in between: the classifier's best matches."""
    if fraction <= 0 or len(unit_logit) == 0:
        return np.zeros(len(unit_logit))
    low, high = np.quantile(unit_logit, [1.0 - fraction, 1.0 - fraction / 10.0])
    return np.clip((unit_logit - low) / max(high - low, 1e-9), 0.0, 1.0)


def rejected_sink(space: np.ndarray, rows: np.ndarray, config: PreferenceConfig) -> np.ndarray:
    """(N,) how far each object sinks for being like the rejected objects ``rows`` (other labels
    only, nothing interesting yet): ``sink * exp(-d2 / d2_ref)``, d2 the squared distance to the
    nearest rejected object in ``space``, d2_ref its ``sink_fraction`` quantile. Local: the
    rejected kinds' neighbourhoods go down, the rest keeps the anomaly order."""
    from tfanomaly.models.relevance import nearest_squared_distances

    if len(rows) == 0 or config.sink == 0:
        return np.zeros(len(space))
    d2 = nearest_squared_distances(space, np.asarray(rows, dtype=np.int64))
    reference = max(float(np.quantile(d2, config.sink_fraction)), 1e-9)
    return config.sink * np.exp(-d2 / reference)
