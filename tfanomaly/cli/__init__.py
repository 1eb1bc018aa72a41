"""The ``tfanomaly`` command line: parses options and calls pipeline functions, nothing more.

Errors the user can cause come out as one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from tfanomaly.models.config import ScoreSettings


def _friendly_errors(command):
    """Turn project errors into one clear line and an exit code instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfanomaly.errors import TfanomalyError

        try:
            return command(*args, **kwargs)
        except TfanomalyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: nothing finished was lost; rerun the command to resume", err=True
            )
            sys.exit(130)

    return wrapper


def _uses_tensorflow(command):
    """Import TensorFlow quietly before a command that needs it."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfanomaly._tf import import_tensorflow_quietly

        import_tensorflow_quietly()
        return command(*args, **kwargs)

    return wrapper


def _bands(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(b.strip() for b in value.split(",") if b.strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tfanomaly")
def main():
    """Find anomalous galaxies in imaging surveys with a WGAN-GP (Storey-Fisher et al. 2021).

    Typical flow: simulate (or bring your own cutouts) -> ingest -> train gan -> train encoder ->
    score -> evaluate (simulated surveys) -> train cae -> embed -> export -> serve.
    `tfanomaly demo` runs the core of it on a small simulated survey.
    """


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("-n", "--n-objects", default=2000, show_default=True, help="Cutouts to simulate.")
@click.option(
    "--size",
    default=96,
    show_default=True,
    help="Cutout side in pixels (96 = the paper's; 32 or 48 for CPU presets).",
)
@click.option(
    "--anomaly-fraction", default=0.02, show_default=True, help="Fraction of injected anomalies."
)
@click.option(
    "--kinds",
    default="all",
    show_default=True,
    help="Comma-separated anomaly kinds to inject (see the list below), or 'all'.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same bits.")
@click.option(
    "--substructure/--smooth",
    default=True,
    show_default=True,
    help="Galaxies with star-forming knots, spiral arms and dust lanes, blends and slightly "
    "elliptical PSFs; --smooth: plain bulge + disk galaxies and round PSFs (the same galaxies, "
    "anomalies and noise otherwise).",
)
@click.option(
    "-j", "--workers", default=1, show_default=True, help="Worker processes (output is identical)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
def simulate(out, n_objects, size, anomaly_fraction, kinds, seed, substructure, workers, quiet):
    """Simulate an HSC-like gri survey with labelled anomalies into the HDF5 file OUT.

    Normal galaxies are bulge + disk GalSim profiles at 20 < i < 20.5 with HSC seeing, pixel scale
    (0.168"/px) and Wide-depth sky noise, in flux units (zero point 27); extended disks have
    star-forming knots, spiral arms or dust lanes, and some cutouts a fainter blended galaxy. The
    file uses the paper's layout (images, idxs, object_ids, ra, dec) plus `labels` (0 = normal,
    k = kind_names[k]).

    Anomaly kinds: merger, tidal_feature, star_forming_clump, lensed_arc, satellite_trail,
    diffraction_spikes, cosmic_rays, bad_column.
    """
    from tfanomaly.pipelines.simulate import ANOMALY_KINDS, SurveyConfig, simulate_survey

    chosen = ANOMALY_KINDS if kinds == "all" else tuple(k.strip() for k in kinds.split(","))
    config = SurveyConfig(
        n_objects=n_objects,
        size=size,
        anomaly_fraction=anomaly_fraction,
        kinds=chosen,
        seed=seed,
    )
    if not substructure:
        config = config.smooth()
    summary = simulate_survey(out, config, workers=workers, progress=not quiet)
    click.echo(
        f"wrote {summary['n_objects']} cutouts ({summary['n_anomalies']} anomalies) to {out} "
        f"in {summary['seconds']:.1f} s ({summary['stamps_per_second']:.0f} stamps/s)"
    )


@main.command()
@click.argument("source", type=click.Path(exists=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--shard-size", default=2048, show_default=True, help="Cutouts per TFRecord shard.")
@click.option(
    "--nan",
    "nan_policy",
    type=click.Choice(["fill", "drop", "error"]),
    default="fill",
    show_default=True,
    help="NaN/inf pixels (HSC masks): fill with --fill-value, drop the cutout, or stop.",
)
@click.option("--fill-value", default=0.0, show_default=True, help="Flux put into NaN pixels.")
@click.option(
    "--bands",
    default=None,
    help="Band names in channel order, e.g. g,r,i (default: from the file, else g,r,i for 3).",
)
@click.option(
    "--object-ids",
    "object_ids_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="For a .npy SOURCE: a .npy of uint64 object ids (default 0..N-1).",
)
@click.option("--overwrite", is_flag=True, help="Replace a complete data set already in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def ingest(
    source, out, shard_size, nan_policy, fill_value, bands, object_ids_path, overwrite, quiet
):
    """Convert cutouts in SOURCE into TFRecord shards + manifest.json in the folder OUT.

    SOURCE is an HDF5 file in the paper's layout (`images` (N,H,W,C) float32 flux, `object_ids`,
    optional `idxs`, `ra`, `dec`, `labels`), a .npy (N,H,W,C) or .npz with the same keys, or a
    folder of FITS cutouts named <object_id>.fits (one extension per band, EXTNAME or FILTER = the
    band) or <object_id>_<band>.fits (one file per band). An interrupted ingest resumes when rerun.
    """
    from tfanomaly.pipelines.ingest import IngestConfig
    from tfanomaly.pipelines.ingest import ingest as run_ingest

    config = IngestConfig(shard_size=shard_size, nan_policy=nan_policy, fill_value=fill_value)
    manifest = run_ingest(
        source,
        out,
        config,
        bands=_bands(bands),
        object_ids_path=object_ids_path,
        overwrite=overwrite,
        progress=not quiet,
    )
    nan = manifest["ingest"]["nan"]
    click.echo(
        f"wrote {manifest['count']} cutouts {tuple(manifest['shape'])} bands "
        f"{','.join(manifest['bands'])} in {len(manifest['shards'])} shard(s) to {out}"
    )
    if nan["objects_with_nonfinite"]:
        click.echo(
            f"NaN/inf: {nan['objects_with_nonfinite']} cutout(s) affected, "
            f"{nan['pixels_filled']} pixel(s) filled, {nan['objects_dropped']} dropped"
        )


@main.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--gallery", type=click.Path(dir_okay=False), help="Write a PNG gallery here.")
@click.option("--verify", "check", is_flag=True, help="Re-hash every shard against the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_friendly_errors
@_uses_tensorflow
def inspect(data, gallery, check, as_json):
    """Summarise the ingested data set DATA; optionally verify checksums and write a gallery.

    The gallery has one row per anomaly kind for a labelled (simulated) survey, stretched as the
    models see the images (Lupton, R=i G=r B=g).
    """
    from tfanomaly.pipelines.inspect import describe, save_gallery

    summary = describe(data, check=check)
    if gallery:
        summary["gallery"] = {"path": gallery, "rows": save_gallery(data, gallery)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"{summary['path']}: {summary['count']} cutouts {tuple(summary['shape'])}, bands "
        f"{','.join(summary['bands'])}, {summary['shards']} shard(s), "
        f"{summary['bytes'] / 1e6:.1f} MB, from {summary['source']}"
    )
    if summary["labels"]:
        click.echo("labels: " + ", ".join(f"{k} {n}" for k, n in summary["labels"].items()))
    nan = summary["nan"]
    click.echo(
        f"NaN policy {nan['policy']}: {nan['objects_with_nonfinite']} cutout(s) had NaN/inf, "
        f"{nan['objects_dropped']} dropped"
    )
    if check:
        bad = summary["corrupt_shards"]
        click.echo("checksums: all shards intact" if not bad else f"checksums: CORRUPT {bad}")
        if bad:
            sys.exit(1)
    if gallery:
        click.echo(f"gallery: {gallery} (rows: {', '.join(summary['gallery']['rows'])})")


@main.group()
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
    default="cpu32",
    show_default=True,
    help="Model preset: hsc96 (the paper, 96 px), cpu32, cpu48 (CPU), tiny16 (tests).",
)
@click.option("--steps", default=2000, show_default=True, help="Generator iterations in all.")
@click.option("--batch-size", default=32, show_default=True, help="Images per critic step.")
@click.option("--n-critic", default=5, show_default=True, help="Critic updates per G update.")
@click.option("--gp-weight", default=10.0, show_default=True, help="Gradient-penalty weight.")
@click.option("--learning-rate", default=1e-4, show_default=True, help="Adam lr of both nets.")
@click.option(
    "--checkpoint-every",
    default=100,
    show_default=True,
    help="Generator steps between checkpoints and sample grids.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of z, penalty and shuffle.")
@click.option(
    "--precision",
    type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]),
    default="float32",
    show_default=True,
    help="Mixed precision: bf16 pays off only for wide models (see README).",
)
@click.option(
    "--ema-decay",
    default=0.0,
    show_default=True,
    help="Moving average of the generator's weights (e.g. 0.999; 0 = off); see README.",
)
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
    from tfanomaly.pipelines.train import GanTrainConfig
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
@click.option("--steps", default=1000, show_default=True, help="Encoder updates in all.")
@click.option("--batch-size", default=32, show_default=True, help="Images per update.")
@click.option("--learning-rate", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option(
    "--lam",
    default=0.3,
    show_default=True,
    help="Weight of the critic-feature term (as in scoring).",
)
@click.option(
    "--checkpoint-every",
    default=100,
    show_default=True,
    help="Steps between checkpoints and reconstruction grids.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the data shuffle.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def train_encoder(
    run_dir, data, steps, batch_size, learning_rate, lam, checkpoint_every, seed, quiet
):
    """Train the encoder E: x -> z of the run RUN_DIR through its frozen generator and critic, on
    the inversion loss (1 - lam) * sum|x - G(E(x))| + lam * sum|f(x) - f(G(E(x)))| (f-AnoGAN izi_f).

    Checkpoints and resume as for `train gan`; writes RUN_DIR/encoder.keras and reconstruction
    grids RUN_DIR/samples/encoder-step-*.png (each real row above its reconstruction), then
    calibrates the default score on the same data (RUN_DIR/calibration.npz; see `calibrate`).
    """
    from tfanomaly.pipelines.train import EncoderTrainConfig
    from tfanomaly.pipelines.train import train_encoder as run_train_encoder

    config = EncoderTrainConfig(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lam=lam,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    summary = run_train_encoder(run_dir, config, data_dir=data, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained the encoder for {summary['steps']} steps -> {summary['encoder']}; "
        f"reconstructions {summary['reconstructions']}; calibration {summary['calibration']}"
    )


@main.command("calibrate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Ingested data set to calibrate on (default: the run's training data).",
)
@click.option("--fit-size", default=5000, show_default=True, help="Cutouts to calibrate on.")
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
    "--feature-weight",
    default=ScoreSettings.feature_weight,
    show_default=True,
    help="Weight of the feature term in the default score (residual: 1 - it).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the cutouts drawn.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def calibrate_command(run_dir, data, fit_size, smooth_sigma, top_fraction, components,
                      feature_weight, seed, quiet):  # fmt: skip
    """Fit the default score's statistics for the run RUN_DIR (`train encoder` does it already).

    On --fit-size cutouts: the scatter of the PSF-smoothed residual at each brightness of the
    reconstruction, per band (sky noise where the stamp is dark, model misfit where it is bright),
    and a Gaussian (probabilistic PCA) of the critic's features. The default score is then
    (1 - w) z(log residual chi^2 of the top pixels) + w z(log feature Mahalanobis distance). Rerun
    it to calibrate on other data or with other settings; score again afterwards.
    """
    from tfanomaly.pipelines.calibrate import calibrate

    settings = ScoreSettings(smooth_sigma=smooth_sigma, top_fraction=top_fraction,
                             n_components=components, feature_weight=feature_weight)  # fmt: skip
    calibrate(run_dir, data, settings=settings, fit_size=fit_size, seed=seed,
              progress=not quiet, echo=click.echo)  # fmt: skip


def _finish_note(written: dict) -> str:
    lines = [
        f"results {written['results']}",
        f"statistics {written['stats']}",
        f"catalog {written['catalog']}",
    ]
    if "selection" in written:
        lines.append(f"selection {written['selection']} ({written['n_selected']} objects)")
    return "\n".join(lines)


_catalog_options = [
    click.option(
        "--catalog-format",
        type=click.Choice(["fits", "csv", "parquet"]),
        default="fits",
        show_default=True,
        help="Format of catalog.<format>.",
    ),
    click.option(
        "--select-sigma",
        type=float,
        default=None,
        help="Also write catalog_sigma<S> with the objects above S sigma (paper: 3).",
    ),
    click.option(
        "--select-key",
        default="score_normalized",
        show_default=True,
        help="Catalog column the selection cuts on (the paper: discriminator_score_normalized).",
    ),
    click.option(
        "--reference",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="score_stats.json of an earlier catalog: sigma values against it (new "
        "images) instead of against this catalog.",
    ),
]


def _with_catalog_options(command):
    for option in reversed(_catalog_options):
        command = option(command)
    return command


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
    default="sigma:3",
    show_default=True,
    help="Objects to train on: sigma:S (above S sigma, the paper's high-anomaly "
    "sample), all, or ids:FILE (one object id per line).",
)
@click.option(
    "--select-key",
    default="scores_sigma",
    show_default=True,
    help="Results column the sigma cut uses (the paper: disc_scores_sigma).",
)
@click.option(
    "--images",
    type=click.Choice(["residuals", "reals"]),
    default="residuals",
    show_default=True,
    help="Residual images (the paper) or the real images.",
)
@click.option("--steps", default=1000, show_default=True, help="Training steps.")
@click.option("--batch-size", default=32, show_default=True, help="Images per step.")
@click.option("--learning-rate", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--checkpoint-every", default=100, show_default=True, help="Steps per checkpoint.")
@click.option("--seed", default=0, show_default=True, help="Seed of the shuffle.")
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
    quiet,
):
    """Train the convolutional autoencoder on image cubes of the scored catalog SCORES (score
    with --store-images): 5x5 stride-2 convolutions -> Dense 64 latent -> mirrored decoder, MSE,
    Adam 1e-3. Checkpoints and resume as for `train gan`."""
    from tfanomaly.pipelines.characterise import CaeTrainConfig, train_cae

    config = CaeTrainConfig(
        selection=selection,
        select_key=select_key,
        images=images,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    summary = train_cae(scores, cae_dir, config, progress=not quiet, echo=click.echo)
    click.echo(
        f"trained the CAE on {summary['objects']} objects for {summary['steps']} steps "
        f"-> {summary['cae']}"
    )


@main.command("embed")
@click.argument("cae_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Scored catalog to embed (default: the one the CAE was trained on).",
)
@click.option(
    "--select",
    "selection",
    default=None,
    help="Objects to embed (default: those the CAE was trained on).",
)
@click.option("--n-neighbors", default=5, show_default=True, help="UMAP n_neighbors.")
@click.option("--min-dist", default=0.1, show_default=True, help="UMAP min_dist.")
@click.option("--min-cluster-size", default=5, show_default=True, help="HDBSCAN cluster size.")
@click.option("--seed", default=0, show_default=True, help="UMAP seed (reproducible).")
@_friendly_errors
@_uses_tensorflow
def embed_command(cae_dir, scores, selection, n_neighbors, min_dist, min_cluster_size, seed):
    """CAE latents -> UMAP 2-D (seeded) -> HDBSCAN clusters. Writes CAE_DIR/embedding.h5
    (latents, idxs, object_ids, umap_x, umap_y, cluster) and adds umap_x, umap_y and cluster to
    the scored catalogs (NaN / -1 for objects not embedded)."""
    from tfanomaly.pipelines.characterise import embed

    result = embed(
        cae_dir,
        scores,
        selection=selection,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        min_cluster_size=min_cluster_size,
        seed=seed,
    )
    click.echo(
        f"embedded {result['objects']} objects in {result['clusters']} cluster(s) -> "
        f"{result['embedding']}; catalogs updated: " + ", ".join(str(p) for p in result["catalogs"])
    )


@main.command("score")
@click.argument("data", type=click.Path(file_okay=False))
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Trained run folder (generator, critic, encoder): score in this process.",
)
@click.option(
    "--server",
    default=None,
    help="HOST:PORT of TF Serving (or `tfanomaly serve`) gRPC: score remotely.",
)
@click.option(
    "--rest",
    default=None,
    help="URL of TF Serving's REST API, e.g. http://localhost:8501: score remotely.",
)
@click.option("--model", default="tfanomaly", show_default=True, help="Served model name.")
@click.option(
    "--signature",
    default="serving_default",
    show_default=True,
    help="Served signature (score_fast: encoder only).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for results.h5, score_stats.json and the catalogs.",
)
@click.option(
    "--steps",
    default=0,
    show_default=True,
    help="Adam steps of the latent inversion after the encoder (0 = encoder only; the paper: 10).",
)
@click.option("--learning-rate", default=0.1, show_default=True, help="Inversion Adam lr.")
@click.option("--beta1", default=0.4, show_default=True, help="Inversion Adam beta1.")
@click.option("--beta2", default=0.9, show_default=True, help="Inversion Adam beta2.")
@click.option(
    "--lam",
    default=0.3,
    show_default=True,
    help="Weight of the feature term: score = (1-lam) pixel + lam feature.",
)
@click.option("--batch-size", default=128, show_default=True, help="Cutouts per batch/request.")
@click.option(
    "--store-images",
    is_flag=True,
    help="Also store reals, reconstructed and residuals cubes (large for big surveys).",
)
@click.option(
    "--shard", default=None, help="i/n: score only part i of n (merge with merge-scores)."
)
@_with_catalog_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly_errors
@_uses_tensorflow
def score_command(
    data,
    run_dir,
    server,
    rest,
    model,
    signature,
    out,
    steps,
    learning_rate,
    beta1,
    beta2,
    lam,
    batch_size,
    store_images,
    shard,
    catalog_format,
    select_sigma,
    select_key,
    reference,
    quiet,
):
    """Score every cutout of the data set DATA, with a trained run (--run) or a served model
    (--server for gRPC, --rest for REST).

    Each image is inverted into the generator's latent space (start E(x), then --steps Adam steps
    on z, in one compiled graph). The default score (catalog column score_normalized, the sort
    order) adds a noise-aware residual term (PSF-smoothed residual over its calibrated scatter,
    top 3% of pixels) and a critic-feature density term (see `calibrate`). The paper's scores come
    too: gen (sum |x - G(z)|), disc (sum |f(x) - f(G(z))|) and anomaly ((1-lam) gen + lam disc).
    Every score also in sigma units against the catalog. A served model applies its own inversion
    settings. Interrupted runs resume when rerun.
    """
    from tfanomaly.errors import ConfigError
    from tfanomaly.models.inverter import InversionConfig
    from tfanomaly.pipelines.score import ScoreConfig, parse_shard, score
    from tfanomaly.serving.client import GrpcClient, RestClient

    if sum(x is not None for x in (run_dir, server, rest)) != 1:
        raise ConfigError("give exactly one of --run RUN_DIR, --server HOST:PORT or --rest URL")
    client = None
    if server:
        client = GrpcClient(server, model=model, signature=signature)
    elif rest:
        client = RestClient(rest, model=model, signature=signature)
    config = ScoreConfig(
        inversion=InversionConfig(
            steps=steps, learning_rate=learning_rate, beta_1=beta1, beta_2=beta2, lam=lam
        ),
        batch_size=batch_size,
        store_images=store_images,
        shard=parse_shard(shard),
    )
    written = score(
        run_dir,
        data,
        out,
        config,
        client=client,
        reference=reference,
        catalog_format=f".{catalog_format}",
        select_sigma=select_sigma,
        select_key=select_key,
        progress=not quiet,
        echo=click.echo,
    )
    click.echo(f"scored {written['count']} cutouts ({written['images_per_second']:.0f}/s)")
    click.echo(_finish_note(written))


@main.command("serve")
@click.argument("model_base", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (0.0.0.0 exposes the server to the network).",
)
@click.option("--grpc-port", default=8500, show_default=True, help="gRPC port (0: any free).")
@click.option("--rest-port", default=8501, show_default=True, help="REST port (0: any free).")
@_friendly_errors
@_uses_tensorflow
def serve_command(model_base, host, grpc_port, rest_port):
    """Serve the newest version of each model under MODEL_BASE with TensorFlow Serving's API:
    gRPC PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus), and REST
    POST /v1/models/<name>:predict (row "instances" or columnar "inputs"), GET /v1/models/<name>
    and GET /v1/models/<name>/metadata.

    For laptops and tests; production runs the official tensorflow/serving image (see serving/).
    """
    from tfanomaly.serving.local import LocalServer

    server = LocalServer(model_base, host=host, grpc_port=grpc_port, rest_port=rest_port).start()
    models = ", ".join(f"{n} v{max(v)}" for n, v in server.registry.servables.items())
    click.echo(
        f"serving {models}: gRPC {host}:{server.grpc_port}, REST "
        f"http://{host}:{server.rest_port} (Ctrl-C stops)"
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()


@main.command("merge-scores")
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Merged folder.")
@_with_catalog_options
@_friendly_errors
def merge_scores(parts, out, catalog_format, select_sigma, select_key, reference):
    """Join the result folders PARTS of `score --shard i/n` jobs into one catalog, with sigma
    values over the union (image cubes stay in the part folders)."""
    from tfanomaly.results.catalog import merge_results

    written = merge_results(
        parts,
        out,
        reference=reference,
        catalog_format=f".{catalog_format}",
        select_sigma=select_sigma,
        select_key=select_key,
    )
    click.echo(_finish_note(written))


@main.command("evaluate")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Data set for the baseline (default: the one that was scored).",
)
@click.option("--no-baseline", is_flag=True, help="Skip the isolation-forest baseline.")
@click.option("--seed", default=0, show_default=True, help="Seed of the baseline.")
@_friendly_errors
@_uses_tensorflow
def evaluate_command(results, data, no_baseline, seed):
    """Measure how the scores in the folder RESULTS find the labelled anomalies of a simulated
    survey: AUROC, average precision, precision@k (k = number of anomalies) and precision@1%, for
    each score, overall and per anomaly kind, against an isolation forest on PCA-50 features of
    the stretched images (the Astronomaly baseline), computed in the same run. Writes
    RESULTS/evaluation.json and evaluation.csv.
    """
    from tfanomaly.pipelines.evaluate import evaluate, format_table

    report = evaluate(results, data_dir=data, baseline=not no_baseline, seed=seed)
    click.echo(format_table(report))


@main.command("report")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--cae",
    "cae_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A CAE folder with embedding.h5 (from `embed`): adds the UMAP map and clusters.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML file to write (default RESULTS/report.html).",
)
@click.option("--top", "top_n", default=24, show_default=True, help="Objects per gallery.")
@click.option(
    "--thumb-size",
    default=32,
    show_default=True,
    help="Pixels per thumbnail panel (cutouts are downsized to this).",
)
@click.option("--sigma-cut", default=3.0, show_default=True, help="Cut marked on histograms.")
@_friendly_errors
@_uses_tensorflow
def report_command(results, cae_dir, out_path, top_n, thumb_size, sigma_cut):
    """Write a self-contained HTML report (opens from disk, no server, no network) of the scored
    catalog RESULTS (scored with --store-images): the UMAP map coloured by the default score's sigma
    with cluster outlines and hover thumbnails (real | reconstruction | residual, id, ra/dec,
    scores), galleries of the top objects by each score and per cluster, score histograms with
    the sigma cut, and the evaluation table when RESULTS/evaluation.json exists."""
    from tfanomaly.results.report import build_report

    shown = build_report(
        results, out_path, cae_dir=cae_dir, top_n=top_n, thumb_size=thumb_size, sigma_cut=sigma_cut
    )
    click.echo(
        f"report {shown['path']} ({shown['bytes'] / 1e6:.1f} MB): {shown['map_points']} "
        f"map points, {shown['gallery_images']} gallery images"
    )


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--out",
    "model_base",
    required=True,
    type=click.Path(file_okay=False),
    help="Model base folder; the model goes to OUT/<name>/<next version>/.",
)
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of a scored reference catalog (its score_stats.json sets the sigma "
    "values; default RUN_DIR/scores).",
)
@click.option("--name", default="tfanomaly", show_default=True, help="Model name for TF Serving.")
@click.option(
    "--steps",
    type=int,
    default=None,
    help="Inversion steps of serving_default (default: those of the reference catalog).",
)
@click.option(
    "--cae",
    "cae_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A `train cae` folder: adds the embed signature (CAE latents).",
)
@_friendly_errors
@_uses_tensorflow
def export_command(run_dir, model_base, scores, name, steps, cae_dir):
    """Export the run RUN_DIR as a SavedModel that TensorFlow Serving loads.

    Signatures (all take raw flux cutouts, float32 (N, H, W, C); the Lupton stretch runs in the
    graph): serving_default (anomaly/gen/disc scores, their sigma values, reconstruction),
    score_fast (the same, encoder only), reconstruct (stretched image, reconstruction, residual,
    z), generate (z -> images) and, with --cae, embed (CAE latents). Each export is a new version;
    the run's manifest is stored as the asset assets/tfanomaly.json.
    """
    from tfanomaly.pipelines.export import export

    written = export(
        run_dir, model_base, scores_dir=scores, name=name, steps=steps, cae_dir=cae_dir
    )
    click.echo(f"exported version {written['version']} -> {written['path']}")


@main.command()
@click.option(
    "--out",
    default="demo_run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for everything the demo writes.",
)
@click.option("-n", "--n-objects", default=3000, show_default=True, help="Simulated cutouts.")
@click.option("--size", default=32, show_default=True, help="Cutout side in pixels (CPU preset).")
@click.option("--seed", default=0, show_default=True, help="Random seed of survey and training.")
@click.option("--gan-steps", default=1000, show_default=True, help="WGAN-GP generator steps.")
@click.option("--encoder-steps", default=600, show_default=True, help="Encoder training steps.")
@click.option("--cae-steps", default=300, show_default=True, help="CAE training steps.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly_errors
@_uses_tensorflow
def demo(out, n_objects, size, seed, gan_steps, encoder_steps, cae_steps, quiet):
    """Run the pipeline end to end on a small simulated survey, and say where each output is.

    Stages: simulate -> ingest -> read back with tf.data and write a gallery -> train the WGAN-GP
    (preset chosen by --size: 32 -> cpu32, 48 -> cpu48, 96 -> hsc96) -> train the encoder ->
    score (10-step inversion) -> evaluate against the isolation-forest baseline -> export a
    SavedModel for TF Serving -> train the CAE on the residuals of the 500 most anomalous objects
    -> UMAP + HDBSCAN -> the HTML report. About 7 minutes on 2 CPU cores with the defaults. A rerun reuses
    finished stages and resumes training.
    """
    from tfanomaly.pipelines.demo import DemoConfig, run_demo

    config = DemoConfig(
        n_objects=n_objects, size=size, seed=seed, gan_steps=gan_steps, encoder_steps=encoder_steps
    )
    run_demo(out, config, progress=not quiet, echo=click.echo)


if __name__ == "__main__":
    main()
