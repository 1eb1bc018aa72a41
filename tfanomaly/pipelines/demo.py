"""The demo: the whole pipeline on a small simulated survey, sized for a laptop CPU.

Each stage writes into one output folder and the demo says where each result is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tfanomaly.data.dataset import load_dataset
from tfanomaly.data.manifest import MANIFEST
from tfanomaly.models.config import preset_for_size
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.characterise import embed, train_cae
from tfanomaly.pipelines.config import (
    CaeTrainConfig,
    CatalogConfig,
    DemoConfig,
    EmbedConfig,
    EncoderTrainConfig,
    GanTrainConfig,
    IngestConfig,
    ScoreConfig,
)
from tfanomaly.pipelines.evaluate import evaluate, format_table
from tfanomaly.pipelines.export import export
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.inspect import describe, save_gallery
from tfanomaly.pipelines.score import score
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_encoder, train_gan
from tfanomaly.results.grouping import format_grouping
from tfanomaly.results.report import build_report
from tfanomaly.simulate.config import SurveyConfig


def run_demo(out_dir, config: DemoConfig, progress: bool = True, echo: Callable = print) -> dict:
    """Simulate -> ingest -> read back through tf.data -> gallery -> train the WGAN-GP -> train
    the encoder (and calibrate the default score) -> score -> evaluate against the classical
    baselines -> export a SavedModel for TF Serving -> train the CAE on the residuals of the most
    anomalous objects -> UMAP + clusters of their residual shapes and z -> the HTML report. Returns the output paths.

    Stages whose output already exists complete (survey file, data set manifest, results) are not
    redone, and training and scoring resume, so an interrupted demo continues where it stopped.
    """
    preset = preset_for_size(config.size)  # before any work: fails for a size no model takes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    survey = out_dir / "survey.h5"
    data = out_dir / "tfrecords"
    gallery = out_dir / "gallery.png"
    run = out_dir / "run"
    scores = out_dir / "scores"

    if survey.exists():
        echo(f"[1/11] simulate: reusing {survey}")
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
            f"[1/11] simulate: {summary['n_objects']} cutouts ({summary['n_anomalies']} anomalies), "
            f"{summary['stamps_per_second']:.0f} stamps/s -> {survey}"
        )

    if (data / MANIFEST).exists():
        echo(f"[2/11] ingest: reusing {data}")
    else:
        manifest = ingest(
            survey, data, IngestConfig(shard_size=config.shard_size), progress=progress
        )
        echo(
            f"[2/11] ingest: {manifest['count']} cutouts in {len(manifest['shards'])} shards -> {data}"
        )

    started = time.perf_counter()
    n_read = sum(int(b["image"].shape[0]) for b in load_dataset(data, batch_size=256))
    seconds = time.perf_counter() - started
    rows = save_gallery(data, gallery)
    info = describe(data)
    echo(
        f"[3/11] tf.data: read and stretched {n_read} cutouts in {seconds:.2f} s "
        f"({n_read / seconds:.0f} images/s); labels: "
        + ", ".join(f"{k} {n}" for k, n in info["labels"].items())
    )
    echo(f"      gallery (one row per kind: {', '.join(rows)}) -> {gallery}")

    echo(f"[4/11] train gan: preset {preset}, {config.gan_steps} generator steps -> {run}")
    trained = train_gan(
        data,
        run,
        GanTrainConfig(preset=preset, steps=config.gan_steps, seed=config.seed, check=config.check),
        progress=progress,
        echo=echo,
    )
    echo(f"      samples {trained['samples']} next to real cutouts {trained['real']}")
    echo(
        f"      networks {trained['generator']}, {trained['critic']}; "
        f"TensorBoard: tensorboard --logdir {run / 'logs'}"
    )

    echo(f"[5/11] train encoder: {config.encoder_steps} steps -> {run / 'encoder.keras'}")
    encoded = train_encoder(
        run,
        EncoderTrainConfig(steps=config.encoder_steps, seed=config.seed, check=config.check),
        progress=progress,
        echo=echo,
    )
    echo(
        f"      reconstructions (real rows above their reconstructions) {encoded['reconstructions']}"
    )

    if (scores / "results.h5").exists():
        echo(f"[6/11] score: reusing {scores}")
    else:
        echo(f"[6/11] score: encoder + {config.inversion_steps} inversion steps -> {scores}")
        written = score(
            run,
            data,
            scores,
            ScoreConfig(
                inversion=InversionConfig(steps=config.inversion_steps),
                store_images=True,
                catalog=CatalogConfig(select_sigma=3.0),
            ),
            progress=progress,
            echo=echo,
        )
        echo(
            f"      {written['count']} cutouts at {written['images_per_second']:.0f}/s; "
            f"catalog {written['catalog']}; {written['n_selected']} objects above 3 sigma "
            f"-> {written['selection']}"
        )

    report = evaluate(scores)
    echo(f"[7/11] evaluate -> {scores / 'evaluation.json'}")
    echo(format_table(report))

    models = out_dir / "models"
    if (models / "tfanomaly").exists():
        echo(f"[8/11] export: reusing {models / 'tfanomaly'}")
    else:
        exported = export(run, models, scores_dir=scores)
        echo(f"[8/11] export: SavedModel for TF Serving -> {exported['path']}")
    echo(
        f"      serve it: tfanomaly serve {models}; then score through it: "
        f"tfanomaly score {data} --server localhost:8500 --out {out_dir / 'served_scores'}"
    )
    cae = out_dir / "cae"
    echo(f"[9/11] train cae: the paper's CAE on the residuals of the high-anomaly sample -> {cae}")
    trained = train_cae(
        scores,
        cae,
        CaeTrainConfig(steps=config.cae_steps, seed=config.seed, check=config.check),
        progress=progress,
        echo=echo,
    )
    check = trained["check"]
    echo(
        f"      reconstructs its {trained['objects']} residual images with MSE "
        f"{check['mse']:.3g}, {check['ratio']:.2f}x the mean image's"
    )
    embedded = embed(scores, EmbedConfig(seed=config.seed), progress=progress, echo=echo)
    echo(
        f"[10/11] embed: UMAP + HDBSCAN of {embedded['objects']} objects in {embedded['space']}, "
        f"{embedded['clusters']} cluster(s) -> {embedded['embedding']}; catalog updated"
    )
    if "grouping" in embedded:
        echo(f"      {format_grouping(embedded['grouping'])}")
    shown = build_report(scores, out_dir / "report.html")
    echo(f"[11/11] report: {shown['path']} ({shown['bytes'] / 1e6:.1f} MB; open it in a browser)")

    echo(f"done: outputs are in {out_dir}/")
    echo(f"label the anomalies in a browser, the ranking learns: tfanomaly explore {scores}")
    return {
        "survey": survey,
        "data": data,
        "gallery": gallery,
        "run": run,
        "scores": scores,
        "evaluation": report,
        "report": out_dir / "report.html",
    }
