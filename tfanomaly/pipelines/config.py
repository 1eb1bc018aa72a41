"""The options of every stage, typed, with their defaults: the one place the CLI and the Python API
take them from. Imports no TensorFlow, so that the CLI can read them before any command runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tfanomaly.data.planes import DEFAULT_MASK_BITS
from tfanomaly.data.resize import RESIZE_METHODS
from tfanomaly.data.stretch import STRETCH_MODES
from tfanomaly.errors import ConfigError
from tfanomaly.models.config import AUTO, check_preset_name, parse_augment
from tfanomaly.models.score_config import InversionConfig, ScoreSettings
from tfanomaly.results.report_config import ReportConfig  # noqa: F401 (a stage config, one home)
from tfanomaly.results.spaces import DEFAULT_SPACE, SPACES, check_space

# Cutouts the auto stretch measures the sky noise on by default.
STRETCH_SAMPLE = 256
NAN_POLICIES = ("fill", "drop", "error")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CUBES = ("residuals", "reals")
# The catalog formats a user names (``results.catalog.CATALOG_FORMATS`` maps their suffixes).
CATALOG_FORMAT_NAMES = ("fits", "csv", "parquet")

# The feature spaces a ranking can learn in (``results.spaces``: stored vectors, alone or side by
# side); the characterisation's map uses the same default.
FEATURE_SPACES = tuple(SPACES)
SPACE_HELP = (
    "residual_shape: descriptors of the residual image's shape (concentration, elongation, "
    "offset, grid alignment, bands); morphology: the cutout's morphology parameters (size, "
    "concentration, asymmetry, Gini, colours...); latents: the encoder's z; feature_axes: the "
    "critic features on the calibration's whitened axes; a+b: both side by side, each weighing "
    "alike"
)
# The collapse check at the end of every training stage, as the command line switches it off.
NO_CHECK_HELP = (
    "Write the network even when the check at the end of training finds it collapsed (a "
    "constant output, or no better than the mean image): for smoke tests of a pipeline with a "
    "few steps, never for a run you score with."
)


def split_names(text: str | None) -> tuple[str, ...] | None:
    """``"g,r,i"`` (as the command line spells names) -> ``("g", "r", "i")``; None when empty."""
    if not text:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def check_steps(config) -> None:
    """Every stage config's counts (steps, batch size, checkpointing, logging) are at least 1."""
    for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be at least 1")


@dataclass(frozen=True)
class SimulateConfig:
    """How ``tfanomaly simulate`` runs (what it simulates is a ``SurveyConfig``).

    Args:
        workers: worker processes; the output is the same for any number.
    """

    workers: int = field(
        default=1,
        metadata={"help": "Worker processes (output is identical).", "flag": ("-j", "--workers")},
    )


@dataclass(frozen=True)
class IngestConfig:
    """How cutouts become shards.

    Args:
        shard_size: cutouts per TFRecord shard (the unit of resume and of parallel reads).
        nan_policy: what to do with NaN/inf pixels (HSC masks): ``fill`` replaces them with
            ``fill_value``, ``drop`` leaves the cutout out, ``error`` stops naming the object.
        fill_value: the flux put into non-finite pixels under ``fill`` (0 = background level).
        size: resize every cutout to size x size pixels (None: keep the input's size).
        resize: how, with ``size``: ``crop`` (the centre) or ``area`` (area-weighted resampling).
        stretch: ``auto`` (the default: the paper's Lupton stretch with its softening scaled to
            the sky noise measured on the first ``stretch_sample`` cutouts, so any flux unit is
            seen as HSC's is; HSC units give back about the paper's) or ``paper`` (Lupton Q=15,
            stretch=0.5, fixed: the paper's HSC units).
        stretch_sample: cutouts the ``auto`` stretch measures the sky noise on.
        mask_bits: names of the mask bits whose pixels are left out (None: ``DEFAULT_MASK_BITS``,
            those of them the input defines); only used when the input has mask planes.
    """

    shard_size: int = field(default=2048, metadata={"help": "Cutouts per TFRecord shard."})
    nan_policy: str = field(
        default="fill",
        metadata={
            "help": "NaN/inf pixels (HSC masks): fill with --fill-value, drop the cutout, or stop.",
            "flag": "--nan",
            "choices": NAN_POLICIES,
        },
    )
    fill_value: float = field(default=0.0, metadata={"help": "Flux put into NaN pixels."})
    size: int | None = field(
        default=None,
        metadata={
            "help": "Resize every cutout to SIZE x SIZE pixels (default: keep the input's size).",
            "type": int,
        },
    )
    resize: str = field(
        default="crop",
        metadata={
            "help": "With --size: crop the centre, or area-weighted resampling (flux per "
            "pixel averaged, variance propagated, mask bits OR-ed).",
            "choices": RESIZE_METHODS,
        },
    )
    stretch: str = field(
        default="auto",
        metadata={
            "help": "auto: the paper's Lupton stretch with its softening scaled to the "
            "sky noise measured per band (from neighbouring-pixel differences) on"
            f" the first {STRETCH_SAMPLE} cutouts, for any flux unit; paper: Lupton Q=15, "
            "stretch=0.5 fixed (HSC coadd units).",
            "choices": STRETCH_MODES,
        },
    )
    stretch_sample: int = STRETCH_SAMPLE
    mask_bits: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "Comma-separated mask bit names whose pixels are left out (default: "
            f"{','.join(DEFAULT_MASK_BITS)}, those the input defines).",
            "parse": split_names,
        },
    )

    @property
    def chosen_mask_bits(self) -> tuple[str, ...]:
        if self.mask_bits is None:
            return DEFAULT_MASK_BITS
        if isinstance(self.mask_bits, str):  # "SAT,CR" as the command line spells it
            return tuple(name for name in self.mask_bits.split(",") if name.strip())
        return tuple(self.mask_bits)

    def validate(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"shard size must be at least 1, got {self.shard_size}")
        if self.size is not None and self.size < 2:
            raise ConfigError(f"--size must be at least 2 pixels, got {self.size}")
        if self.resize not in RESIZE_METHODS:
            raise ConfigError(
                f"unknown resize '{self.resize}'; choose one of {', '.join(RESIZE_METHODS)}"
            )
        if self.stretch not in STRETCH_MODES:
            raise ConfigError(
                f"unknown stretch '{self.stretch}'; choose one of {', '.join(STRETCH_MODES)}"
            )
        if self.stretch_sample < 1:
            raise ConfigError(f"stretch sample must be at least 1, got {self.stretch_sample}")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(
                f"unknown NaN policy '{self.nan_policy}'; choose one of {', '.join(NAN_POLICIES)}"
            )
        if not math.isfinite(self.fill_value):
            raise ConfigError("the NaN fill value must be a finite number")


@dataclass(frozen=True)
class GanTrainConfig:
    """Options of ``tfanomaly train gan`` (paper values where the paper gives them).

    Args:
        preset: the architecture: ``auto`` (the fixed preset made for the data's cutout size, else
            the ``cpu`` family's), a family derived for the data's size and band count (``cpu``,
            ``hsc`` or its alias ``paper``, ``tiny``), a fixed preset (``hsc96``, ``cpu32``,
            ``cpu48``, ``tiny16``) or a family with a size (``cpu64``), whose size must match.
        steps: generator iterations in all (the paper: 10,000).
        batch_size: images per critic step (the paper: 32).
        n_critic: critic updates per generator update, each on its own real batch.
        gp_weight: gradient-penalty weight.
        learning_rate: Adam learning rate of both networks (beta1 0.5, beta2 0.9).
        checkpoint_every: generator steps between checkpoints (and sample grids).
        keep_checkpoints: checkpoints kept on disk.
        log_every: generator steps between TensorBoard scalar writes.
        seed: seeds z, the penalty's interpolation and the data shuffle.
        precision: ``float32`` or a Keras mixed-precision policy (one of ``PRECISIONS``).
        ema_decay: 0 (off) or the decay of a moving average of the generator's weights; when on,
            ``generator.keras`` carries the average and ``generator_raw.keras`` the last weights.
        augment: DiffAugment transforms of the critic's input (``flip``, ``translation``; empty:
            off, the paper's training), see ``tfanomaly.models.augment``.
        contrastive: 0 (off, the paper's training) or the weight of the critic's contrastive
            term (``WGANGP``'s ``contrastive``).
        check: at the end, refuse to write a generator that has collapsed (its samples nearly one
            image; ``pipelines.learning``); off only for smoke tests of a pipeline.
    """

    preset: str = field(
        default=AUTO,
        metadata={
            "help": "Architecture: auto (the preset made for the data's cutout size, else"
            " the cpu family), a family derived for any size and band count (cpu;"
            " hsc or paper: the paper's widths; tiny: tests), a fixed preset "
            "(hsc96: the paper, 96 px; cpu32, cpu48; tiny16) or a family with a "
            "size (cpu64)."
        },
    )
    steps: int = field(default=2000, metadata={"help": "Generator iterations in all."})
    batch_size: int = field(default=32, metadata={"help": "Images per critic step."})
    n_critic: int = field(default=5, metadata={"help": "Critic updates per G update."})
    gp_weight: float = field(default=10.0, metadata={"help": "Gradient-penalty weight."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Adam lr of both nets."})
    checkpoint_every: int = field(
        default=100, metadata={"help": "Generator steps between checkpoints and sample grids."}
    )
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = field(default=0, metadata={"help": "Seed of z, penalty and shuffle."})
    precision: str = field(
        default="float32",
        metadata={
            "help": "Mixed precision: bf16 pays off only for wide models (see README).",
            "choices": PRECISIONS,
        },
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "Moving average of the generator's weights (e.g. 0.999; 0 = off); see README."
        },
    )
    augment: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "DiffAugment of every image the critic sees in training: flip, "
            "translation, both (flip,translation) or none (the paper); see "
            "README.",
            "cli_default": "none",
            "parse": parse_augment,
        },
    )
    contrastive: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a contrastive term in the critic's loss (InfoNCE between "
            "two flips/shifts of each real image; 0 = off, the paper); see "
            "README."
        },
    )
    check: bool = field(
        default=True,
        metadata={
            "help": "Write the network even when the check at the end of training finds "
            "it collapsed (a constant output, or no better than the mean image): "
            "for smoke tests of a pipeline with a few steps, never for a run you "
            "score with.",
            "flag": "--no-check",
            "is_flag": True,
        },
    )

    def __post_init__(self):
        object.__setattr__(self, "augment", tuple(self.augment))  # JSON gives a list

    def validate(self) -> None:
        check_steps(self)
        check_preset_name(self.preset)
        parse_augment(self.augment)
        if self.contrastive < 0:
            raise ConfigError(
                f"contrastive weight must be 0 (off) or positive, got {self.contrastive}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.n_critic < 1:
            raise ConfigError("n-critic must be at least 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Options of ``tfanomaly train encoder``.

    Args:
        steps: encoder updates in all.
        batch_size: images per update.
        learning_rate: Adam learning rate (beta1 0.5, beta2 0.9 as for the GAN).
        lam: weight of the critic-feature term in the loss (as in the inversion, paper 0.3).
        checkpoint_every, keep_checkpoints, log_every, seed, check: as for the GAN (the check:
            its reconstructions of different images are not nearly one image).
    """

    steps: int = field(default=1000, metadata={"help": "Encoder updates in all."})
    batch_size: int = field(default=32, metadata={"help": "Images per update."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    lam: float = field(
        default=0.3, metadata={"help": "Weight of the critic-feature term (as in scoring)."}
    )
    checkpoint_every: int = field(
        default=100, metadata={"help": "Steps between checkpoints and reconstruction grids."}
    )
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = field(default=0, metadata={"help": "Seed of the data shuffle."})
    check: bool = field(
        default=True,
        metadata={
            "help": "Write the network even when the check at the end of training finds "
            "it collapsed (a constant output, or no better than the mean image): "
            "for smoke tests of a pipeline with a few steps, never for a run you "
            "score with.",
            "flag": "--no-check",
            "is_flag": True,
        },
    )

    def validate(self) -> None:
        check_steps(self)
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"lambda must be in [0, 1], got {self.lam}")


@dataclass(frozen=True)
class CalibrateConfig:
    """Options of ``tfanomaly calibrate`` besides the score's ``ScoreSettings``.

    Args:
        fit_size: cutouts drawn at random to calibrate on.
        pixels_per_image: pixels sampled from each smoothed residual map.
        batch_size: cutouts per inversion batch.
        seed: seed of the cutouts and pixels drawn.
        settings: the default score's settings (what is fitted).
        inversion: the latent inversion's settings the cutouts are reconstructed with.
        planes: use the data set's variance and mask planes where it has them.
    """

    fit_size: int = field(default=5000, metadata={"help": "Cutouts to calibrate on."})
    pixels_per_image: int = 256
    batch_size: int = 256
    seed: int = field(default=0, metadata={"help": "Seed of the cutouts drawn."})
    settings: ScoreSettings = field(default_factory=ScoreSettings)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    planes: bool = field(
        default=True,
        metadata={
            "help": "Use the data set's variance and mask planes where it has them "
            '(README "Variance and mask planes in the score"); --no-planes '
            "calibrates on the brightness-binned scatter only.",
            "flag": "--planes/--no-planes",
        },
    )

    def validate(self) -> None:
        if self.fit_size < 2 or self.pixels_per_image < 1 or self.batch_size < 1:
            raise ConfigError("fit size must be at least 2, pixels and batch size at least 1")
        self.settings.validate()


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/n' -> (i, n), the ``shard`` of a ScoreConfig."""
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--shard '{text}': expected i/n, e.g. 0/4") from exc
    return i, n


@dataclass(frozen=True)
class CatalogConfig:
    """How a scored catalog is written (``score`` and ``merge-scores``).

    Args:
        catalog_format: one of ``CATALOG_FORMAT_NAMES``: the file ``catalog.<format>``.
        select_sigma: also write ``catalog_sigma<S>`` with the objects above S sigma (None: no).
        select_key: catalog column the selection cuts on (the paper: the discriminator's).
    """

    catalog_format: str = field(
        default="fits",
        metadata={"help": "Format of catalog.<format>.", "choices": CATALOG_FORMAT_NAMES},
    )
    select_sigma: float | None = field(
        default=None,
        metadata={
            "help": "Also write catalog_sigma<S> with the objects above S sigma (paper: 3).",
            "type": float,
        },
    )
    select_key: str = field(
        default="score_normalized",
        metadata={
            "help": "Catalog column the selection cuts on (the paper: "
            "discriminator_score_normalized)."
        },
    )

    @property
    def suffix(self) -> str:
        """The catalog file's suffix (``.fits``), as ``results.catalog`` names its formats."""
        return f".{self.catalog_format}"


@dataclass(frozen=True)
class ScoreConfig:
    """Options of ``tfanomaly score``.

    Args:
        inversion: steps (0 = encoder only), Adam settings and lambda of the latent inversion.
        batch_size: cutouts per inversion batch.
        part_batches: batches per part file: the unit of resume.
        store_images: also store the cubes reals, reconstructed, residuals (stretched).
        shard: (i, n) to score only part i of n of the data set (cluster jobs; merge afterwards).
        catalog: how the catalogs are written.
        planes: use the data set's variance and mask planes where it and the calibration have
            them (False: the calibrated scatter, as a served model computes).
    """

    inversion: InversionConfig = field(default_factory=InversionConfig)
    batch_size: int = field(default=128, metadata={"help": "Cutouts per batch/request."})
    part_batches: int = 8
    store_images: bool = field(
        default=False,
        metadata={
            "help": "Also store reals, reconstructed and residuals cubes (large for big surveys).",
            "is_flag": True,
        },
    )
    shard: tuple[int, int] | None = field(
        default=None,
        metadata={
            "help": "i/n: score only part i of n (merge with merge-scores).",
            "parse": parse_shard,
        },
    )
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    planes: bool = field(
        default=True,
        metadata={
            "help": "Use the data set's variance and mask planes where it and the "
            "calibration have them; --no-planes scores with the calibrated "
            "scatter (as a served model does).",
            "flag": "--planes/--no-planes",
        },
    )

    def validate(self) -> None:
        if self.batch_size < 1 or self.part_batches < 1:
            raise ConfigError("batch size and part size must be at least 1")
        if self.inversion.steps < 0:
            raise ConfigError(f"inversion steps must be 0 or more, got {self.inversion.steps}")
        if not 0.0 <= self.inversion.lam <= 1.0:
            raise ConfigError(f"lambda must be in [0, 1], got {self.inversion.lam}")
        if self.shard is not None:
            i, n = self.shard
            if not (n >= 1 and 0 <= i < n):
                raise ConfigError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``tfanomaly export``.

    Args:
        name: the model's name for TF Serving (its folder under the model base).
        steps: inversion steps of ``serving_default`` (None: those of the reference catalog).
    """

    name: str = field(default="tfanomaly", metadata={"help": "Model name for TF Serving."})
    steps: int | None = field(
        default=None,
        metadata={
            "help": "Inversion steps of serving_default (default: those of the reference catalog).",
            "type": int,
        },
    )


@dataclass(frozen=True)
class ClientConfig:
    """Which served model ``tfanomaly score --server/--rest`` calls.

    Args:
        model: the served model's name (what ``export`` names it).
        signature: the signature to call (``score_fast``: encoder only).
    """

    model: str = field(default=ExportConfig.name, metadata={"help": "Served model name."})
    signature: str = field(
        default="serving_default",
        metadata={
            "help": "Served signature (score_fast: encoder only; score_planes: also sends"
            " the data set's variance and mask planes, for the export of a run "
            "calibrated with them)."
        },
    )


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of ``tfanomaly evaluate``.

    Args:
        baseline: also compute the classical baselines (isolation forests on PCA features).
        seed: seed of the baselines.
    """

    baseline: bool = field(
        default=True,
        metadata={
            "help": "Skip the five classical baselines.",
            "flag": "--no-baseline",
            "is_flag": True,
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the baselines."})


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
    check: bool = field(
        default=True,
        metadata={
            "help": "Write the network even when the check at the end of training finds "
            "it collapsed (a constant output, or no better than the mean image): "
            "for smoke tests of a pipeline with a few steps, never for a run you "
            "score with.",
            "flag": "--no-check",
            "is_flag": True,
        },
    )

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
    seed: int = field(default=0, metadata={"help": "UMAP seed (reproducible)."})

    def validate(self) -> None:
        check_space(self.space)
        if self.n_neighbors < 2 or self.min_cluster_size < 2:
            raise ConfigError("--n-neighbors and --min-cluster-size must be at least 2")


@dataclass(frozen=True)
class ServeConfig:
    """Options of ``tfanomaly serve`` (``serving.local.LocalServer``).

    Args:
        host: address to bind (0.0.0.0 exposes the server to the network).
        grpc_port, rest_port: ports of the two APIs (0: any free port).
    """

    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to bind (0.0.0.0 exposes the server to the network)."},
    )
    grpc_port: int = field(default=8500, metadata={"help": "gRPC port (0: any free)."})
    rest_port: int = field(default=8501, metadata={"help": "REST port (0: any free)."})


@dataclass(frozen=True)
class DemoConfig:
    """The demo's survey: small enough for a 2-core CPU."""

    n_objects: int = field(
        default=3000, metadata={"help": "Simulated cutouts.", "flag": ("-n", "--n-objects")}
    )
    size: int = field(default=32, metadata={"help": "Cutout side in pixels (CPU preset)."})
    seed: int = field(default=0, metadata={"help": "Random seed of survey and training."})
    anomaly_fraction: float = 0.02
    shard_size: int = 1024
    gan_steps: int = field(
        default=1000, metadata={"help": "WGAN-GP generator steps."}
    )  # ~4 minutes for cpu32 on 2 cores
    encoder_steps: int = field(default=600, metadata={"help": "Encoder training steps."})  # ~30 s
    inversion_steps: int = 0  # encoder only: better and 13x faster here (the paper: 10)
    check: bool = field(
        default=True,
        metadata={
            "help": "Write the network even when the check at the end of training finds "
            "it collapsed (a constant output, or no better than the mean image): "
            "for smoke tests of a pipeline with a few steps, never for a run you "
            "score with.",
            "flag": "--no-check",
            "is_flag": True,
        },
    )  # the collapse check at the end of each training stage
    cae_steps: int = field(default=300, metadata={"help": "CAE training steps."})


@dataclass(frozen=True)
class RerankConfig:
    """Options of ``tfanomaly rerank`` (``pipelines.rerank.rerank``).

    Args:
        features: the feature space relevance and similarity are measured in (one of
            ``FEATURE_SPACES``).
        labels: the label file's name in the results folder (the explorer's SQLite label store;
            ``--labels`` may name another file, or a CSV with columns object_id,label).
    """

    features: str = field(
        default=DEFAULT_SPACE,
        metadata={
            "help": f"Feature space the labels' relevance spreads in ({SPACE_HELP}).",
            "choices": FEATURE_SPACES,
        },
    )
    labels: str = "labels.sqlite"

    def validate(self) -> None:
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

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
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
