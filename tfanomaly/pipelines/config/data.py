"""Options of the stages that make and read data: ``simulate``, ``ingest``, and the demo."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tfanomaly.data.planes import DEFAULT_MASK_BITS
from tfanomaly.data.resize import RESIZE_METHODS
from tfanomaly.data.stretch import STRETCH_MODES
from tfanomaly.errors import ConfigError
from tfanomaly.pipelines.config._shared import (
    NAN_POLICIES,
    STRETCH_SAMPLE,
    check_field,
    split_names,
)


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
    check: bool = check_field()  # the collapse check at the end of each training stage
    cae_steps: int = field(default=300, metadata={"help": "CAE training steps."})
