"""The default score's calibration record and its file: the numbers fitted on a data set
(``tfanomaly calibrate``, :mod:`tfanomaly.pipelines.calibrate`) that
:class:`~tfanomaly.models.noise_score.NoiseAwareScore` computes the score with.

A :class:`Calibration` is made of one record per part of the score: a :class:`ResidualTerm` per
residual term (the GAN's ``residual``, the linear model's ``linear`` and ``extended``: brightness
knots, variances, plane variances, filter, top fraction), the critic features' Gaussian
(:class:`FeatureGaussian`), the linear model (:class:`LinearModel`), the reference sets of the
k-NN terms (morphology, residual shape: :class:`KnnReference`) and the terms' robust
standardisation (:class:`Standardisation`),
one for the calibrated-scatter path and one for the plane path, and each term's health on the
calibration set (:class:`~tfanomaly.models.term_health.TermHealth`: a degenerate term weighs 0).

The file is an .npz with a ``part.name`` key per array (``residual.edges``,
``features.components``, ...), the settings, the provenance and the terms' health as JSON. Files
written before the per-term records (flat keys: ``edges``, ``linear_edges``, ``plane_log_scales``,
...) still load, and files written before the health check load with every term healthy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from tfanomaly.errors import InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.score_config import ScoreSettings
from tfanomaly.models.term_health import TermHealth, effective_weights

FORMAT = 2  # the per-term layout; files without a ``format`` key have the flat one
RESIDUAL_TERMS = ("residual", "linear", "extended")  # the terms that read a chi^2 map
KNN_TERMS = ("morphology", "residual_shape")  # the k-NN density terms, each with a KnnReference


def _no_planes() -> np.ndarray:
    return np.zeros((0, 0), np.float32)


def residual_filter(settings: ScoreSettings, term: str) -> tuple[float, float, int]:
    """(filter sigma, top fraction, stride) of a residual term: the extended term's own, else the
    PSF-scale filter and top fraction that the GAN's and the linear term share, on every pixel."""
    if term == "extended":
        return settings.extended_sigma, settings.extended_top_fraction, settings.extended_stride
    return settings.smooth_sigma, settings.top_fraction, 1


def knots_of(edges: np.ndarray) -> np.ndarray:
    """(bands, n_bins) brightness knots of the variance lookup, from the (bands, n_bins - 1) bin
    edges: the outer edges and the middle of each inner bin, so that bin i's variance holds at its
    knot and varies linearly between neighbouring knots (one bin: one knot at 0)."""
    edges = np.asarray(edges, np.float32)
    if edges.shape[1] == 0:  # one bin: one variance everywhere
        return np.zeros((edges.shape[0], 1), np.float32)
    middles = (edges[:, 1:] + edges[:, :-1]) / 2
    return np.concatenate([edges[:, :1], middles, edges[:, -1:]], axis=1)


@dataclass
class ResidualTerm:
    """One residual term's numbers: the scatter of its smoothed residual by brightness.

    Args:
        edges: (bands, n_bins - 1) smoothed reconstruction levels between the brightness bins.
        variances: (bands, n_bins) variance of the smoothed residual in each bin (the
            calibrated-scatter path).
        sigma: width in pixels of the term's Gaussian filter.
        top_fraction: the term's summary is the mean of this fraction of its highest chi^2.
        plane_variances: (bands, n_bins) the variance beyond the propagated pixel variance in each
            bin (the model's misfit; with a mask plane only: the whole scatter of the masked
            smoothing), on the same edges; empty without the plane path.
        stride: the chi^2 map is read at every ``stride``-th pixel of each row and column.
    """

    edges: np.ndarray
    variances: np.ndarray
    sigma: float
    top_fraction: float
    plane_variances: np.ndarray = field(default_factory=_no_planes)
    stride: int = 1

    @classmethod
    def fitted(cls, settings: ScoreSettings, term: str, edges, variances, plane_variances=None):
        """The record of ``term`` with its filter, top fraction and stride from ``settings``."""
        sigma, top, stride = residual_filter(settings, term)
        planes = _no_planes() if plane_variances is None else plane_variances
        return cls(edges, variances, sigma, top, planes, stride)

    @property
    def knots(self) -> np.ndarray:
        """(bands, n_bins) brightness knots of the variance lookup (:func:`knots_of`)."""
        return knots_of(self.edges)

    ARRAYS = ("edges", "variances", "plane_variances")


@dataclass
class FeatureGaussian:
    """The probabilistic-PCA Gaussian of the critic features: ``mean`` (D,), principal axes
    ``components`` (K, D), the variance along each (``eigenvalues``, K) and the variance per
    dimension outside them (``residual_variance``)."""

    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray
    residual_variance: float


@dataclass
class LinearModel:
    """The linear model of the stretched cutouts: ``mean`` (H*W*C,) and orthonormal principal
    ``components`` (K, H*W*C)."""

    mean: np.ndarray
    components: np.ndarray


@dataclass
class KnnReference:
    """A k-NN density term's numbers (the morphology term's, the residual-shape term's): median
    ``centre`` and MAD-sigma ``scale`` of each column of its vectors (F,), and the standardised
    ``reference`` set (R, F) of the k-NN distance."""

    centre: np.ndarray
    scale: np.ndarray
    reference: np.ndarray


@dataclass
class Standardisation:
    """Median ``centres`` and MAD-sigma ``scales`` of log(term) over the calibration set, one per
    term of ``settings.terms`` in its order: the terms' robust z."""

    centres: np.ndarray
    scales: np.ndarray

    @classmethod
    def neutral(cls, n: int) -> Standardisation:
        """Centre 0 and scale 1 for ``n`` terms (before the terms are measured)."""
        return cls(np.zeros(n, np.float32), np.ones(n, np.float32))


# The records of a calibration's parts, by their prefix in the file.
PARTS = {
    "features": FeatureGaussian,
    "linear_model": LinearModel,
    "morphology": KnnReference,
    "residual_shape": KnnReference,
    "standard": Standardisation,
    "plane_standard": Standardisation,
}

# The flat keys of the files written before the per-term records, and their key now.
FLAT_KEYS = {
    "edges": "residual.edges",
    "variances": "residual.variances",
    "plane_variances": "residual.plane_variances",
    "feature_mean": "features.mean",
    "components": "features.components",
    "eigenvalues": "features.eigenvalues",
    "residual_variance": "features.residual_variance",
    "log_centres": "standard.centres",
    "log_scales": "standard.scales",
    "plane_log_centres": "plane_standard.centres",
    "plane_log_scales": "plane_standard.scales",
    "linear_mean": "linear_model.mean",
    "linear_components": "linear_model.components",
    "linear_edges": "linear.edges",
    "linear_variances": "linear.variances",
    "linear_plane_variances": "linear.plane_variances",
    "extended_edges": "extended.edges",
    "extended_variances": "extended.variances",
    "extended_plane_variances": "extended.plane_variances",
    "morphology_centre": "morphology.centre",
    "morphology_scale": "morphology.scale",
    "morphology_reference": "morphology.reference",
}


@dataclass
class Calibration:
    """The numbers the default score needs, fitted on a data set (``tfanomaly calibrate``).

    Args:
        settings: how the score is computed.
        residuals: the residual terms' records by name: ``residual`` (the GAN's, always), and
            ``linear`` and ``extended`` where the linear model was fitted.
        features: the critic features' Gaussian.
        standard: the terms' log centres and scales on the calibrated-scatter path.
        info: provenance (data set, inversion settings, counts), stored with the numbers;
            ``info["planes"]``: the data planes (``variance``, ``mask``) the plane path was fitted
            with (none: the calibration has only the calibrated-scatter path).
        linear: the linear model (the ``linear`` and ``extended`` terms read it).
        morphology: the morphology term's reference set.
        residual_shape: the residual-shape term's reference set.
        plane_standard: the terms' log centres and scales on the plane path.
        health: each term's health on the calibration set (a term without a record, as every
            term of a file written before the check, is healthy); a degenerate term weighs 0.
    """

    settings: ScoreSettings
    residuals: dict[str, ResidualTerm]
    features: FeatureGaussian
    standard: Standardisation
    info: dict
    linear: LinearModel | None = None
    morphology: KnnReference | None = None
    residual_shape: KnnReference | None = None
    plane_standard: Standardisation | None = None
    health: dict[str, TermHealth] = field(default_factory=dict)

    @property
    def planes(self) -> tuple[str, ...]:
        """The data planes the calibration's plane path uses (empty: it has none)."""
        return tuple(self.info.get("planes") or ())

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms the default score combines, in the order of the standardisations."""
        return self.settings.terms

    def check(self, path) -> None:
        """Every combined term has its numbers (a file edited or cut short does not)."""
        missing = [
            term
            for term in self.terms
            if (
                term in ("linear", "extended")
                and (self.linear is None or term not in self.residuals)
            )
            or (term in KNN_TERMS and getattr(self, term) is None)
        ]
        if self.planes:
            needs = ["residual", *(t for t in ("linear", "extended") if t in self.terms)]
            if (
                any(
                    t not in self.residuals or not self.residuals[t].plane_variances.size
                    for t in needs
                )
                or self.plane_standard is None
                or len(self.plane_standard.scales) != len(self.terms)
            ):
                missing.append("planes")
        if (
            missing
            or "residual" not in self.residuals
            or len(self.standard.scales) != len(self.terms)
        ):
            raise InputError(
                f"{path}: calibration inconsistent with its terms {', '.join(self.terms)}; run "
                "`tfanomaly calibrate` again"
            )
        try:
            self.weights  # noqa: B018 (raises where every term is degenerate)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    @property
    def nominal_weights(self) -> np.ndarray:
        """Weight of each term's z in the default score as the settings give it
        (ScoreSettings.term_weights, normalised; the two GAN terms of older calibrations:
        1 - feature_weight and feature_weight)."""
        if self.terms == ("residual", "feature"):
            w = self.settings.feature_weight
            return np.array([1.0 - w, w], np.float32)
        weights = np.array([self.settings.weight_of(term) for term in self.terms], np.float64)
        return (weights / weights.sum()).astype(np.float32)

    @property
    def weights(self) -> np.ndarray:
        """Weight of each term's z in the default score: :attr:`nominal_weights`, with 0 for a
        degenerate term and the others normalised again (``term_health.effective_weights``;
        the nominal ones where every term is healthy)."""
        return effective_weights(
            self.terms, self.nominal_weights, self.health, self.settings.combine
        )

    @property
    def kept_terms(self) -> tuple[str, ...]:
        """The terms the default score combines: those not found degenerate."""
        return tuple(t for t in self.terms if t not in self.health or self.health[t].healthy)

    def degenerate_terms(self) -> dict[str, TermHealth]:
        """The terms left out of the default score, with their health records."""
        return {t: self.health[t] for t in self.terms if t not in self.kept_terms}

    def term_weights(self) -> dict[str, float]:
        """Term -> its weight in the default score (:attr:`weights`), for records and reports."""
        return {t: float(w) for t, w in zip(self.terms, self.weights, strict=True)}

    def weights_record(self) -> dict:
        """The weights the default score scores with and the terms it leaves out, as the results
        attributes and an export's manifest record them: ``term_weights`` (term -> weight) and
        ``degenerate_terms`` (term -> why it is left out)."""
        return {
            "term_weights": self.term_weights(),
            "degenerate_terms": {t: h.detail for t, h in self.degenerate_terms().items()},
        }

    def score_drift(self, rtol: float) -> float:
        """How far the default score can move when every term drifts by ``rtol`` (relative):
        z = (log - centre) / scale moves by rtol / scale, combined with the weights."""
        # The narrower of the two paths' scales (the plane path's, if any) moves it the most.
        per_term = rtol / np.asarray(self.standard.scales, np.float64)
        if self.planes:
            plane = rtol / np.asarray(self.plane_standard.scales, np.float64)
            per_term = np.maximum(per_term, plane)
        if self.settings.combine in ("max", "softmax") and len(self.terms) > 2:
            # a max, or a softmax (its gradient is a set of weights that sum to 1)
            kept = [t in self.kept_terms for t in self.terms]
            return float(per_term[kept].max())
        return float(np.sum(self.weights * per_term))

    def arrays(self) -> dict[str, np.ndarray]:
        """The numbers by their key in the file (``part.name``), the parts present only."""
        out = {}
        for term, record in self.residuals.items():
            for name in ResidualTerm.ARRAYS:
                value = getattr(record, name)
                if value.size:
                    out[f"{term}.{name}"] = np.asarray(value)
        parts = {
            "features": self.features,
            "linear_model": self.linear,
            "morphology": self.morphology,
            "residual_shape": self.residual_shape,
            "standard": self.standard,
            "plane_standard": self.plane_standard,
        }
        for prefix, record in parts.items():
            if record is not None:
                for item in fields(record):
                    out[f"{prefix}.{item.name}"] = np.asarray(getattr(record, item.name))
        return out

    def save(self, path) -> None:
        """Write an .npz atomically (numbers as arrays, settings and info as JSON)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                **self.arrays(),
                format=np.int64(FORMAT),
                settings=json.dumps(self.settings.to_dict()),
                info=json.dumps(self.info),
                health=json.dumps(self.health_record()),
            )

    def health_record(self) -> dict:
        """The terms' health as the file stores it: each term's record and its weight in the
        default score (empty where no health was measured)."""
        if not self.health:
            return {}
        weights = self.term_weights()
        return {
            term: {**self.health[term].to_dict(), "weight": weights[term]}
            for term in self.terms
            if term in self.health
        }

    @classmethod
    def from_arrays(
        cls, settings: ScoreSettings, arrays: dict, info: dict, health: dict | None = None
    ) -> Calibration:
        """The calibration of the numbers ``arrays`` by their key in the file; ``health``: the
        terms' health records (:meth:`health_record`; none: every term healthy)."""
        residuals = {}
        for term in RESIDUAL_TERMS:
            if f"{term}.variances" in arrays:
                residuals[term] = ResidualTerm.fitted(
                    settings,
                    term,
                    arrays[f"{term}.edges"],
                    arrays[f"{term}.variances"],
                    arrays.get(f"{term}.plane_variances"),
                )
        parts = {}
        for prefix, record in PARTS.items():
            names = [item.name for item in fields(record)]
            if any(f"{prefix}.{name}" in arrays for name in names):
                parts[prefix] = record(*(arrays[f"{prefix}.{name}"] for name in names))
        features = parts.pop("features")
        features.residual_variance = float(features.residual_variance)
        return cls(
            settings=settings,
            residuals=residuals,
            features=features,
            standard=parts.pop("standard"),
            info=info,
            linear=parts.get("linear_model"),
            morphology=parts.get("morphology"),
            residual_shape=parts.get("residual_shape"),
            plane_standard=parts.get("plane_standard"),
            health={t: TermHealth.from_dict(r) for t, r in (health or {}).items()},
        )

    @classmethod
    def load(cls, path) -> Calibration:
        path = Path(path)
        try:
            with np.load(path) as data:
                settings = json.loads(str(data["settings"]))
                info = json.loads(str(data["info"]))
                if "format" in data:
                    arrays = {key: data[key] for key in data.files}
                else:
                    arrays = flat_arrays(data)
                # Files written before the health check have no record: every term healthy.
                health = json.loads(str(data["health"])) if "health" in data else {}
                calibration = cls.from_arrays(older_settings(settings), arrays, info, health)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{path}: not a readable tfanomaly calibration: {exc}") from exc
        calibration.check(path)
        return calibration


def flat_arrays(data) -> dict[str, np.ndarray]:
    """The arrays of a file in the flat layout, by their key now. The flat files stored a part
    they had not got as empty arrays (and the oldest none at all): both are left out."""
    return {
        FLAT_KEYS[key]: data[key]
        for key in data.files
        if key in FLAT_KEYS and (data[key].size or key == "residual_variance")
    }


def older_settings(settings: dict) -> ScoreSettings:
    """The settings of a file, with the defaults of the time for the fields added since."""
    # Before the linear and morphology terms, a calibration had the two GAN terms.
    settings.setdefault("terms", ["residual", "feature"])
    # Before the robust projection, the linear model was least squares.
    settings.setdefault("robust_iterations", 0)
    # Before the term weights, the terms' z had equal weights.
    settings.setdefault("term_weights", [])
    # Before the choice of the morphology term's parameters, it read every one.
    settings.setdefault("morphology_parameters", "all")
    # Before the softmax, the terms' z were combined by their (weighted) mean.
    settings.setdefault("combine", "mean")
    # Before the asinh units, the morphology term's k-NN read the robust z as it is.
    settings.setdefault("morphology_units", "clip")
    # Before the residual-shape term's asinh units, its k-NN read the robust z as it is.
    settings.setdefault("residual_shape_units", "clip")
    # Before the trimmed reference, it kept every distinct cutout drawn.
    settings.setdefault("reference_trim", 0.0)
    # Before the extended term's stride, its chi^2 map was read at every pixel.
    settings.setdefault("extended_stride", 1)
    return ScoreSettings(**settings)
