"""Options of characterisation and discovery: ``train cae``, ``embed``, ``rerank``, ``explore``, and
the high-anomaly sample they start from."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfanomaly.errors import ConfigError
from tfanomaly.models.query import DEFAULT_QUERY, QUERIES, check_query
from tfanomaly.pipelines.config._shared import (
    CUBES,
    FEATURE_SPACES,
    SPACE_HELP,
    check_field,
    check_steps,
)
from tfanomaly.results.spaces import DEFAULT_SPACE, check_space

# The high-anomaly sample the characterisation works on by default: the paper's cut (sigma > 3),
# or the top AUTO_TOP objects when the cut keeps fewer than AUTO_FLOOR (too few for a map).
AUTO_SELECTION = "auto"
AUTO_SIGMA, AUTO_FLOOR, AUTO_TOP = 3.0, 300, 500
SELECTION_HELP = (
    f"{AUTO_SELECTION} (above {AUTO_SIGMA:g} sigma, or the top {AUTO_TOP} when that keeps fewer "
    f"than {AUTO_FLOOR}), sigma:S (above S sigma; the paper's sample is sigma:3), top:N, all, or "
    "ids:FILE (one object id per line)"
)


@dataclass(frozen=True)
class CaeTrainConfig:
    """Options of ``tfanomaly train cae``.

    Args:
        selection: which scored objects to train on (``SELECTION_HELP``): ``auto``, ``sigma:S``
            (``select_key`` above S sigma; the paper's high-anomaly sample is ``sigma:3``),
            ``top:N``, ``all``, or ``ids:FILE`` (one object id per line).
        select_key: results column the sigma cut uses (default score; the paper used
            ``disc_scores_sigma``).
        images: ``residuals`` (|stretched real - reconstruction|, the paper) or ``reals``.
        steps, batch_size, learning_rate: Adam (paper: lr 1e-3), MSE loss.
        checkpoint_every, keep_checkpoints, log_every, seed, check: as for the GAN (the check:
            the CAE reconstructs its images better than their mean image, and its outputs vary).
    """

    selection: str = field(
        default=AUTO_SELECTION,
        metadata={
            "help": f"Objects to train on: {SELECTION_HELP}.",
            "flag": "--select",
        },
    )
    select_key: str = field(
        default="scores_sigma",
        metadata={
            "help": "Results column that auto, sigma: and top: rank by (the paper: "
            "disc_scores_sigma)."
        },
    )
    images: str = field(
        default="residuals",
        metadata={"help": "Residual images (the paper) or the real images.", "choices": CUBES},
    )
    steps: int = field(default=1000, metadata={"help": "Training steps."})
    batch_size: int = field(default=32, metadata={"help": "Images per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    checkpoint_every: int = field(default=100, metadata={"help": "Steps per checkpoint."})
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle."})
    check: bool = check_field()

    def validate(self) -> None:
        if self.images not in CUBES:
            raise ConfigError(f"--images must be one of {', '.join(CUBES)}")
        check_steps(self)


@dataclass(frozen=True)
class EmbedConfig:
    """Options of ``tfanomaly embed`` (UMAP and HDBSCAN with the paper's settings).

    Args:
        space: the feature space of a results folder's objects (``results.spaces.SPACES``; a CAE
            folder always uses its CAE's latents).
        selection: the objects to embed (``SELECTION_HELP``; for a CAE folder the default is the
            sample it was trained on).
        select_key: the results column ``auto``, ``sigma:`` and ``top:`` rank by.
        n_neighbors: UMAP n_neighbors.
        min_dist: UMAP min_dist.
        min_cluster_size: HDBSCAN's smallest cluster.
        min_samples: HDBSCAN's neighbours of a core point. Its default (the cluster size) merged
            the demo's map into two clusters; 3 gives clusters that are mostly one kind on every
            measured family (docs: characterisation results).
        seed: UMAP's random state (the embedding is reproducible).
    """

    space: str = field(
        default=DEFAULT_SPACE,
        metadata={
            "help": f"Feature space of a results folder's objects ({SPACE_HELP}). A CAE folder "
            "always uses its CAE's latents (the paper's way).",
            "choices": FEATURE_SPACES,
        },
    )
    selection: str = field(
        default=AUTO_SELECTION,
        metadata={
            "help": f"Objects to embed: {SELECTION_HELP}. For a CAE folder the default is the "
            "sample the CAE was trained on.",
            "flag": "--select",
        },
    )
    select_key: str = field(
        default="scores_sigma",
        metadata={"help": "Results column that auto, sigma: and top: rank by."},
    )
    n_neighbors: int = field(default=5, metadata={"help": "UMAP n_neighbors."})
    min_dist: float = field(default=0.1, metadata={"help": "UMAP min_dist."})
    min_cluster_size: int = field(default=5, metadata={"help": "HDBSCAN cluster size."})
    min_samples: int = field(
        default=3,
        metadata={"help": "HDBSCAN neighbours of a core point (smaller: more, purer clusters)."},
    )
    seed: int = field(default=0, metadata={"help": "UMAP seed (reproducible)."})

    def validate(self) -> None:
        check_space(self.space)
        if self.n_neighbors < 2 or self.min_cluster_size < 2:
            raise ConfigError("--n-neighbors and --min-cluster-size must be at least 2")
        if self.min_samples < 1:
            raise ConfigError("--min-samples must be at least 1")


@dataclass(frozen=True)
class RerankConfig:
    """Options of ``tfanomaly rerank`` (``pipelines.rerank.rerank``).

    Args:
        features: the feature space relevance and similarity are measured in (one of
            ``FEATURE_SPACES``).
        labels: the label file's name in the results folder (the explorer's SQLite label store;
            ``--labels`` may name another file, or a CSV with columns object_id,label).
        query: how the next batch to label is chosen (``models.query``): ``top`` of the new
            ranking, ``uncertain``, ``diverse`` or ``mixed``; written as the column ``to_label``.
        batch: objects in that batch.
    """

    features: str = field(
        default=DEFAULT_SPACE,
        metadata={
            "help": f"Feature space the labels' relevance spreads in ({SPACE_HELP}).",
            "choices": FEATURE_SPACES,
        },
    )
    labels: str = "labels.sqlite"
    query: str = field(
        default=DEFAULT_QUERY,
        metadata={
            "help": "How the next objects to label are chosen: top (the ranking's top), uncertain "
            "(nearest the labels' decision boundary, among the high-scoring), diverse (high-scoring "
            "but spread over the feature space, far from what is labelled) or mixed (top and "
            "diverse); written as the catalog column to_label.",
            "choices": QUERIES,
        },
    )
    batch: int = field(default=10, metadata={"help": "Objects in the batch to label next."})

    def validate(self) -> None:
        check_query(self.query)
        if not 1 <= self.batch <= 10**5:
            raise ConfigError(f"batch must be in 1-100000, got {self.batch}")
        if self.features not in FEATURE_SPACES:
            raise ConfigError(
                f"unknown feature space '{self.features}'; choose one of {', '.join(FEATURE_SPACES)}"
            )


@dataclass(frozen=True)
class ExploreConfig:
    """Options of ``tfanomaly explore`` (the labelling web app, ``tfanomaly.explore``).

    Args:
        host: address to bind (0.0.0.0 exposes the explorer, and the labels, to the network).
        port: port to listen on (0: any free port; the command prints the URL).
        rerank_every: new labels between two re-rankings of the queue.
        page_size: objects per page of the queue.
        panel_size: the smallest side, in screen pixels, of each triptych panel (images are
            enlarged by a whole factor, nearest neighbour, to at least this).
        similar: objects "more like this" shows.
        features: the feature space re-ranking and similarity use (one of ``FEATURE_SPACES``;
            files without feature vectors use PCA features of their residual images).
        query: which objects open the queue (``models.query``): the next ``rerank_every`` to
            label, chosen ``top``, ``uncertain``, ``diverse`` or ``mixed``; the rest follow in
            ranking order. The page's selector changes it.
    """

    host: str = field(
        default="127.0.0.1",
        metadata={
            "help": "Address to bind (0.0.0.0 exposes the explorer and its labels to the network)."
        },
    )
    port: int = field(
        default=8765, metadata={"help": "Port (0: any free port; the URL is printed)."}
    )
    rerank_every: int = field(
        default=10, metadata={"help": "Re-rank the queue after this many new labels."}
    )
    page_size: int = field(default=20, metadata={"help": "Objects per page."})
    panel_size: int = field(
        default=128,
        metadata={
            "help": "Smallest side in pixels of each triptych panel (whole-factor enlargement)."
        },
    )
    similar: int = field(default=12, metadata={"help": "Objects shown by 'more like this'."})
    features: str = field(
        default=RerankConfig.features,
        metadata={
            "help": f"Feature space of re-ranking and 'more like this' ({SPACE_HELP}; files "
            "without vectors, like the paper's, use PCA features of their residuals).",
            "choices": FEATURE_SPACES,
        },
    )

    query: str = field(
        default=DEFAULT_QUERY,
        metadata={
            "help": "Which objects open the queue, the next --rerank-every to label: top (the "
            "ranking's top), uncertain, diverse or mixed (see `tfanomaly rerank --help`); the "
            "page's selector changes it.",
            "choices": QUERIES,
        },
    )

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        check_query(self.query)
        for name, low, high in (
            ("rerank_every", 1, 10**6),
            ("page_size", 1, 200),
            ("panel_size", 16, 1024),
            ("similar", 1, 200),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name.replace('_', '-')} must be in {low}-{high}, got {value}")
        if self.features not in FEATURE_SPACES:
            raise ConfigError(
                f"unknown feature space '{self.features}'; choose one of {', '.join(FEATURE_SPACES)}"
            )
