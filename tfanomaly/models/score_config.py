"""The settings of the default anomaly score (its terms, their weights, filters and fits) and of
the latent inversion that feeds it; the term-weight text the CLI reads and writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tfanomaly.errors import ConfigError

SCORE_TERMS = ("residual", "feature", "linear", "extended", "morphology", "residual_shape")
SCORE_COMBINES = ("mean", "max", "softmax")
# The softmax combine's temperature, in z units: tau * log(sum_t w_t exp(z_t / tau)), a weighted
# mean of exp(z / 2) on the scale of z. Chosen over eight data families with each left out
# (docs: Results > Detection): within the AUROC noise of the mean at the worst family, a higher
# average precision on seven of eight (one term's tail can carry an object).
SOFTMAX_TEMPERATURE = 2.0
# The morphology term's parameter sets (tfanomaly.models.morphology.term_columns reads them).
MORPHOLOGY_PARAMETERS = ("shape", "all")
# The units of the k-NN terms' distances (morphology, residual shape): each column's robust z
# (clipped at +-50), through asinh or as it is. asinh(z) is z near the centre and grows as
# log(2z) in the tails, so that one parameter far out (a neighbour's light moving the centroid)
# does not outweigh a shape that differs in several (docs Results > Detection > Families).
KNN_UNITS = ("asinh", "clip")
DEFAULT_TERMS = ("linear", "extended", "morphology", "residual_shape")
# The default score's weights of its terms' z, chosen over twelve data families by the worst
# margin over the baselines (ties within the noise: by the worst AP margin, then the mean), each
# family left out of the choice in turn (docs Results > Detection > Families): the morphology
# density first, then the density of the GAN residual's shape (both in asinh units). The linear and
# extended residuals weigh 0 (on galaxies drawn by another code they rank near chance and pulled
# the default below the morphology term alone); their columns stay, as the critic features' do.
DEFAULT_TERM_WEIGHTS = (
    ("linear", 0.0),
    ("extended", 0.0),
    ("morphology", 3.0),
    ("residual_shape", 1.0),
)
# The morphology term's k: more than the members of a group of similar anomalies (a trail over
# neighbouring stamps), which a smaller k counts as each other's dense neighbourhood.
DEFAULT_MORPHOLOGY_NEIGHBOURS = 20
# The linear model's components by default: 50 per 32x32 pixels of cutout, within these bounds
# (README "Detection quality on real images", sixth round: measured at 32 and 48 px).
LINEAR_COMPONENTS_PER_1024_PIXELS = 50
LINEAR_COMPONENTS_RANGE = (50, 150)


def parse_term_weights(text) -> tuple[tuple[str, float], ...]:
    """``"feature=0.5,morphology=1.5"`` (or ``"equal"``/``""``: every term 1) -> (term, weight)
    pairs; ScoreSettings.validate checks the names and values."""
    pairs = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item or item == "equal":
            continue
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise ConfigError(
                f"term weight '{item}': write TERM=WEIGHT, e.g. feature=0.5,morphology=1.5, "
                "or equal"
            ) from None
    return tuple(pairs)


def linear_components_for_area(components: int, height: int, width: int) -> int:
    """The linear model's components for (height, width) cutouts: ``components``, or where it is
    0, 50 per 1024 pixels within LINEAR_COMPONENTS_RANGE (more pixels resolve more of a galaxy's
    structure for the model to reproduce)."""
    if components:
        return components
    low, high = LINEAR_COMPONENTS_RANGE
    scaled = round(LINEAR_COMPONENTS_PER_1024_PIXELS * height * width / 1024)
    return int(min(max(scaled, low), high))


def parse_terms(text: str) -> tuple[str, ...]:
    """``"feature,linear"`` -> the terms (ScoreSettings.validate checks them)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def format_term_weights(pairs) -> str:
    """(term, weight) pairs -> ``"feature=0.5,morphology=1.5"``, as :func:`parse_term_weights`
    reads them (``"equal"`` for none)."""
    return ",".join(f"{name}={weight:g}" for name, weight in pairs) or "equal"


@dataclass(frozen=True)
class ScoreSettings:
    """How the default score is computed (chosen by measurement, see README "Detection quality").

    Args:
        smooth_sigma: width in pixels of the Gaussian matched filter applied to the residual.
        n_bins: brightness levels of the reconstruction at which the residual scatter is measured.
        top_fraction: the residual score is the mean chi^2 of this fraction of the pixels (and
            bands) with the highest values.
        n_components: principal components of the critic features' Gaussian (the rest share one
            variance).
        feature_weight: weight of the feature term when the score has only the two GAN terms
            (calibrations made before the linear and morphology terms).
        terms: the terms the default score combines (README "Detection quality on real
            images" says why these): ``residual`` (the GAN's noise-aware residual, always
            computed and stored), ``feature`` (critic-feature density), ``linear`` (the same
            noise-aware residual against a PCA model of the data set instead of G(E(x))),
            ``extended`` (the linear model's residual again, through the wider
            ``extended_sigma`` filter and over the ``extended_top_fraction`` of the pixels: faint
            extended misfit, such as tidal features, which the PSF-scale filter averages away),
            ``morphology`` (k-NN distance in standard morphology parameters of the flux),
            ``residual_shape`` (k-NN distance in the descriptors of the GAN residual's shape,
            :mod:`tfanomaly.models.residual_shape`: what the generator could not reproduce, and
            whether other cutouts' misfits look like it).
        combine: how the terms' robust z of log combine: ``softmax`` (the weighted mean of
            exp(z / tau) on the scale of z, :data:`SOFTMAX_TEMPERATURE`), ``mean`` (weighted) or
            ``max``.
        term_weights: (term, weight) pairs of the mean's weights; a term not named weighs 1,
            and the weights of ``terms`` are normalised to sum to 1 (older calibrations: all 1).
        linear_components: principal components of the linear model; 0 (the default): in
            proportion to the cutout's area (:meth:`linear_components_for`: 50 at 32 px, 112 at
            48 px, at most 150).
        robust_iterations: steps of the linear model's projection from least squares towards
            the robust (Cauchy M-estimate) fit (0: plain least squares, as calibrations made
            before it): pixels it cannot fit lose their pull and stay in the residual.
        extended_sigma: width in pixels of the extended term's Gaussian filter.
        extended_top_fraction: the extended term's top fraction of the chi^2 map.
        extended_stride: the extended term's chi^2 map is read at every ``extended_stride``-th
            pixel of each row and column: its wide filter leaves little between them (the
            smoothed map varies over ~sigma pixels), and the lookup and the top fraction cost a
            quarter at 2 (1: every pixel, as calibrations made before).
        morphology_neighbours: k of the morphology and residual-shape terms' k-NN distances.
        morphology_parameters: the parameters the morphology term reads: ``shape`` (every
            parameter but the brightness and the noise level) or ``all`` (calibrations made
            before the choice).
        morphology_units: the units of the morphology term's k-NN distance: ``asinh`` of each
            parameter's robust z, or the robust z itself, ``clip`` (calibrations made before).
        residual_shape_units: the same for the residual-shape term's descriptors (``clip``:
            calibrations made before).
        reference_size: at most this many distinct calibration cutouts make the reference set
            of the morphology term and of the residual-shape term (calibrations made before
            took 2000).
        reference_trim: the fraction of the reference set left out for standing farthest from
            their k nearest others, the calibration set's own anomalies (0: none, as
            calibrations made before).
    """

    smooth_sigma: float = field(
        default=1.0, metadata={"help": "Width (px) of the Gaussian matched filter on the residual."}
    )
    n_bins: int = 24
    top_fraction: float = field(
        default=0.03,
        metadata={"help": "The residual score is the mean chi^2 of this top fraction of pixels."},
    )
    n_components: int = field(
        default=32,
        metadata={
            "help": "Principal components of the critic features' Gaussian.",
            "flag": "--components",
        },
    )
    feature_weight: float = field(
        default=0.7,
        metadata={
            "help": "With --terms residual,feature only: the feature term's weight "
            "(residual: 1 - it)."
        },
    )
    terms: tuple[str, ...] = field(
        default=DEFAULT_TERMS,
        metadata={
            "help": "Terms the default score combines, comma-separated, from residual "
            "(the GAN's noise-aware residual), feature (critic-feature density), "
            "linear (the same residual against a PCA model of the data), extended"
            " (that linear residual through a 3-px filter, over the top 30% of "
            "the pixels: faint extended light), morphology (k-NN density of "
            "morphology parameters), residual_shape (k-NN density of the shape "
            "of the GAN's residual: how concentrated, elongated, aligned it is).",
            "cli_default": ",".join(DEFAULT_TERMS),
            "parse": parse_terms,
        },
    )
    combine: str = field(
        default="softmax",
        metadata={
            "help": "How the terms' robust z-scores combine: softmax (a weighted mean of "
            "exp(z/2), on the scale of z: one term's tail can carry an object), mean "
            "(weighted) or max.",
            "choices": SCORE_COMBINES,
        },
    )
    term_weights: tuple[tuple[str, float], ...] = field(
        default=DEFAULT_TERM_WEIGHTS,
        metadata={
            "help": "Weights of the terms' z in the mean, TERM=WEIGHT comma-separated (a "
            "term not named weighs 1; normalised over --terms), or 'equal'. Not "
            "for --terms residual,feature, which --feature-weight weighs.",
            "flag": "--weights",
            "cli_default": format_term_weights(DEFAULT_TERM_WEIGHTS),
            "parse": parse_term_weights,
        },
    )
    linear_components: int = field(
        default=0,
        metadata={
            "help": "Principal components of the PCA model of the linear and extended "
            "terms; 0: in proportion to the cutout's area "
            f"({linear_components_for_area(0, 32, 32)} at 32 px, "
            f"{linear_components_for_area(0, 48, 48)} at 48 px, at most "
            f"{LINEAR_COMPONENTS_RANGE[1]})."
        },
    )
    robust_iterations: int = field(
        default=3,
        metadata={
            "help": "Steps of the PCA model's fit to each cutout from least squares "
            "towards a robust (Cauchy M-estimate) fit, for the linear and "
            "extended terms (0: plain least squares): pixels it cannot fit, such "
            "as a cosmic ray or a trail, stay in the residual instead of bending "
            "the model."
        },
    )
    extended_sigma: float = 3.0
    extended_top_fraction: float = 0.3
    extended_stride: int = 2
    morphology_neighbours: int = field(
        default=DEFAULT_MORPHOLOGY_NEIGHBOURS,
        metadata={
            "help": "k of the k-NN distances of the morphology and residual_shape terms "
            "(more than the size of a group of similar anomalies); --morphology-neighbours "
            "is the same option's former name.",
            "flag": ("--reference-neighbours", "--morphology-neighbours"),
        },
    )
    morphology_parameters: str = field(
        default="shape",
        metadata={
            "help": "The morphology term's parameters: shape (all but the brightness and the "
            "noise level) or all.",
            "choices": MORPHOLOGY_PARAMETERS,
        },
    )
    morphology_units: str = field(
        default="asinh",
        metadata={
            "help": "Units of the morphology term's k-NN distance: asinh of each parameter's "
            "robust z (a parameter far out counts as log(2z): no one parameter outweighs a "
            "shape that differs in several) or clip (the robust z itself).",
            "choices": KNN_UNITS,
        },
    )
    residual_shape_units: str = field(
        default="asinh",
        metadata={
            "help": "Units of the residual_shape term's k-NN distance: asinh of each "
            "descriptor's robust z or clip (the robust z itself), as --morphology-units.",
            "choices": KNN_UNITS,
        },
    )
    reference_size: int = 5000
    reference_trim: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of the reference sets of the k-NN terms (morphology, "
            "residual_shape) left out for standing farthest "
            "from their k nearest others (the calibration set's own anomalies, which would "
            "otherwise be neighbours of the anomalies scored); 0 keeps them."
        },
    )

    def __post_init__(self):
        object.__setattr__(self, "terms", tuple(self.terms))  # JSON gives a list
        pairs = tuple((str(name), float(weight)) for name, weight in self.term_weights)
        object.__setattr__(self, "term_weights", pairs)

    def linear_components_for(self, height: int, width: int) -> int:
        """The linear model's components for (height, width) cutouts: ``linear_components``, or
        where it is 0, 50 per 1024 pixels within LINEAR_COMPONENTS_RANGE (more pixels resolve
        more of a galaxy's structure for the model to reproduce)."""
        return linear_components_for_area(self.linear_components, height, width)

    def weight_of(self, term: str) -> float:
        """The unnormalised weight of ``term`` in the mean (1 unless ``term_weights`` names it)."""
        return dict(self.term_weights).get(term, 1.0)

    def validate(self) -> None:
        if not 0.0 < self.smooth_sigma <= 8.0:
            raise ConfigError(f"smooth sigma must be in (0, 8] pixels, got {self.smooth_sigma}")
        if self.n_bins < 1 or self.n_components < 1:
            raise ConfigError("bins and components must be at least 1")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ConfigError(f"top fraction must be in (0, 1], got {self.top_fraction}")
        if not 0.0 < self.extended_sigma <= 8.0:
            raise ConfigError(f"extended sigma must be in (0, 8] pixels, got {self.extended_sigma}")
        if not 1 <= self.extended_stride <= max(1.0, self.extended_sigma):
            raise ConfigError(
                f"extended stride must be 1 to the extended sigma ({self.extended_sigma:g}), "
                f"got {self.extended_stride}"
            )
        if not 0.0 < self.extended_top_fraction <= 1.0:
            raise ConfigError(
                f"extended top fraction must be in (0, 1], got {self.extended_top_fraction}"
            )
        if not 0.0 <= self.feature_weight <= 1.0:
            raise ConfigError(f"feature weight must be in [0, 1], got {self.feature_weight}")
        if (
            not self.terms
            or set(self.terms) - set(SCORE_TERMS)
            or len(set(self.terms)) < len(self.terms)
        ):
            raise ConfigError(
                f"score terms '{','.join(self.terms)}': choose one or more of "
                f"{', '.join(SCORE_TERMS)}, each once"
            )
        names = [name for name, _ in self.term_weights]
        if set(names) - set(SCORE_TERMS) or len(set(names)) < len(names):
            raise ConfigError(
                f"term weights name '{','.join(names)}': each of {', '.join(SCORE_TERMS)} once"
            )
        bad = [
            f"{name}={weight:g}" for name, weight in self.term_weights if not 0.0 <= weight <= 100.0
        ]
        if bad:
            raise ConfigError(f"term weights must be in [0, 100], got {', '.join(bad)}")
        if not any(self.weight_of(term) > 0 for term in self.terms):
            raise ConfigError(f"the terms {','.join(self.terms)} all have weight 0")
        if self.combine not in SCORE_COMBINES:
            raise ConfigError(
                f"combine must be one of {', '.join(SCORE_COMBINES)}, got {self.combine!r}"
            )
        if self.linear_components < 0:
            raise ConfigError(
                f"linear components must be at least 1 (or 0: by the cutout's area), got "
                f"{self.linear_components}"
            )
        if not 0 <= self.robust_iterations <= 20:
            raise ConfigError(f"robust iterations must be in [0, 20], got {self.robust_iterations}")
        if self.morphology_parameters not in MORPHOLOGY_PARAMETERS:
            raise ConfigError(
                f"morphology parameters must be one of {', '.join(MORPHOLOGY_PARAMETERS)}, got "
                f"{self.morphology_parameters!r}"
            )
        for term, units in (
            ("morphology", self.morphology_units),
            ("residual-shape", self.residual_shape_units),
        ):
            if units not in KNN_UNITS:
                raise ConfigError(
                    f"{term} units must be one of {', '.join(KNN_UNITS)}, got {units!r}"
                )
        if self.morphology_neighbours < 1 or self.reference_size <= self.morphology_neighbours:
            raise ConfigError("the morphology term needs k >= 1 and more reference cutouts than k")
        if not 0 <= self.reference_trim < 1:
            raise ConfigError(f"reference trim must be in [0, 1), got {self.reference_trim}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InversionConfig:
    """The inversion's settings (the paper's, except the number of steps).

    Args:
        steps: Adam steps after the encoder's start; 0 = encoder only (same code path). The
            paper used 10; 0 is the default because it scored better here, 13x faster (README).
        learning_rate, beta_1, beta_2, epsilon: in-graph Adam on z.
        lam: weight of the critic-feature term in L = (1 - lam) * pixel + lam * feature.
    """

    steps: int = field(
        default=0,
        metadata={
            "help": "Adam steps of the latent inversion after the encoder (0 = encoder "
            "only; the paper: 10)."
        },
    )
    learning_rate: float = field(default=0.1, metadata={"help": "Inversion Adam lr."})
    beta_1: float = field(
        default=0.4, metadata={"help": "Inversion Adam beta1.", "flag": "--beta1"}
    )
    beta_2: float = field(
        default=0.9, metadata={"help": "Inversion Adam beta2.", "flag": "--beta2"}
    )
    epsilon: float = 1e-7
    lam: float = field(
        default=0.3,
        metadata={"help": "Weight of the feature term: score = (1-lam) pixel + lam feature."},
    )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
