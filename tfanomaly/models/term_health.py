"""Whether each term of the default score carries information on a data set: label-free checks of
its values over the calibration set, and a candidate per-data-set weighting of the terms.

A term whose calibration values are constant, fall on a handful of values (quantised images), or
are NaN/inf for many cutouts ranks nothing, and its robust z (median and MAD of log) only adds
steps or noise to the score: ``tfanomaly calibrate`` records it as degenerate, and the default
score leaves it out (:attr:`~tfanomaly.models.calibration.Calibration.weights`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from tfanomaly.errors import InputError

# The checks' thresholds, all in one place.
#
# A term is computed in float32 from thousands of pixels, so the same cutout comes out a few
# hundred roundings (2**-24 relative each) apart in another batch shape or on another CPU: values
# closer than 64 float32 epsilons (7.6e-6 relative) count as one value when the ties are counted.
TIE_RESOLUTION = 64 * float(np.finfo(np.float32).eps)
# Quantised: the fewest values that hold QUANTISED_SHARE of the cutouts are at most
# QUANTISED_LEVELS. A continuous term on a calibration set has almost every value distinct (a
# spread of log ~0.1-1 over thousands of cutouts leaves ~1e-4 between neighbours, far above
# TIE_RESOLUTION); one that takes a handful of values orders the cutouts by the quantisation
# steps of the images (8-bit, zero-clipped pixels), not by the galaxies.
QUANTISED_LEVELS = 10
QUANTISED_SHARE = 0.9
# Below this many usable cutouts ten values holding 90% of them is no evidence of ties.
MIN_CUTOUTS_FOR_TIES = 50
# Collapsed: the MAD-sigma of log(term) (a relative spread) under COLLAPSED_SPREAD. Real terms
# spread by 0.1-1 in log; 1e-4 is a hundred times the float32 drift of one cutout's value, so a
# term under it is constant up to rounding and its z is rounding noise divided by ~0 (the robust
# scale falls back to 1 where the MAD is 0, and the term then adds nothing but outliers' logs).
COLLAPSED_SPREAD = 1e-4
# Non-finite: NaN, inf or a value <= 0 (no log; the score would take log(1e-30)) for more than
# this fraction of the cutouts. Its robust z is then fitted on what is left of the data set and
# the cutouts without a value are scored by the clamp, not by what they look like.
NON_FINITE_FRACTION = 0.1

HEALTHY, DEGENERATE = "healthy", "degenerate"
REASONS = ("non_finite", "constant", "quantised", "noise_model")
# The terms that weigh the residual against the survey's noise (the brightness-binned scatter of
# the reconstruction), which images scaled one by one or quantised to 8 bits do not carry: their
# pixel differences are the rounding and the scaling. On the two such families of the leave-one-
# family-out study (ML-ready galaxies, radio sources) these terms rank near chance (AUROC
# 0.36-0.68) while the critic features and the morphology term hold (docs: Results > Detection).
# The residual-shape term reads the GAN residual in units of each band's noise too.
NOISE_MODEL_TERMS = ("residual", "linear", "extended", "residual_shape")
EIGHT_BIT_LEVELS = 256  # a band quantised in at most this many levels over an image's range


@dataclass
class TermHealth:
    """The verdict on one term of the default score from its calibration values.

    Args:
        verdict: ``healthy`` or ``degenerate`` (left out of the default score).
        reason: why degenerate: ``non_finite``, ``constant`` or ``quantised`` ("" if healthy).
        detail: the finding in words ("97% of calibration cutouts share 3 values ...").
        count: calibration cutouts checked.
        non_finite_fraction: fraction of them whose value is NaN, inf or <= 0.
        log_spread: MAD-sigma of log(value) over the usable ones.
        distinct_values: distinct values among them (at :data:`TIE_RESOLUTION`).
        tied_fraction: fraction of them that share their value with another cutout.
        levels: the fewest values that hold :data:`QUANTISED_SHARE` of them.
        levels_share: the fraction of the usable cutouts those ``levels`` values hold.

    Example:
        >>> health = check_term(np.full(500, 2.0))
        >>> health.verdict, health.reason
        ('degenerate', 'constant')
    """

    verdict: str = HEALTHY
    reason: str = ""
    detail: str = ""
    count: int = 0
    non_finite_fraction: float = 0.0
    log_spread: float = 0.0
    distinct_values: int = 0
    tied_fraction: float = 0.0
    levels: int = 0
    levels_share: float = 0.0

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY

    def message(self, term: str) -> str:
        """The line a stage prints for a degenerate term."""
        return f"term '{term}' left out of the default score: {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> TermHealth:
        """The record of a file (keys it does not know are left out)."""
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in names})


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f}%"


def check_term(values) -> TermHealth:
    """The health of a term from its values over the calibration cutouts (label-free): non-finite
    first, then quantised (a handful of values hold most cutouts), then collapsed (no spread of
    log); the thresholds are this module's constants."""
    values = np.asarray(values, np.float64).ravel()
    count = len(values)
    usable = values[np.isfinite(values) & (values > 0)]
    non_finite = 1.0 - len(usable) / count if count else 1.0
    if len(usable) == 0:
        return TermHealth(
            DEGENERATE,
            "non_finite",
            "no calibration cutout gives a finite positive value",
            count,
            non_finite,
        )
    logs = np.log(usable)
    spread = float(1.4826 * np.median(np.abs(logs - np.median(logs))))
    keys, counts = np.unique(np.round(logs / TIE_RESOLUTION).astype(np.int64), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    held = np.cumsum(counts[order]) / len(logs)
    levels = int(min(np.searchsorted(held, QUANTISED_SHARE - 1e-12) + 1, len(held)))
    # The most common values lie within rounding of each other: one value, not quantisation.
    top = keys[order[:levels]]
    one_value = (top.max() - top.min()) * TIE_RESOLUTION < COLLAPSED_SPREAD
    health = TermHealth(
        count=count,
        non_finite_fraction=float(non_finite),
        log_spread=spread,
        distinct_values=len(counts),
        tied_fraction=float(counts[counts > 1].sum() / len(logs)),
        levels=levels,
        levels_share=float(held[levels - 1]),
    )
    if non_finite > NON_FINITE_FRACTION:
        health.reason = "non_finite"
        health.detail = (
            f"{_percent(non_finite)} of calibration cutouts give NaN, inf or a value <= 0 "
            "(empty or masked cutouts?)"
        )
    elif len(counts) == 1 or (one_value and spread < COLLAPSED_SPREAD):
        health.reason = "constant"
        share = 1.0 if (keys.max() - keys.min()) * TIE_RESOLUTION < COLLAPSED_SPREAD else None
        health.detail = (
            "every calibration cutout gives the same value"
            if share
            else f"{_percent(health.levels_share)} of calibration cutouts give the same value"
        )
    elif len(logs) >= MIN_CUTOUTS_FOR_TIES and levels <= QUANTISED_LEVELS:
        health.reason = "quantised"
        values_word = "value" if levels == 1 else "values"
        health.detail = (
            f"{_percent(health.levels_share)} of calibration cutouts share {levels} "
            f"{values_word} (quantised images?)"
        )
    elif spread < COLLAPSED_SPREAD:
        health.reason = "constant"
        health.detail = (
            f"its calibration values hardly vary (spread of log {spread:.1e}, under "
            f"{COLLAPSED_SPREAD:.0e}): the term is constant on this data set"
        )
    if health.reason:
        health.verdict = DEGENERATE
    return health


def check_terms(values: dict, plane_values: dict | None = None) -> dict[str, TermHealth]:
    """:func:`check_term` of each term's calibration ``values`` (term -> array); with
    ``plane_values`` (the plane path's) a term healthy on the calibrated-scatter path is checked
    on the plane path too, and degenerate if it is there (the default score has one set of
    weights for both paths)."""
    out = {}
    for term, column in values.items():
        health = check_term(column)
        if health.healthy and plane_values:
            planes = check_term(plane_values[term])
            if not planes.healthy:
                planes.detail += " on the plane path"
                health = planes
        out[term] = health
    return out


def noise_model_finding(data_health: dict | None) -> str:
    """Why the data set's images carry no survey noise for the noise-model terms, from its health
    at ingest (``data.health.data_health``, the manifest's ``health``): images scaled one by one
    (every image the same max or sum), or a band quantised to 8 bits or coarser; "" otherwise,
    or without a record.

    Example:
        >>> noise_model_finding({"normalised": {"by": "max", "value": 1.0}, "bands": {}})
        'every image is scaled to the same max (normalised one by one)'
    """
    if not data_health:
        return ""
    found = []
    norm = data_health.get("normalised")
    if norm:
        found.append(f"every image is scaled to the same {norm['by']} (normalised one by one)")
    coarse = [
        str(band)
        for band, record in (data_health.get("bands") or {}).items()
        if record.get("step", 0) > 0 and 0 < (record.get("levels") or 0) <= EIGHT_BIT_LEVELS
    ]
    if coarse:
        found.append(f"band{'s' * (len(coarse) > 1)} {', '.join(coarse)} quantised to 8 bits")
    return "; ".join(found)


def leave_out_noise_terms(health: dict[str, TermHealth], terms, finding: str) -> list[str]:
    """Mark the noise-model terms among ``terms`` degenerate (reason ``noise_model``) for the data
    health ``finding`` (:func:`noise_model_finding`), keeping their measured numbers; the terms
    marked. Nothing where ``finding`` is empty or the term is degenerate already."""
    marked = []
    if not finding:
        return marked
    for term in terms:
        if term not in NOISE_MODEL_TERMS:
            continue
        record = health.get(term) or TermHealth()
        if not record.healthy:
            continue
        record.verdict, record.reason = DEGENERATE, "noise_model"
        record.detail = (
            f"the data's health at ingest: {finding}; pixel differences are rounding and "
            "scaling, not survey noise (calibrate --noise-terms keep to weigh it anyway)"
        )
        health[term] = record
        marked.append(term)
    return marked


def effective_weights(
    terms, nominal: np.ndarray, health: dict[str, TermHealth], combine: str = "mean"
) -> np.ndarray:
    """The weights of ``terms`` in the default score: the ``nominal`` ones (normalised) with each
    degenerate term's 0 and the rest normalised again; the nominal ones themselves where every
    term is healthy (a term without a record is healthy). Raises InputError naming the terms and
    why where no healthy term is left to score with (with weight, for the mean)."""
    nominal = np.asarray(nominal, np.float32)
    bad = {t: health[t] for t in terms if t in health and not health[t].healthy}
    if not bad:
        return nominal
    kept = np.array([t not in bad for t in terms])
    weights = np.where(kept, nominal.astype(np.float64), 0.0)
    if not kept.any() or (combine != "max" and weights.sum() <= 0):
        why = "; ".join(f"'{t}': {h.detail}" for t, h in bad.items())
        raise InputError(
            "no term of the default score carries information on this data set ("
            + why
            + "): calibrate on other data or choose other --terms"
        )
    if weights.sum() <= 0:  # max of the healthy terms: their weights do not enter it
        return kept.astype(np.float32) / kept.sum()
    return (weights / weights.sum()).astype(np.float32)


def tail_weights(values: dict, quantile: float = 0.99) -> dict[str, float]:
    """A candidate label-free weighting of the terms for one data set, to compare with the fixed
    weights in studies (not the default): each term weighs in proportion to how far its upper
    tail of log reaches beyond its core, (Q(``quantile``) - median) / IQR of log over the
    calibration values (term -> array; 1.72 for a log-normal term, more where a tail of
    outliers stands out), normalised to sum to 1; a degenerate term (:func:`check_term`) 0.

    Example (a term with a tail of outliers weighs more than a log-normal one):
        >>> rng = np.random.default_rng(0)
        >>> tailed = np.exp(rng.normal(size=1000))
        >>> tailed[:20] *= 100.0
        >>> weights = tail_weights({"feature": np.exp(rng.normal(size=1000)), "linear": tailed})
        >>> bool(weights["linear"] > weights["feature"])
        True
    """
    if not 0.5 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0.5, 1), got {quantile}")
    reach = {}
    for term, column in values.items():
        column = np.asarray(column, np.float64).ravel()
        if not check_term(column).healthy:
            reach[term] = 0.0
            continue
        logs = np.log(column[np.isfinite(column) & (column > 0)])
        low, median, high, tail = np.quantile(logs, [0.25, 0.5, 0.75, quantile])
        reach[term] = float((tail - median) / (high - low)) if high > low else 0.0
    total = sum(reach.values())
    if total <= 0:
        raise InputError(f"no term of {', '.join(values)} has an upper tail to weigh")
    return {term: r / total for term, r in reach.items()}
