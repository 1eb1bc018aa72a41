"""The run folder: the one place that names its files (run.json, the networks' .keras files, the
calibration), records the stages trained in it, and loads what a later stage needs from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from tfanomaly.data.manifest import MANIFEST, DatasetInfo
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError
from tfanomaly.models import cae, critic, encoder, generator  # noqa: F401  (registers the classes)
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.loop import Ledger, entry_job, stage_options

RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.npz"
# The networks a run folder holds, and the command that writes each.
NETWORKS = {
    "generator": "train gan",
    "critic": "train gan",
    "generator_raw": "train gan --ema-decay",
    "encoder": "train encoder",
    "cae": "train cae",
}


def network_path(run_dir, name: str) -> Path:
    """Where a run folder keeps the network ``name`` (``generator``, ``critic``, ...)."""
    if name not in NETWORKS:
        raise ValueError(f"no network '{name}' in a run folder")
    return Path(run_dir) / f"{name}.keras"


def require_networks(run_dir, *names: str) -> None:
    """Raise a ConfigError naming the command to run when a run folder lacks one of ``names``."""
    for name in names:
        path = network_path(run_dir, name)
        if not path.exists():
            raise ConfigError(f"{run_dir}: no {path.name}; run `tfanomaly {NETWORKS[name]}` first")


def load_network(run_dir, name: str) -> keras.Model:
    """A run folder's trained network (see :func:`require_networks` for a missing one)."""
    require_networks(run_dir, name)
    return keras.models.load_model(network_path(run_dir, name), compile=False)


def record_stage(run_dir, stage: str, config, extra: dict | None = None) -> None:
    """Add a stage's options to run.json; on resume refuse options that would not continue it."""
    run_dir = Path(run_dir)

    def refusal(changed: list[str]) -> str:
        return (
            f"{run_dir}: its {stage} was trained with other options ({', '.join(changed)}); "
            "resume it with the same ones or use a new --out folder"
        )

    ledger = Ledger(run_dir / RUN_FILE, stage_options(config), section=stage)
    ledger.resume("refuse", refusal=refusal, extra=extra, fields={"steps": config.steps})


def stage_record(run: dict, stage: str) -> dict:
    """The options a run's ``stage`` was trained with (as :func:`record_stage` wrote them)."""
    return entry_job(run[stage])


def data_record(info: DatasetInfo) -> dict:
    """How run.json names the data set a run was trained on."""
    return {
        "path": str(info.path.resolve()),
        "count": info.count,
        "shape": list(info.shape),
        "bands": list(info.bands),
    }


def run_stretch(run: dict) -> LuptonStretch:
    """The stretch of the data set a run was trained on, for the graph to apply to raw flux: the
    one run.json's data record names, else the one that data set's manifest records (``ingest
    --stretch``), else the paper's."""
    data = run.get("data") or {}
    if data.get("stretch"):
        return LuptonStretch.from_config(data["stretch"])
    path = data.get("path")
    if path and (Path(path) / MANIFEST).exists():
        return DatasetInfo.from_folder(path).stretch
    return LuptonStretch()


def load_run(run_dir) -> dict:
    """The run.json of a training run folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a tfanomaly run folder (no {RUN_FILE})")
    return json.loads(path.read_text())


def is_run(path) -> bool:
    return bool(path) and (Path(str(path)) / RUN_FILE).exists()


def check_run_takes(run: dict, info: DatasetInfo) -> None:
    """Refuse a data set whose cutouts the run's models cannot take (size or band count)."""
    expected = (run["model"]["image_size"],) * 2 + (run["model"]["channels"],)
    if tuple(info.shape) != expected:
        raise ConfigError(
            f"{info.path} holds {info.shape} cutouts but the run's models take {expected}"
        )


def load_inverter(
    run_dir, config: InversionConfig | None = None, calibrated: bool = True
) -> LatentInverter:
    """A LatentInverter from a run folder's generator, critic and encoder, and (``calibrated``)
    its calibration.npz, which the default score needs."""
    run_dir = Path(run_dir)
    networks = [load_network(run_dir, name) for name in ("generator", "critic", "encoder")]
    calibration = None
    if calibrated:
        path = run_dir / CALIBRATION_FILE
        if not path.exists():
            raise ConfigError(
                f"{run_dir}: no {CALIBRATION_FILE} (the default score's noise and feature "
                f"statistics); run `tfanomaly calibrate {run_dir}`"
            )
        calibration = Calibration.load(path)
    return LatentInverter(*networks, config, calibration)
