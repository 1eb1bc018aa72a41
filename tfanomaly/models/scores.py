"""The scores of the method and their one vocabulary: each score's name as the inverter and the
SavedModel output it, as the results HDF5 stores it (the paper's keys), and as the catalog shows it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One score along its way from the inverter to the catalog.

    Args:
        output: the inverter's (and the exported SavedModel's) output name, per image.
        results: the results HDF5 key of the raw values (``<results>_sigma``: the sigma values);
            the paper's file names three of them (``anomaly_scores``, ``gen_scores``,
            ``disc_scores``).
        catalog: the catalog column of the sigma values (the paper's ``*_score_normalized``).
        meaning: what it measures, in a few words.
        label: its name in tables and plots (`evaluate`, the HTML report, the benchmarks).
    """

    output: str
    results: str
    catalog: str
    meaning: str
    label: str

    @property
    def sigma(self) -> str:
        """The results HDF5 key of the sigma values."""
        return f"{self.results}_sigma"


# In catalog order: the default score and its terms, then the paper's three.
SCORES: tuple[Score, ...] = (
    Score(
        "score",
        "scores",
        "score_normalized",
        "default: morphology and residual shape densities, combined (softmax of their z)",
        "default (morph+shape)",
    ),
    Score(
        "residual_score",
        "residual_scores",
        "residual_score_normalized",
        "the GAN's residual: top chi^2 of the smoothed residual (stored, not in the default)",
        "GAN noise-aware residual",
    ),
    Score(
        "feature_score",
        "feature_scores",
        "feature_score_normalized",
        "the critic features' Mahalanobis distance (stored, not in the default)",
        "critic-feature density",
    ),
    Score(
        "linear_score",
        "linear_scores",
        "linear_score_normalized",
        "linear term: residual against a PCA model of the smoothed pixels (stored, weight 0)",
        "linear-model residual",
    ),
    Score(
        "extended_score",
        "extended_scores",
        "extended_score_normalized",
        "extended term: the linear residual through a 3-px filter, top 30% (stored, weight 0)",
        "extended linear residual",
    ),
    Score(
        "morphology_score",
        "morphology_scores",
        "morphology_score_normalized",
        "default's physical term: k-NN distance in morphology parameters (asinh of robust z)",
        "morphology k-NN density",
    ),
    Score(
        "residual_shape_score",
        "residual_shape_scores",
        "residual_shape_score_normalized",
        "default's misfit-shape term: k-NN distance in the GAN residual's shape descriptors",
        "residual-shape k-NN density",
    ),
    Score(
        "disc_score",
        "disc_scores",
        "discriminator_score_normalized",
        "paper: sum |f(x) - f(G(z))| over critic features",
        "paper: discriminator",
    ),
    Score(
        "gen_score",
        "gen_scores",
        "generator_score_normalized",
        "paper: sum |x - G(z)| over pixels",
        "paper: generator (pixel)",
    ),
    Score(
        "anomaly_score",
        "anomaly_scores",
        "combined_score_normalized",
        "paper: (1 - lambda) gen + lambda disc",
        "paper: anomaly (combined)",
    ),
)
BY_OUTPUT = {score.output: score for score in SCORES}
