"""The ``demo`` command: the whole pipeline on a small simulated survey."""

from __future__ import annotations

import click

from tfanomaly.cli._common import NO_CHECK_HELP, _friendly_errors, _uses_tensorflow
from tfanomaly.pipelines.config import DemoConfig


@click.command()
@click.option(
    "--out",
    default="demo_run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for everything the demo writes.",
)
@click.option(
    "-n",
    "--n-objects",
    default=DemoConfig.n_objects,
    show_default=True,
    help="Simulated cutouts.",
)
@click.option(
    "--size",
    default=DemoConfig.size,
    show_default=True,
    help="Cutout side in pixels (CPU preset).",
)
@click.option(
    "--seed",
    default=DemoConfig.seed,
    show_default=True,
    help="Random seed of survey and training.",
)
@click.option(
    "--gan-steps",
    default=DemoConfig.gan_steps,
    show_default=True,
    help="WGAN-GP generator steps.",
)
@click.option(
    "--encoder-steps",
    default=DemoConfig.encoder_steps,
    show_default=True,
    help="Encoder training steps.",
)
@click.option(
    "--cae-steps",
    default=DemoConfig.cae_steps,
    show_default=True,
    help="CAE training steps.",
)
@click.option("--no-check", is_flag=True, help=NO_CHECK_HELP)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
@_uses_tensorflow
def demo(out, n_objects, size, seed, gan_steps, encoder_steps, cae_steps, no_check, quiet):
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

    config = DemoConfig(
        n_objects=n_objects,
        size=size,
        seed=seed,
        gan_steps=gan_steps,
        encoder_steps=encoder_steps,
        cae_steps=cae_steps,
        check=not no_check,
    )
    run_demo(out, config, progress=not quiet, echo=click.echo)
