"""Options of the training stages: ``train gan``, ``train encoder``, ``calibrate``."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfanomaly.errors import ConfigError
from tfanomaly.models.config import AUTO, check_preset_name, parse_augment
from tfanomaly.models.score_config import InversionConfig, ScoreSettings
from tfanomaly.pipelines.config._shared import PRECISIONS, check_field, check_steps


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
    check: bool = check_field()

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
    check: bool = check_field()

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
        noise_terms: ``auto``: the terms that compare the residual with the survey's noise
            (``term_health.NOISE_MODEL_TERMS``) weigh 0 where the data's health at ingest finds
            images scaled one by one or quantised to 8 bits (``term_health.noise_model_finding``);
            ``keep``: they keep their weights.
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
    noise_terms: str = field(
        default="auto",
        metadata={
            "help": "auto: leave the noise-model terms (linear, extended, residual, "
            "residual_shape) out of the "
            "default score where the data's health at ingest finds images scaled one by one or "
            "quantised to 8 bits (their pixel differences are rounding and scaling, not survey "
            "noise); keep: weigh them as --term-weights says.",
            "choices": ("auto", "keep"),
        },
    )

    def validate(self) -> None:
        if self.fit_size < 2 or self.pixels_per_image < 1 or self.batch_size < 1:
            raise ConfigError("fit size must be at least 2, pixels and batch size at least 1")
        if self.noise_terms not in ("auto", "keep"):
            raise ConfigError(f"noise terms: '{self.noise_terms}', not auto or keep")
        self.settings.validate()
