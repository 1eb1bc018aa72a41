"""Options of scoring and what follows it: ``score`` (and its catalogs), ``export``, the serving
client, ``evaluate``, ``serve``."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfanomaly.errors import ConfigError
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config._shared import CATALOG_FORMAT_NAMES


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
