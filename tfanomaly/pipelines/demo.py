"""The demo: the whole pipeline on a small simulated survey, sized for a laptop CPU.

Each stage writes into one output folder and the demo says where each result is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfanomaly.models.config import preset_for_size
from tfanomaly.pipelines.dataset import load_dataset
from tfanomaly.pipelines.ingest import MANIFEST, IngestConfig, ingest
from tfanomaly.pipelines.inspect import describe, save_gallery
from tfanomaly.pipelines.simulate import SurveyConfig, simulate_survey
from tfanomaly.pipelines.train import GanTrainConfig, train_gan


@dataclass(frozen=True)
class DemoConfig:
    """The demo's survey: small enough for a 2-core CPU."""

    n_objects: int = 3000
    size: int = 32
    seed: int = 0
    anomaly_fraction: float = 0.02
    shard_size: int = 1024
    gan_steps: int = 600  # ~3 minutes for cpu32 on 2 cores


def run_demo(out_dir, config: DemoConfig, progress: bool = True, echo: Callable = print) -> dict:
    """Simulate -> ingest -> read back through tf.data -> gallery -> train the WGAN-GP.
    Returns the output paths.

    Stages whose output already exists complete (survey file, data set manifest) are not redone,
    and training resumes from its last checkpoint, so an interrupted demo continues where it
    stopped.
    """
    preset = preset_for_size(config.size)  # fail before any work for a size without a preset
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    survey = out_dir / "survey.h5"
    data = out_dir / "tfrecords"
    gallery = out_dir / "gallery.png"
    run = out_dir / "run"

    if survey.exists():
        echo(f"[1/4] simulate: reusing {survey}")
    else:
        summary = simulate_survey(
            survey,
            SurveyConfig(
                n_objects=config.n_objects,
                size=config.size,
                anomaly_fraction=config.anomaly_fraction,
                seed=config.seed,
            ),
            progress=progress,
        )
        echo(
            f"[1/4] simulate: {summary['n_objects']} cutouts ({summary['n_anomalies']} anomalies), "
            f"{summary['stamps_per_second']:.0f} stamps/s -> {survey}"
        )

    if (data / MANIFEST).exists():
        echo(f"[2/4] ingest: reusing {data}")
    else:
        manifest = ingest(
            survey, data, IngestConfig(shard_size=config.shard_size), progress=progress
        )
        echo(
            f"[2/4] ingest: {manifest['count']} cutouts in {len(manifest['shards'])} shards -> {data}"
        )

    started = time.perf_counter()
    n_read = sum(int(b["image"].shape[0]) for b in load_dataset(data, batch_size=256))
    seconds = time.perf_counter() - started
    rows = save_gallery(data, gallery)
    info = describe(data)
    echo(
        f"[3/4] tf.data: read and stretched {n_read} cutouts in {seconds:.2f} s "
        f"({n_read / seconds:.0f} images/s); labels: "
        + ", ".join(f"{k} {n}" for k, n in info["labels"].items())
    )
    echo(f"      gallery (one row per kind: {', '.join(rows)}) -> {gallery}")

    echo(f"[4/4] train gan: preset {preset}, {config.gan_steps} generator steps -> {run}")
    trained = train_gan(
        data,
        run,
        GanTrainConfig(preset=preset, steps=config.gan_steps, seed=config.seed),
        progress=progress,
        echo=echo,
    )
    echo(f"      samples {trained['samples']} next to real cutouts {trained['real']}")
    echo(f"      networks {trained['generator']}, {trained['critic']}; "
         f"TensorBoard: tensorboard --logdir {run / 'logs'}")  # fmt: skip
    echo(f"done: outputs are in {out_dir}/")
    return {"survey": survey, "data": data, "gallery": gallery, "run": run}
