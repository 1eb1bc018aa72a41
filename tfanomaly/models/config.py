"""Model presets and families: one typed place for every architecture default (TF Model Garden
style), and the critic's DiffAugment names. The settings of the latent inversion and of the
default anomaly score are in :mod:`tfanomaly.models.score_config`.

``hsc96`` is the paper's architecture; ``cpu32`` and ``cpu48`` are narrower presets for CPUs. The
families ``hsc`` (alias ``paper``), ``cpu`` and ``tiny`` derive an architecture for any cutout size
and band count; at 96, 32, 48 and 16 px they give those fixed presets.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from tfanomaly.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the generator, critic and encoder for one image size.

    The generator maps z (``latent_dim``) through a Dense layer to a ``base x base x
    generator_filters[0]`` map, then one 5x5 stride-2 transposed convolution per remaining entry of
    ``generator_filters`` and a last one to ``channels`` with a sigmoid, so it draws
    ``base * 2**len(generator_filters)`` pixels with ``base = ceil(image_size /
    2**len(generator_filters))``; where that is more than ``image_size`` (sizes that are not
    ``base * 2**k``, such as 100), a centred crop cuts the image to ``image_size``. The critic and
    the encoder use one 5x5 stride-2 convolution per entry of ``critic_filters`` (LeakyReLU 0.2, no
    normalisation; 'same' padding, so a side s becomes ceil(s / 2)); the critic's last map is its
    feature vector f(x).

    Args:
        name: preset name (a fixed preset's, or ``<family><size>`` for a derived one).
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
        """Side of the generator's first map (the Dense layer's, reshaped)."""
        return -(-self.image_size // 2 ** len(self.generator_filters))

    @property
    def drawn_size(self) -> int:
        """Side of the image the generator draws before its crop to ``image_size``."""
        return self.base_size * 2 ** len(self.generator_filters)

    @property
    def feature_side(self) -> int:
        """Side of the critic's last map: ``image_size`` halved (rounded up) per layer."""
        return -(-self.image_size // 2 ** len(self.critic_filters))

    @property
    def feature_size(self) -> int:
        """Number of values in the critic's feature vector f(x)."""
        return self.feature_side**2 * self.critic_filters[-1]

    def validate(self) -> None:
        for what, filters in (
            ("generator", self.generator_filters),
            ("critic", self.critic_filters),
        ):
            if not filters or min(filters) < 1:
                raise ConfigError(f"preset {self.name}: {what} filters must be positive")
            # Each stride-2 layer halves the side: the image must hold one pixel per factor 2.
            if self.image_size < 2 ** len(filters):
                raise ConfigError(
                    f"preset {self.name}: image size {self.image_size} is too small for "
                    f"{len(filters)} {what} layers (one factor 2 per layer needs at least "
                    f"{2 ** len(filters)} px)"
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
# Presets only the tests use: never chosen for a data set by size.
TEST_PRESETS = ("tiny16",)

# Derived architectures stop halving once the critic's last map is at most this many pixels
# across (the paper's 96 px end at 6, cpu32 at 4, cpu48 at 6).
MAX_FEATURE_SIDE = 7
MIN_IMAGE_SIZE = 8
AUTO = "auto"


@dataclass(frozen=True)
class ModelFamily:
    """A rule that derives a ModelConfig for any image size and band count.

    The number of stride-2 layers is the smallest that brings the critic's last map to at most
    ``MAX_FEATURE_SIDE`` pixels (each layer: ceil(side / 2)); the critic's widths start at
    ``first_width`` and double per layer up to ``doublings`` times; the generator mirrors them.
    The first width is the image side rounded to a multiple of 8, kept within ``first_width``.

    Args:
        name: family name; a derived config is named ``<name><size>``.
        latent_dim: size of z.
        first_width: (smallest, largest) channels of the first critic convolution.
        doublings: times the width doubles from the first layer to the widest.
        kernel_size: convolution kernel side.

    Example:
        >>> FAMILIES["cpu"].config(64, channels=1).critic_filters
        (48, 96, 192, 192)
    """

    name: str
    latent_dim: int
    first_width: tuple[int, int]
    doublings: int
    kernel_size: int = 5

    def layers(self, image_size: int) -> int:
        """Stride-2 layers for cutouts of this size."""
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(
                f"{image_size}-px cutouts are too small for a model; the smallest is "
                f"{MIN_IMAGE_SIZE} px"
            )
        n = 1
        while math.ceil(image_size / 2**n) > MAX_FEATURE_SIDE:
            n += 1
        return n

    def config(self, image_size: int, channels: int = 3) -> ModelConfig:
        """The family's architecture for ``image_size``-px cutouts of ``channels`` bands."""
        smallest, largest = self.first_width
        first = min(max(8 * ((image_size + 4) // 8), smallest), largest)
        widths = tuple(first * 2 ** min(k, self.doublings) for k in range(self.layers(image_size)))
        config = ModelConfig(
            name=f"{self.name}{image_size}",
            image_size=image_size,
            channels=channels,
            latent_dim=self.latent_dim,
            generator_filters=widths[::-1],
            critic_filters=widths,
            kernel_size=self.kernel_size,
        )
        config.validate()
        return config


FAMILIES: dict[str, ModelFamily] = {
    # The paper's widths: 64 doubling to 512; at 96 px exactly hsc96.
    "hsc": ModelFamily("hsc", latent_dim=128, first_width=(64, 64), doublings=3),
    # CPU widths: first layer 32 to 48 channels by size, at most four times that; at 32 and 48 px
    # exactly cpu32 and cpu48. A first width of 64 at 64 px and more would cost 1.75x the time.
    "cpu": ModelFamily("cpu", latent_dim=64, first_width=(32, 48), doublings=2),
    # Tests and smoke runs: 8 and 16 channels at any size; at 16 px exactly tiny16.
    "tiny": ModelFamily("tiny", latent_dim=8, first_width=(8, 8), doublings=1),
}
FAMILY_ALIASES = {"paper": "hsc"}


def _family(name: str) -> ModelFamily | None:
    return FAMILIES.get(FAMILY_ALIASES.get(name, name))


def derive_config(family: str, image_size: int, channels: int = 3) -> ModelConfig:
    """The architecture of a family (``hsc``/``paper``, ``cpu``, ``tiny``) for a cutout size."""
    found = _family(family)
    if found is None:
        raise ConfigError(
            f"unknown model family '{family}'; choose one of "
            f"{', '.join([*FAMILIES, *FAMILY_ALIASES])}"
        )
    return found.config(image_size, channels)


def get_preset(name: str, channels: int | None = None) -> ModelConfig:
    """Return the named preset, optionally for another band count: a fixed preset (``hsc96``,
    ``cpu32``, ...) or a family with a size (``cpu64``, ``paper100``: see :func:`derive_config`)."""
    if name in PRESETS:
        config = PRESETS[name]
        if channels is not None and channels != config.channels:
            config = dataclasses.replace(config, channels=channels)
        config.validate()
        return config
    sized = re.fullmatch(r"([a-z]+)(\d+)", name)
    if sized and _family(sized[1]) is not None:
        return derive_config(sized[1], int(sized[2]), 3 if channels is None else channels)
    if _family(name) is not None or name == AUTO:
        raise ConfigError(
            f"preset '{name}' needs an image size: name one such as '{name}64', or train on a "
            "data set, which gives it"
        )
    raise ConfigError(
        f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}, or a family with a size "
        f"({', '.join(FAMILIES)}: e.g. cpu64)"
    )


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
    """The preset for cutouts of this size: the fixed one made for it (32: cpu32, 48: cpu48, 96:
    hsc96; the smallest when several fit), else the ``cpu`` family's (``cpu<size>``)."""
    matching = sorted(
        (n for n, c in PRESETS.items() if c.image_size == image_size and n not in TEST_PRESETS),
        key=lambda name: PRESETS[name].latent_dim,
    )
    if matching:
        return matching[0]
    return derive_config("cpu", image_size).name


def check_preset_name(preset: str) -> None:
    """Raise a ConfigError unless ``preset`` is something ``--preset`` takes (before any data is
    read): ``auto``, a family, a fixed preset or a family with a size."""
    if preset != AUTO and _family(preset) is None:
        get_preset(preset)


def preset_for_data(preset: str, shape, source="the data set") -> ModelConfig:
    """The architecture ``--preset`` names for cutouts of ``shape`` (height, width, bands).

    ``auto`` is :func:`preset_for_size`; a family (``cpu``, ``hsc``/``paper``, ``tiny``) is its
    architecture for this size; a fixed or sized name must be made for this size.
    """
    height, width, channels = (int(n) for n in shape)
    if height != width:
        raise ConfigError(f"{source} holds {height}x{width} cutouts; the models take square ones")
    if preset == AUTO:
        preset = preset_for_size(height)
    if _family(preset) is not None:
        return derive_config(preset, height, channels)
    config = get_preset(preset, channels=channels)
    if config.image_size != height:
        raise ConfigError(
            f"preset {preset} is for {config.image_size}x{config.image_size} cutouts but "
            f"{source} holds {height}x{width}; choose a matching preset, a family "
            f"({', '.join(FAMILIES)}) or '{AUTO}', or simulate/ingest at that size"
        )
    return config


# DiffAugment transforms of the critic's input (tfanomaly.models.augment applies them).
AUGMENTATIONS = ("flip", "translation")


def parse_augment(text) -> tuple[str, ...]:
    """``"flip,translation"`` (or a sequence, or ``""``/``"none"``) -> a checked tuple."""
    names = text.split(",") if isinstance(text, str) else list(text or ())
    names = tuple(n.strip() for n in names if n.strip() and n.strip() != "none")
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown or len(set(names)) < len(names):
        raise ConfigError(
            f"augment '{','.join(names)}': choose from {', '.join(AUGMENTATIONS)} (each once) or "
            "none"
        )
    return names
