"""Commands that train and calibrate a run: the ``train`` group (``gan``, ``encoder``, ``cae``) and
``calibrate``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import NO_CHECK_HELP, _friendly_errors, _uses_tensorflow
from tfanomaly.models.config import parse_augment
from tfanomaly.models.score_config import (
    LINEAR_COMPONENTS_RANGE,
    SCORE_COMBINES,
    ScoreSettings,
    format_term_weights,
    parse_term_weights,
)
from tfanomaly.pipelines.config import (
    CUBES,
    PRECISIONS,
    SELECTION_HELP,
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
@click.option(
    "--out",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder (checkpoints, logs, samples); rerun the command to resume.",
)
@click.option(
    "--preset",
    default=GanTrainConfig.preset,
    show_default=True,
    help="Architecture: auto (the preset made for the data's cutout size, else the cpu family), "
    "a family derived for any size and band count (cpu; hsc or paper: the paper's widths; tiny: "
    "tests), a fixed preset (hsc96: the paper, 96 px; cpu32, cpu48; tiny16) or a family with a "
    "size (cpu64).",
)
@click.option(
    "--steps",
    default=GanTrainConfig.steps,
    show_default=True,
    help="Generator iterations in all.",
)
@click.option(
    "--batch-size",
    default=GanTrainConfig.batch_size,
    show_default=True,
    help="Images per critic step.",
)
@click.option(
    "--n-critic",
    default=GanTrainConfig.n_critic,
    show_default=True,
    help="Critic updates per G update.",
)
@click.option(
    "--gp-weight",
    default=GanTrainConfig.gp_weight,
    show_default=True,
    help="Gradient-penalty weight.",
)
@click.option(
    "--learning-rate",
    default=GanTrainConfig.learning_rate,
    show_default=True,
    help="Adam lr of both nets.",
)
@click.option(
    "--checkpoint-every",
    default=GanTrainConfig.checkpoint_every,
    show_default=True,
    help="Generator steps between checkpoints and sample grids.",
)
@click.option(
    "--seed",
    default=GanTrainConfig.seed,
    show_default=True,
    help="Seed of z, penalty and shuffle.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=GanTrainConfig.precision,
    show_default=True,
    help="Mixed precision: bf16 pays off only for wide models (see README).",
)
@click.option(
    "--ema-decay",
    default=GanTrainConfig.ema_decay,
    show_default=True,
    help="Moving average of the generator's weights (e.g. 0.999; 0 = off); see README.",
)
@click.option(
    "--augment",
    default=",".join(GanTrainConfig.augment) or "none",
    show_default=True,
    help="DiffAugment of every image the critic sees in training: flip, translation, both "
    "(flip,translation) or none (the paper); see README.",
)
@click.option(
    "--contrastive",
    default=GanTrainConfig.contrastive,
    show_default=True,
    help="Weight of a contrastive term in the critic's loss (InfoNCE between two flips/shifts of "
    "each real image; 0 = off, the paper); see README.",
)
@click.option("--no-check", is_flag=True, help=NO_CHECK_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def train_gan(
    data,
    run_dir,
    preset,
    steps,
    batch_size,
    n_critic,
    gp_weight,
    learning_rate,
    checkpoint_every,
    seed,
    precision,
    ema_decay,
    augment,
    contrastive,
    no_check,
    quiet,
):
    """Train a WGAN-GP on the ingested data set DATA: n_critic critic steps (each on its own real
    batch) per generator step, gradient penalty, Adam 1e-4 (0.5, 0.9) for both networks.

    Checkpoints (with optimizer state) every --checkpoint-every steps; after a crash or kill the
    same command resumes from the last one. TensorBoard logs in OUT/logs, sample grids in
    OUT/samples, the final networks in OUT/generator.keras and OUT/critic.keras. Runs under
    MirroredStrategy when several GPUs are visible and MultiWorkerMirroredStrategy when TF_CONFIG
    is set.
    """
    from tfanomaly.pipelines.train import train_gan as run_train_gan

    config = GanTrainConfig(
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        n_critic=n_critic,
        gp_weight=gp_weight,
        learning_rate=learning_rate,
        checkpoint_every=checkpoint_every,
        seed=seed,
        precision=precision,
        ema_decay=ema_decay,
        augment=parse_augment(augment),
        contrastive=contrastive,
        check=not no_check,
    )
    summary = run_train_gan(data, run_dir, config, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained {summary['steps']} generator steps -> {summary['generator']}, "
        f"{summary['critic']}; samples {summary['samples']} (real: {summary['real']})"
    )


@train.command("encoder")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Data set to train on (default: the one the GAN was trained on).",
)
@click.option(
    "--steps",
    default=EncoderTrainConfig.steps,
    show_default=True,
    help="Encoder updates in all.",
)
@click.option(
    "--batch-size",
    default=EncoderTrainConfig.batch_size,
    show_default=True,
    help="Images per update.",
)
@click.option(
    "--learning-rate",
    default=EncoderTrainConfig.learning_rate,
    show_default=True,
    help="Adam learning rate.",
)
@click.option(
    "--lam",
    default=EncoderTrainConfig.lam,
    show_default=True,
    help="Weight of the critic-feature term (as in scoring).",
)
@click.option(
    "--checkpoint-every",
    default=EncoderTrainConfig.checkpoint_every,
    show_default=True,
    help="Steps between checkpoints and reconstruction grids.",
)
@click.option(
    "--seed",
    default=EncoderTrainConfig.seed,
    show_default=True,
    help="Seed of the data shuffle.",
)
@click.option("--no-check", is_flag=True, help=NO_CHECK_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def train_encoder(
    run_dir, data, steps, batch_size, learning_rate, lam, checkpoint_every, seed, no_check, quiet
):
    """Train the encoder E: x -> z of the run RUN_DIR through its frozen generator and critic, on
    the inversion loss (1 - lam) * sum|x - G(E(x))| + lam * sum|f(x) - f(G(E(x)))| (f-AnoGAN izi_f).

    Checkpoints and resume as for `train gan`; writes RUN_DIR/encoder.keras and reconstruction
    grids RUN_DIR/samples/encoder-step-*.png (each real row above its reconstruction), then
    calibrates the default score on the same data (RUN_DIR/calibration.npz; see `calibrate`).
    """
    from tfanomaly.pipelines.train import train_encoder as run_train_encoder

    config = EncoderTrainConfig(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lam=lam,
        checkpoint_every=checkpoint_every,
        seed=seed,
        check=not no_check,
    )
    summary = run_train_encoder(run_dir, config, data_dir=data, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained the encoder for {summary['steps']} steps -> {summary['encoder']}; "
        f"reconstructions {summary['reconstructions']}; calibration {summary['calibration']}"
    )


@click.command("calibrate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Ingested data set to calibrate on (default: the run's training data).",
)
@click.option(
    "--fit-size",
    default=CalibrateConfig.fit_size,
    show_default=True,
    help="Cutouts to calibrate on.",
)
@click.option(
    "--smooth-sigma",
    default=ScoreSettings.smooth_sigma,
    show_default=True,
    help="Width (px) of the Gaussian matched filter on the residual.",
)
@click.option(
    "--top-fraction",
    default=ScoreSettings.top_fraction,
    show_default=True,
    help="The residual score is the mean chi^2 of this top fraction of pixels.",
)
@click.option(
    "--components",
    default=ScoreSettings.n_components,
    show_default=True,
    help="Principal components of the critic features' Gaussian.",
)
@click.option(
    "--terms",
    default=",".join(ScoreSettings.terms),
    show_default=True,
    help="Terms the default score combines, comma-separated, from residual (the GAN's "
    "noise-aware residual), feature (critic-feature density), linear (the same residual against "
    "a PCA model of the data), extended (that linear residual through a 3-px filter, over the top "
    "30% of the pixels: faint extended light), morphology (k-NN density of morphology "
    "parameters).",
)
@click.option(
    "--combine",
    type=click.Choice(SCORE_COMBINES),
    default=ScoreSettings.combine,
    show_default=True,
    help="How the terms' robust z-scores combine: their mean or their maximum.",
)
@click.option(
    "--weights",
    default=format_term_weights(ScoreSettings.term_weights),
    show_default=True,
    help="Weights of the terms' z in the mean, TERM=WEIGHT comma-separated (a term not named "
    "weighs 1; normalised over --terms), or 'equal'. Not for --terms residual,feature, which "
    "--feature-weight weighs.",
)
@click.option(
    "--feature-weight",
    default=ScoreSettings.feature_weight,
    show_default=True,
    help="With --terms residual,feature only: the feature term's weight (residual: 1 - it).",
)
@click.option(
    "--robust-iterations",
    default=ScoreSettings.robust_iterations,
    show_default=True,
    help="Steps of the PCA model's fit to each cutout from least squares towards a robust "
    "(Cauchy M-estimate) fit, for the linear and extended terms (0: plain least squares): pixels "
    "it cannot fit, such as a cosmic ray or a trail, stay in the residual instead of bending the "
    "model.",
)
@click.option(
    "--linear-components",
    default=ScoreSettings.linear_components,
    show_default=True,
    help="Principal components of the PCA model of the linear and extended terms; 0: in "
    f"proportion to the cutout's area ({ScoreSettings().linear_components_for(32, 32)} at 32 px, "
    f"{ScoreSettings().linear_components_for(48, 48)} at 48 px, at most "
    f"{LINEAR_COMPONENTS_RANGE[1]}).",
)
@click.option(
    "--seed",
    default=CalibrateConfig.seed,
    show_default=True,
    help="Seed of the cutouts drawn.",
)
@click.option(
    "--planes/--no-planes",
    default=True,
    show_default=True,
    help="Use the data set's variance and mask planes where it has them (README \"Variance and "
    'mask planes in the score"); --no-planes calibrates on the brightness-binned scatter only.',
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def calibrate_command(
    run_dir,
    data,
    fit_size,
    smooth_sigma,
    top_fraction,
    components,
    terms,
    combine,
    weights,
    feature_weight,
    robust_iterations,
    linear_components,
    seed,
    planes,
    quiet,
):
    """Fit the default score's statistics for the run RUN_DIR (`train encoder` does it already).

    On --fit-size cutouts: the scatter of the PSF-smoothed residual at each brightness of the
    reconstruction, per band (sky noise where the stamp is dark, model misfit where it is
    bright), a Gaussian (probabilistic PCA) of the critic's features, a PCA model of the cutouts
    with the scatter of its residual through the 1-px and the 3-px filter, and a reference set of
    morphology parameters. The default score is the --weights mean of the robust z of log of its
    --terms (critic features, the residual against the PCA model at both filters, morphology
    density).
    Rerun it to calibrate on other data or with other settings; score again afterwards.
    """
    from tfanomaly.pipelines.calibrate import calibrate

    settings = ScoreSettings(
        smooth_sigma=smooth_sigma,
        top_fraction=top_fraction,
        n_components=components,
        feature_weight=feature_weight,
        terms=tuple(t.strip() for t in terms.split(",") if t.strip()),
        combine=combine,
        term_weights=parse_term_weights(weights),
        robust_iterations=robust_iterations,
        linear_components=linear_components,
    )
    config = CalibrateConfig(fit_size=fit_size, seed=seed, settings=settings, planes=planes)
    calibrate(
        run_dir,
        data,
        config,
        progress=not quiet,
        echo=click.echo,
    )


@train.command("cae")
@click.argument("scores", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--out",
    "cae_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="CAE run folder (checkpoints, cae.keras); rerun to resume.",
)
@click.option(
    "--select",
    "selection",
    default=CaeTrainConfig.selection,
    show_default=True,
    help=f"Objects to train on: {SELECTION_HELP}.",
)
@click.option(
    "--select-key",
    default=CaeTrainConfig.select_key,
    show_default=True,
    help="Results column that auto, sigma: and top: rank by (the paper: disc_scores_sigma).",
)
@click.option(
    "--images",
    type=click.Choice(CUBES),
    default=CaeTrainConfig.images,
    show_default=True,
    help="Residual images (the paper) or the real images.",
)
@click.option(
    "--steps",
    default=CaeTrainConfig.steps,
    show_default=True,
    help="Training steps.",
)
@click.option(
    "--batch-size",
    default=CaeTrainConfig.batch_size,
    show_default=True,
    help="Images per step.",
)
@click.option(
    "--learning-rate",
    default=CaeTrainConfig.learning_rate,
    show_default=True,
    help="Adam learning rate.",
)
@click.option(
    "--checkpoint-every",
    default=CaeTrainConfig.checkpoint_every,
    show_default=True,
    help="Steps per checkpoint.",
)
@click.option(
    "--seed",
    default=CaeTrainConfig.seed,
    show_default=True,
    help="Seed of the shuffle.",
)
@click.option("--no-check", is_flag=True, help=NO_CHECK_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def train_cae_command(
    scores,
    cae_dir,
    selection,
    select_key,
    images,
    steps,
    batch_size,
    learning_rate,
    checkpoint_every,
    seed,
    no_check,
    quiet,
):
    """Train the convolutional autoencoder on image cubes of the scored catalog SCORES (score
    with --store-images): per-band standardisation -> 5x5 stride-2 convolutions -> Dense 64
    latent -> mirrored decoder with a linear output, MSE, Adam 1e-3. Checkpoints and resume as
    for `train gan`. At the end the CAE must reconstruct its images better than their mean image
    does, with outputs that vary, or nothing is written (--no-check writes it anyway); then map
    and cluster with `tfanomaly embed`."""
    from tfanomaly.pipelines.characterise import train_cae

    config = CaeTrainConfig(
        selection=selection,
        select_key=select_key,
        images=images,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        checkpoint_every=checkpoint_every,
        seed=seed,
        check=not no_check,
    )
    summary = train_cae(scores, cae_dir, config, progress=not quiet, echo=click.echo)
    check = summary["check"]
    click.echo(
        f"trained the CAE on {summary['objects']} objects for {summary['steps']} steps "
        f"-> {summary['cae']}; reconstruction MSE {check['mse']:.3g}, {check['ratio']:.2f}x the "
        "mean image's"
    )
