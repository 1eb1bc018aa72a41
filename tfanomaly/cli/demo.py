"""The ``demo`` command: the whole pipeline on a small simulated survey."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.options import build_config, config_options, quiet_option
from tfanomaly.pipelines.config import DemoConfig


@click.command()
@click.option(
    "--out",
    default="demo_run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for everything the demo writes.",
)
@config_options(DemoConfig)
@quiet_option("No progress bars.")
@_friendly_errors
@_uses_tensorflow
def demo(out, quiet, **options):
    """Run the pipeline end to end on a small simulated survey, and say where each output is.

    Stages: simulate -> ingest -> read back with tf.data and write a gallery -> train the WGAN-GP
    (preset chosen by --size: 32 -> cpu32, 48 -> cpu48, 96 -> hsc96) -> train the encoder and
    calibrate -> score (encoder only: the default score and the paper's) -> evaluate against five
    classical baselines -> export a SavedModel for TF Serving -> train the paper's CAE on the
    residuals of the 500 most anomalous objects (checked against the mean image) -> UMAP +
    HDBSCAN of their residual shapes and z, with how well the map groups the anomaly kinds ->
    the HTML report. 7-19 minutes on 2 CPU cores with the defaults, by CPU (see the docs'
    performance page). A rerun reuses finished stages and resumes training.
    """
    from tfanomaly.pipelines.demo import run_demo

    config = build_config(DemoConfig, options)
    run_demo(out, config, progress=not quiet, echo=click.echo)
