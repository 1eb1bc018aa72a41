"""The export stage: a trained run folder and its scored reference catalog become the next version
of the SavedModel for TensorFlow Serving (tfanomaly.serving.saved_model), with the run's manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfanomaly.data.manifest import MANIFEST, DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.cae import cae_encoder
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config import ExportConfig
from tfanomaly.pipelines.run import load_inverter, load_network, load_run, run_stretch, stage_record
from tfanomaly.results.catalog import STATS_FILE, read_statistics
from tfanomaly.serving.saved_model import AnomalyScorer, save_version
from tfanomaly.serving.signatures import PLANES_SIGNATURE, SIGNATURES


def build_scorer(
    run_dir, *, scores_dir=None, steps: int | None = None, cae_dir=None
) -> tuple[AnomalyScorer, dict]:
    """The in-graph scorer of a trained run (raw flux in, the catalog's scores and their sigma
    values out): what ``export`` saves and ``tfanomaly.load_run`` scores arrays with.

    The sigma statistics and the inversion settings come from ``scores_dir/score_stats.json`` (a
    scored reference catalog; default ``run_dir/scores``), so that its scores mean what the
    catalog's mean (``steps`` overrides the number of inversion steps). With ``cae_dir`` (a
    ``train cae`` folder) the scorer also embeds. A run calibrated with variance and mask planes
    also scores with them (the mask bits left out are those of the data set the run was trained
    on, read from its manifest).

    Returns:
        the scorer, and what it was made from: ``run`` (run.json), ``stats`` and ``stats_path``,
        ``inversion``, ``shape`` (H, W, C), ``masked_bits``, ``cae_dir``.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    stats_path = Path(scores_dir) / STATS_FILE if scores_dir else run_dir / "scores" / STATS_FILE
    if not stats_path.exists():
        raise ConfigError(
            f"no {stats_path}: score a reference catalog first (`tfanomaly score`) and pass its "
            "folder with --scores, so that served sigma values mean the same as the catalog's"
        )
    stats = read_statistics(stats_path)
    saved = json.loads(stats_path.read_text())
    inversion = InversionConfig(**(saved.get("inversion") or {}))
    if steps is not None:
        inversion = dataclasses.replace(inversion, steps=steps)
    inverter = load_inverter(run_dir, inversion)
    model = run["model"]
    shape = (model["image_size"], model["image_size"], model["channels"])
    cae, cae_images = None, "residuals"
    if cae_dir is not None:
        cae = cae_encoder(load_network(cae_dir, "cae"))
        cae_images = stage_record(load_run(cae_dir), "cae")["images"]
    masked_bits = _masked_bits(run, run_dir) if inverter.calibration.planes else None
    scorer = AnomalyScorer(
        inverter,
        stats,
        shape,
        stretch=run_stretch(run),
        cae_encoder=cae,
        cae_images=cae_images,
        masked_bits=masked_bits,
    )
    return scorer, {
        "run": run,
        "stats": stats,
        "stats_path": stats_path,
        "inversion": inversion,
        "shape": shape,
        "masked_bits": masked_bits,
        "cae_dir": cae_dir,
    }


def export(
    run_dir, model_base, config: ExportConfig | None = None, *, scores_dir=None, cae_dir=None
) -> dict:
    """Write the run as ``model_base/<config.name>/<next version>/`` (a SavedModel) and return its
    path.

    The scorer is :func:`build_scorer`'s (sigma statistics and inversion settings from
    ``scores_dir/score_stats.json``, default ``run_dir/scores``; ``config.steps`` overrides the
    number of inversion steps). The run's manifest (preset, training steps, data set, score statistics,
    inversion settings) is stored as the asset ``assets/tfanomaly.json``. With ``cae_dir`` (a
    ``train cae`` folder) the model also gets the ``embed`` signature. A run calibrated with
    variance and mask planes also gets ``score_planes`` (flux, variance and mask bits in; the
    mask bits left out are those of the data set the run was trained on, read from its manifest).
    """
    config = config or ExportConfig()
    name = config.name
    run_dir = Path(run_dir)
    scorer, made = build_scorer(run_dir, scores_dir=scores_dir, steps=config.steps, cae_dir=cae_dir)
    run, shape, inversion = made["run"], made["shape"], made["inversion"]
    calibration = scorer.inverter.calibration
    signatures = list(SIGNATURES) + (["embed"] if cae_dir is not None else [])
    signatures += [PLANES_SIGNATURE] if scorer.planes else []
    manifest = {
        "name": name,
        "run": str(run_dir.resolve()),
        "model": run["model"],
        "training": {k: run[k] for k in ("gan", "encoder") if k in run},
        "data": run.get("data"),
        "score_statistics": made["stats"],
        "statistics_from": str(made["stats_path"].resolve()),
        "inversion": inversion.to_dict(),
        "default_score": {
            "settings": calibration.settings.to_dict(),
            "calibration": calibration.info,
            # The weights in the graph: a term found degenerate on the calibration set weighs 0.
            **calibration.weights_record(),
        },
        "stretch": scorer.stretch.get_config(),
        "input": {
            "shape": ["N", *shape],
            "dtype": "float32",
            "units": "raw flux, bands " + ",".join(run.get("data", {}).get("bands", [])),
        },
        "signatures": signatures,
        "planes": (
            {"planes": list(scorer.planes), "masked_bits": made["masked_bits"]}
            if scorer.planes
            else None
        ),
        "cae": str(Path(cae_dir).resolve()) if cae_dir is not None else None,
    }
    model_dir = Path(model_base) / name
    version = save_version(scorer, model_dir, manifest)
    return {"path": model_dir / str(version), "version": version, "manifest": manifest}


def _masked_bits(run: dict, run_dir: Path) -> int:
    """The mask bits the run's data set leaves out (its manifest's ``masked_value``): what the
    ``score_planes`` signature leaves out of the mask planes it is sent."""
    path = Path((run.get("data") or {}).get("path") or "")
    if not (path / MANIFEST).exists():
        raise ConfigError(
            f"{run_dir} was calibrated with variance/mask planes, but its data set {path} (which "
            "says which mask bits to leave out) is not there: export where the data set is, or "
            "calibrate again with --no-planes"
        )
    return DatasetInfo.from_folder(path).masked_bits
