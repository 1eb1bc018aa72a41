"""Named model presets: one typed place for every architecture default (TF Model Garden style),
the settings of the latent inversion and of the default anomaly score.

``hsc96`` is the paper's architecture; ``cpu32`` and ``cpu48`` are narrower presets for CPUs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tfanomaly.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator, critic and encoder for one image size.

    The generator maps z (``latent_dim``) through a Dense layer to a ``base x base x
    generator_filters[0]`` map, then one 5x5 stride-2 transposed convolution per remaining entry of
    ``generator_filters`` and a last one to ``channels`` with a sigmoid, so
    ``image_size = base * 2**len(generator_filters)``. The critic and the encoder use one 5x5
    stride-2 convolution per entry of ``critic_filters`` (LeakyReLU 0.2, no normalisation); the
    critic's last map is its feature vector f(x).

    Args:
        name: preset name.
        image_size: cutout side in pixels.
        channels: bands per cutout.
        latent_dim: size of z.
        generator_filters: channels of the Dense map and of each hidden transposed convolution.
        critic_filters: channels of each critic (and encoder) convolution.
        kernel_size: convolution kernel side.
    """

    name: str = "hsc96"
    image_size: int = 96
    channels: int = 3
    latent_dim: int = 128
    generator_filters: tuple[int, ...] = (512, 256, 128, 64)
    critic_filters: tuple[int, ...] = (64, 128, 256, 512)
    kernel_size: int = 5

    @property
    def base_size(self) -> int:
        return self.image_size // 2 ** len(self.generator_filters)

    @property
    def feature_size(self) -> int:
        """Number of values in the critic's feature vector f(x)."""
        side = self.image_size // 2 ** len(self.critic_filters)
        return side * side * self.critic_filters[-1]

    def validate(self) -> None:
        if self.base_size * 2 ** len(self.generator_filters) != self.image_size:
            raise ConfigError(
                f"preset {self.name}: image size {self.image_size} is not a multiple of "
                f"2**{len(self.generator_filters)} (one factor 2 per generator layer)"
            )
        if self.image_size % 2 ** len(self.critic_filters):
            raise ConfigError(
                f"preset {self.name}: image size {self.image_size} is not divisible by "
                f"2**{len(self.critic_filters)} (one factor 2 per critic layer)"
            )
        if self.channels < 1 or self.latent_dim < 1:
            raise ConfigError(f"preset {self.name}: channels and latent_dim must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        values = dict(values)
        for key in ("generator_filters", "critic_filters"):
            values[key] = tuple(values[key])
        return cls(**values)


PRESETS: dict[str, ModelConfig] = {
    # Storey-Fisher et al. (2021): 96 px gri, z 128, 6x6x512 -> 4 transposed convs; critic 64..512.
    "hsc96": ModelConfig(),
    # CPU presets: fewer, narrower layers; they train to recognisable galaxies in minutes.
    "cpu32": ModelConfig(
        name="cpu32",
        image_size=32,
        latent_dim=64,
        generator_filters=(128, 64, 32),
        critic_filters=(32, 64, 128),
    ),
    "cpu48": ModelConfig(
        name="cpu48",
        image_size=48,
        latent_dim=64,
        generator_filters=(192, 96, 48),
        critic_filters=(48, 96, 192),
    ),
    # Tests and smoke runs only: trains in seconds, learns little.
    "tiny16": ModelConfig(
        name="tiny16",
        image_size=16,
        latent_dim=8,
        generator_filters=(16, 8),
        critic_filters=(8, 16),
    ),
}


def get_preset(name: str, channels: int | None = None) -> ModelConfig:
    """Return the named preset, optionally for another band count."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    if channels is not None and channels != config.channels:
        config = dataclasses.replace(config, channels=channels)
    config.validate()
    return config


def resolve_preset(preset: str | ModelConfig, channels: int | None = None) -> ModelConfig:
    """A preset given by name (as ``get_preset``) or as a ModelConfig, optionally for another band
    count, validated: what every model's ``from_preset`` takes."""
    if isinstance(preset, str):
        return get_preset(preset, channels)
    if not isinstance(preset, ModelConfig):
        raise TypeError(f"a preset is a name or a ModelConfig, got {type(preset).__name__}")
    if channels is not None and channels != preset.channels:
        preset = dataclasses.replace(preset, channels=channels)
    preset.validate()
    return preset


def preset_for_size(image_size: int) -> str:
    """The preset made for cutouts of this size (the smallest, fastest one when several fit)."""
    matching = sorted(
        (name for name, c in PRESETS.items() if c.image_size == image_size),
        key=lambda name: PRESETS[name].latent_dim,
    )
    if not matching:
        sizes = ", ".join(f"{c.image_size} ({n})" for n, c in PRESETS.items())
        raise ConfigError(f"no model preset for {image_size}-px cutouts; presets exist for {sizes}")
    return matching[0]


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
        feature_weight: weight of the feature term in the default score (1 - it: residual term).
    """

    smooth_sigma: float = 1.0
    n_bins: int = 24
    top_fraction: float = 0.03
    n_components: int = 32
    feature_weight: float = 0.7

    def validate(self) -> None:
        if not 0.0 < self.smooth_sigma <= 8.0:
            raise ConfigError(f"smooth sigma must be in (0, 8] pixels, got {self.smooth_sigma}")
        if self.n_bins < 1 or self.n_components < 1:
            raise ConfigError("bins and components must be at least 1")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ConfigError(f"top fraction must be in (0, 1], got {self.top_fraction}")
        if not 0.0 <= self.feature_weight <= 1.0:
            raise ConfigError(f"feature weight must be in [0, 1], got {self.feature_weight}")

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

    steps: int = 0
    learning_rate: float = 0.1
    beta_1: float = 0.4
    beta_2: float = 0.9
    epsilon: float = 1e-7
    lam: float = 0.3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
