"""What the stage configs share: names of choices, help texts used by several commands, and checks."""

from __future__ import annotations

from dataclasses import field

from tfanomaly.errors import ConfigError
from tfanomaly.results.spaces import SPACES

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


def check_field():
    """The ``check`` field of every training stage's config: the collapse check at the end of
    training, switched off on the command line with ``--no-check``."""
    return field(
        default=True, metadata={"help": NO_CHECK_HELP, "flag": "--no-check", "is_flag": True}
    )
