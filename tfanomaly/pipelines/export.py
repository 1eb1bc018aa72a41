"""The export stage: a trained run folder and its scored reference catalog become the next version
of the SavedModel for TensorFlow Serving (tfanomaly.serving.saved_model), with the run's manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfanomaly.errors import ConfigError
from tfanomaly.models.cae import cae_encoder
from tfanomaly.models.config import InversionConfig
from tfanomaly.pipelines.run import load_inverter, load_network, load_run, run_stretch, stage_record
from tfanomaly.results.catalog import STATS_FILE, read_statistics
from tfanomaly.serving.saved_model import (
    MODEL_NAME,
    SIGNATURES,
    AnomalyScorer,
    save_version,
)


def export(run_dir, model_base, *, scores_dir=None, name: str = MODEL_NAME,
           steps: int | None = None, cae_dir=None) -> dict:  # fmt: skip
    """Write the run as ``model_base/name/<next version>/`` (a SavedModel) and return its path.

    The sigma statistics come from ``scores_dir/score_stats.json`` (a scored catalog; default:
    ``run_dir/scores`` if it exists), and so do the inversion settings, so that served scores
    mean what the catalog's mean (``steps`` overrides the number of inversion steps). The run's
    manifest (preset, training steps, data set, score statistics, inversion settings) is stored
    as the asset ``assets/tfanomaly.json``. With ``cae_dir`` (a ``train cae`` folder) the model
    also gets the ``embed`` signature.
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
    scorer = AnomalyScorer(inverter, stats, shape, stretch=run_stretch(run), cae_encoder=cae,
                           cae_images=cae_images)  # fmt: skip
    manifest = {
        "name": name,
        "run": str(run_dir.resolve()),
        "model": model,
        "training": {k: run[k] for k in ("gan", "encoder") if k in run},
        "data": run.get("data"),
        "score_statistics": stats,
        "statistics_from": str(stats_path.resolve()),
        "inversion": inversion.to_dict(),
        "default_score": {"settings": inverter.calibration.settings.to_dict(),
                          "calibration": inverter.calibration.info},
        "stretch": scorer.stretch.get_config(),
        "input": {"shape": ["N", *shape], "dtype": "float32", "units": "raw flux, bands "
                  + ",".join(run.get("data", {}).get("bands", []))},
        "signatures": list(SIGNATURES) + (["embed"] if cae is not None else []),
        "cae": str(Path(cae_dir).resolve()) if cae_dir is not None else None,
    }  # fmt: skip
    model_dir = Path(model_base) / name
    version = save_version(scorer, model_dir, manifest)
    return {"path": model_dir / str(version), "version": version, "manifest": manifest}
