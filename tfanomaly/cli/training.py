"""Commands that train and calibrate a run: the ``train`` group (``gan``, ``encoder``, ``cae``) and
``calibrate``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.options import (
    build_config,
    config_options,
    data_option,
    out_option,
    quiet_option,
)
from tfanomaly.pipelines.config import (
    CaeTrainConfig,
    CalibrateConfig,
    EncoderTrainConfig,
    GanTrainConfig,
)


@click.group()
def train():
    """Train the models: gan (the WGAN-GP), encoder (the inversion's start), cae (residuals)."""


@train.command("gan")
@click.argument("data", type=click.Path(file_okay=False))
@out_option("run_dir", "Run folder (checkpoints, logs, samples); rerun the command to resume.")
@config_options(GanTrainConfig)
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def train_gan(data, run_dir, quiet, **options):
    """Train a WGAN-GP on the ingested data set DATA: n_critic critic steps (each on its own real
    batch) per generator step, gradient penalty, Adam 1e-4 (0.5, 0.9) for both networks.

    Checkpoints (with optimizer state) every --checkpoint-every steps; after a crash or kill the
    same command resumes from the last one. TensorBoard logs in OUT/logs, sample grids in
    OUT/samples, the final networks in OUT/generator.keras and OUT/critic.keras. Runs under
    MirroredStrategy when several GPUs are visible and MultiWorkerMirroredStrategy when TF_CONFIG
    is set.
    """
    from tfanomaly.pipelines.train import train_gan as run_train_gan

    config = build_config(GanTrainConfig, options)
    summary = run_train_gan(data, run_dir, config, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained {summary['steps']} generator steps -> {summary['generator']}, "
        f"{summary['critic']}; samples {summary['samples']} (real: {summary['real']})"
    )


@train.command("encoder")
@click.argument("run_dir", type=click.Path(file_okay=False))
@data_option("Data set to train on (default: the one the GAN was trained on).")
@config_options(EncoderTrainConfig)
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def train_encoder(run_dir, data, quiet, **options):
    """Train the encoder E: x -> z of the run RUN_DIR through its frozen generator and critic, on
    the inversion loss (1 - lam) * sum|x - G(E(x))| + lam * sum|f(x) - f(G(E(x)))| (f-AnoGAN izi_f).

    Checkpoints and resume as for `train gan`; writes RUN_DIR/encoder.keras and reconstruction
    grids RUN_DIR/samples/encoder-step-*.png (each real row above its reconstruction), then
    calibrates the default score on the same data (RUN_DIR/calibration.npz; see `calibrate`).
    """
    from tfanomaly.pipelines.train import train_encoder as run_train_encoder

    config = build_config(EncoderTrainConfig, options)
    summary = run_train_encoder(run_dir, config, data_dir=data, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained the encoder for {summary['steps']} steps -> {summary['encoder']}; "
        f"reconstructions {summary['reconstructions']}; calibration {summary['calibration']}"
    )


@click.command("calibrate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@data_option("Ingested data set to calibrate on (default: the run's training data).")
@config_options(CalibrateConfig, exclude=("inversion",))
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def calibrate_command(run_dir, data, quiet, **options):
    """Fit the default score's statistics for the run RUN_DIR (`train encoder` does it already).

    On --fit-size cutouts: the scatter of the PSF-smoothed residual at each brightness of the
    reconstruction, per band (sky noise where the stamp is dark, model misfit where it is
    bright), a Gaussian (probabilistic PCA) of the critic's features, a PCA model of the cutouts
    with the scatter of its residual through the 1-px and the 3-px filter, and reference sets of
    morphology parameters and of the GAN residual's shape descriptors. The default score
    combines the robust z of log of its --terms (the residual against the PCA model at both
    filters, weighed 0 and stored; the morphology density, in asinh units; the residual-shape
    density) with the --weights, by their softmax (--combine). A term that carries no information on
    these cutouts (constant, a handful of values as on quantised images, or NaN for many) weighs
    0, with a line that says why; `inspect RUN` shows the weights.
    Rerun it to calibrate on other data or with other settings; score again afterwards.
    """
    from tfanomaly.pipelines.calibrate import calibrate

    config = build_config(CalibrateConfig, options)
    calibrate(run_dir, data, config, progress=not quiet, echo=click.echo)


@train.command("cae")
@click.argument("scores", type=click.Path(file_okay=False, exists=True))
@out_option("cae_dir", "CAE run folder (checkpoints, cae.keras); rerun to resume.")
@config_options(CaeTrainConfig)
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def train_cae_command(scores, cae_dir, quiet, **options):
    """Train the convolutional autoencoder on image cubes of the scored catalog SCORES (score
    with --store-images): per-band standardisation -> 5x5 stride-2 convolutions -> Dense 64
    latent -> mirrored decoder with a linear output, MSE, Adam 1e-3. Checkpoints and resume as
    for `train gan`. At the end the CAE must reconstruct its images better than their mean image
    does, with outputs that vary, or nothing is written (--no-check writes it anyway); then map
    and cluster with `tfanomaly embed`."""
    from tfanomaly.pipelines.characterise import train_cae

    config = build_config(CaeTrainConfig, options)
    summary = train_cae(scores, cae_dir, config, progress=not quiet, echo=click.echo)
    check = summary["check"]
    click.echo(
        f"trained the CAE on {summary['objects']} objects for {summary['steps']} steps "
        f"-> {summary['cae']}; reconstruction MSE {check['mse']:.3g}, {check['ratio']:.2f}x the "
        "mean image's"
    )
