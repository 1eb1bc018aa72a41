"""Commands that score a data set and read the scores: ``score``, ``merge-scores``, ``evaluate``,
``embed``, ``report`` and ``rerank``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config import (
    CATALOG_FORMAT_NAMES,
    FEATURE_SPACES,
    SELECTION_HELP,
    SPACE_HELP,
    CatalogConfig,
    ClientConfig,
    EmbedConfig,
    EvaluateConfig,
    ReportConfig,
    RerankConfig,
    ScoreConfig,
)
from tfanomaly.results.grouping import format_grouping
from tfanomaly.results.spaces import SPACES


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
        type=click.Choice(CATALOG_FORMAT_NAMES),
        default=CatalogConfig.catalog_format,
        show_default=True,
        help="Format of catalog.<format>.",
    ),
    click.option(
        "--select-sigma",
        type=float,
        default=CatalogConfig.select_sigma,
        help="Also write catalog_sigma<S> with the objects above S sigma (paper: 3).",
    ),
    click.option(
        "--select-key",
        default=CatalogConfig.select_key,
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


@click.command("score")
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
@click.option("--model", default=ClientConfig.model, show_default=True, help="Served model name.")
@click.option(
    "--signature",
    default=ClientConfig.signature,
    show_default=True,
    help="Served signature (score_fast: encoder only; score_planes: also sends the data set's "
    "variance and mask planes, for the export of a run calibrated with them).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for results.h5, score_stats.json and the catalogs.",
)
@click.option(
    "--steps",
    default=InversionConfig.steps,
    show_default=True,
    help="Adam steps of the latent inversion after the encoder (0 = encoder only; the paper: 10).",
)
@click.option(
    "--learning-rate",
    default=InversionConfig.learning_rate,
    show_default=True,
    help="Inversion Adam lr.",
)
@click.option(
    "--beta1", default=InversionConfig.beta_1, show_default=True, help="Inversion Adam beta1."
)
@click.option(
    "--beta2", default=InversionConfig.beta_2, show_default=True, help="Inversion Adam beta2."
)
@click.option(
    "--lam",
    default=InversionConfig.lam,
    show_default=True,
    help="Weight of the feature term: score = (1-lam) pixel + lam feature.",
)
@click.option(
    "--batch-size",
    default=ScoreConfig.batch_size,
    show_default=True,
    help="Cutouts per batch/request.",
)
@click.option(
    "--store-images",
    is_flag=True,
    help="Also store reals, reconstructed and residuals cubes (large for big surveys).",
)
@click.option(
    "--shard", default=None, help="i/n: score only part i of n (merge with merge-scores)."
)
@click.option(
    "--planes/--no-planes",
    default=True,
    show_default=True,
    help="Use the data set's variance and mask planes where it and the calibration have them; "
    "--no-planes scores with the calibrated scatter (as a served model does).",
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
    planes,
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
    order) is the mean robust z of the calibration's terms: by default the critic-feature
    density, the noise-aware residual against the data set's PCA model (with the variance and
    mask planes where the data has them) and the k-NN density of morphology parameters (see
    `calibrate`); the GAN's noise-aware residual is stored beside them. The paper's scores come
    too: gen (sum |x - G(z)|), disc (sum |f(x) - f(G(z))|) and anomaly ((1-lam) gen + lam disc).
    Every score also in sigma units against the catalog. A served model applies its own inversion
    settings. Interrupted runs resume when rerun.
    """
    from tfanomaly.errors import ConfigError
    from tfanomaly.pipelines.config import parse_shard
    from tfanomaly.pipelines.score import score
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
        planes=planes,
        progress=not quiet,
        echo=click.echo,
    )
    click.echo(f"scored {written['count']} cutouts ({written['images_per_second']:.0f}/s)")
    click.echo(_finish_note(written))


@click.command("merge-scores")
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


@click.command("evaluate")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Data set for the baselines (default: the one that was scored).",
)
@click.option("--no-baseline", is_flag=True, help="Skip the five classical baselines.")
@click.option(
    "--seed", default=EvaluateConfig.seed, show_default=True, help="Seed of the baselines."
)
@_friendly_errors
@_uses_tensorflow
def evaluate_command(results, data, no_baseline, seed):
    """Measure how the scores in the folder RESULTS find the labelled anomalies of a simulated
    survey: AUROC, average precision, precision@k (k = number of anomalies) and precision@1%, for
    each score, overall and per anomaly kind, against five classical baselines computed in the
    same run: isolation forests on PCA-50 of the stretched and of the smoothed pixels (the
    Astronomaly recipe), the PCA-50 error and the 5-NN distance of the smoothed pixels, and an
    isolation forest on the standard morphology parameters. Writes RESULTS/evaluation.json and
    evaluation.csv.
    """
    from tfanomaly.pipelines.evaluate import evaluate, format_table

    report = evaluate(results, data_dir=data, baseline=not no_baseline, seed=seed)
    click.echo(format_table(report))


@click.command("embed")
@click.argument("source", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--space",
    type=click.Choice(tuple(SPACES)),
    default=EmbedConfig.space,
    show_default=True,
    help=f"Feature space of a results folder's objects ({SPACE_HELP}). A CAE folder always uses "
    "its CAE's latents (the paper's way).",
)
@click.option(
    "--select",
    "selection",
    default=EmbedConfig.selection,
    show_default=True,
    help=f"Objects to embed: {SELECTION_HELP}. For a CAE folder the default is the sample the "
    "CAE was trained on.",
)
@click.option(
    "--select-key",
    default=EmbedConfig.select_key,
    show_default=True,
    help="Results column that auto, sigma: and top: rank by.",
)
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="For a CAE folder: the scored catalog to embed (default: the one it was trained on).",
)
@click.option(
    "--n-neighbors", default=EmbedConfig.n_neighbors, show_default=True, help="UMAP n_neighbors."
)
@click.option("--min-dist", default=EmbedConfig.min_dist, show_default=True, help="UMAP min_dist.")
@click.option(
    "--min-cluster-size",
    default=EmbedConfig.min_cluster_size,
    show_default=True,
    help="HDBSCAN cluster size.",
)
@click.option(
    "--seed", default=EmbedConfig.seed, show_default=True, help="UMAP seed (reproducible)."
)
@click.option("--quiet", is_flag=True, help="No progress messages.")
@_friendly_errors
@_uses_tensorflow
def embed_command(source, space, selection, select_key, scores, n_neighbors, min_dist,
                  min_cluster_size, seed, quiet):  # fmt: skip
    """Map the high-anomaly sample of a scored catalog with UMAP (2-D, seeded) and cluster the map
    with HDBSCAN. SOURCE is a results folder (objects compared in --space) or a `train cae`
    folder (the CAE's latents of its image cubes, the paper's way). Writes SOURCE/embedding.h5
    (vectors, idxs, object_ids, umap_x, umap_y, cluster) and adds umap_x, umap_y and cluster to
    the scored catalogs (NaN / -1 for objects not embedded); the report draws the map and the
    explorer's Clusters view labels whole clusters. For a labelled (simulated) survey it also
    prints how well the map groups the anomaly kinds."""
    from tfanomaly.pipelines.characterise import embed

    config = EmbedConfig(space=space, selection=selection, select_key=select_key,
                         n_neighbors=n_neighbors, min_dist=min_dist,
                         min_cluster_size=min_cluster_size, seed=seed)  # fmt: skip
    result = embed(source, config, scores_dir=scores, progress=not quiet,
                   echo=(lambda *_: None) if quiet else click.echo)  # fmt: skip
    click.echo(
        f"embedded {result['objects']} objects ({result['space']}) in {result['clusters']} "
        f"cluster(s) -> {result['embedding']}; catalogs updated: "
        + ", ".join(str(p) for p in result["catalogs"])
    )
    if "grouping" in result:
        click.echo(format_grouping(result["grouping"]))


@click.command("report")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--embedding",
    "--cae",
    "embedding",
    type=click.Path(exists=True),
    default=None,
    help="The map and clusters to draw: an embedding.h5 of `tfanomaly embed`, or the folder that "
    "holds it (--cae: a CAE folder embedded the paper's way) [default: RESULTS/embedding.h5, when "
    "it exists].",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML file to write (default RESULTS/report.html).",
)
@click.option(
    "--top", "top_n", default=ReportConfig.top_n, show_default=True, help="Objects per gallery."
)
@click.option(
    "--thumb-size",
    default=ReportConfig.thumb_size,
    show_default=True,
    help="Pixels per thumbnail panel (cutouts are downsized to this).",
)
@click.option(
    "--sigma-cut",
    default=ReportConfig.sigma_cut,
    show_default=True,
    help="Cut marked on histograms.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Label file whose labels the cluster table counts [default: RESULTS/labels.sqlite, "
    "when it exists].",
)
@_friendly_errors
@_uses_tensorflow
def report_command(results, embedding, out_path, top_n, thumb_size, sigma_cut, labels_path):
    """Write a self-contained HTML report (opens from disk, no server, no network) of the scored
    catalog RESULTS (scored with --store-images): the UMAP map coloured by the default score's sigma
    with cluster outlines and hover thumbnails (real | reconstruction | residual, id, ra/dec,
    scores) and beside it the cluster table (each cluster's size, its most typical members, the
    nearest its centre in the map, and the labels given in it from the label file of `tfanomaly
    explore`), galleries of the top objects by each score, score histograms with the sigma cut,
    and the evaluation table when RESULTS/evaluation.json exists. To label a whole cluster, use
    the Clusters view of `tfanomaly explore RESULTS`."""
    from tfanomaly.results.report import build_report

    shown = build_report(
        results,
        out_path,
        embedding=embedding,
        top_n=top_n,
        thumb_size=thumb_size,
        sigma_cut=sigma_cut,
        labels_path=labels_path,
    )
    clusters = f", {shown['clusters']} clusters" if shown["map_points"] else ""
    click.echo(
        f"report {shown['path']} ({shown['bytes'] / 1e6:.1f} MB): {shown['map_points']} "
        f"map points{clusters}, {shown['gallery_images']} gallery images"
    )


@click.command("rerank")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Label file: the explorer's SQLite store, or a .csv / .fits table with columns "
    f"object_id,label [default: RESULTS/{RerankConfig.labels}].",
)
@click.option(
    "--features",
    type=click.Choice(FEATURE_SPACES),
    default=RerankConfig.features,
    show_default=True,
    help=f"Feature space the labels' relevance spreads in ({SPACE_HELP}).",
)
@click.option(
    "--like",
    default=None,
    metavar="ID[,ID...]",
    help="Object ids of examples of what you look for (a cold start): ranked as interesting "
    "labels, so that objects like them come first.",
)
@_friendly_errors
def rerank_command(results, labels_path, features, like):
    """Re-rank the catalogs of the folder RESULTS with an astronomer's labels (interesting,
    artifact, normal): the anomaly score combined with a relevance learned from the labels in a
    feature space of the model. Adds the columns rerank_score and rerank_rank (1 = first) to
    every catalog in RESULTS; with no labels the order is the anomaly score's. --like seeds the
    ranking with example objects before any label is given.
    """
    from pathlib import Path

    from tfanomaly.pipelines.rerank import read_labels, rerank

    config = RerankConfig(features=features)
    config.validate()
    from tfanomaly.results.labels import parse_object_id

    examples = [parse_object_id(i.strip()) for i in (like or "").split(",") if i.strip()]
    path = Path(labels_path) if labels_path else Path(results) / config.labels
    labels = read_labels(path) if labels_path or path.exists() or not examples else {}
    # Left at its default, the space falls back to one the file has (results scored before it).
    source = click.get_current_context().get_parameter_source("features")
    chosen = source is not click.core.ParameterSource.DEFAULT
    rerank(results, labels, feature_key=config.features if chosen else None, like=examples,
           echo=click.echo)  # fmt: skip
