"""Commands that score a data set and read the scores: ``score``, ``merge-scores``, ``evaluate``,
``embed``, ``report`` and ``rerank``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import (
    _friendly_errors,
    _uses_tensorflow,
    example_options,
    parse_like,
)
from tfanomaly.cli.options import (
    build_config,
    config_options,
    data_option,
    out_option,
    quiet_option,
)
from tfanomaly.pipelines.config import (
    CatalogConfig,
    ClientConfig,
    EmbedConfig,
    EvaluateConfig,
    ReportConfig,
    RerankConfig,
    ScoreConfig,
)
from tfanomaly.results.grouping import format_grouping


def _finish_note(written: dict) -> str:
    lines = [
        f"results {written['results']}",
        f"statistics {written['stats']}",
        f"catalog {written['catalog']}",
    ]
    if "selection" in written:
        lines.append(f"selection {written['selection']} ({written['n_selected']} objects)")
    return "\n".join(lines)


_catalog_options = config_options(CatalogConfig)
_reference_option = click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="score_stats.json of an earlier catalog: sigma values against it (new "
    "images) instead of against this catalog.",
)


def _with_catalog_options(command):
    """The catalog options of every command that writes catalogs, and --reference."""
    return _catalog_options(_reference_option(command))


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
@config_options(ClientConfig)
@out_option("out", "Folder for results.h5, score_stats.json and the catalogs.")
@config_options(ScoreConfig, exclude=("catalog",))
@_with_catalog_options
@quiet_option()
@_friendly_errors
@_uses_tensorflow
def score_command(data, run_dir, server, rest, out, reference, quiet, **options):
    """Score every cutout of the data set DATA, with a trained run (--run) or a served model
    (--server for gRPC, --rest for REST).

    Each image is inverted into the generator's latent space (start E(x), then --steps Adam steps
    on z, in one compiled graph). The default score (catalog column score_normalized, the sort
    order) combines the robust z of the calibration's terms (by default a weighted softmax): the
    noise-aware residual against the data set's PCA model through a 1-px and a 3-px filter (with
    the variance and mask planes where the data has them), the k-NN density of morphology
    parameters and the k-NN density of the GAN residual's shape (see `calibrate`); the GAN's
    noise-aware residual and the critic-feature density are stored beside them. The paper's
    scores come too: gen (sum |x - G(z)|), disc (sum |f(x) - f(G(z))|) and anomaly
    ((1-lam) gen + lam disc).
    Every score also in sigma units against the catalog. A served model applies its own inversion
    settings. Interrupted runs resume when rerun.
    """
    from tfanomaly.errors import ConfigError
    from tfanomaly.pipelines.score import score
    from tfanomaly.serving.client import GrpcClient, RestClient

    if sum(x is not None for x in (run_dir, server, rest)) != 1:
        raise ConfigError("give exactly one of --run RUN_DIR, --server HOST:PORT or --rest URL")
    served = build_config(ClientConfig, options)
    client = None
    if server:
        client = GrpcClient(server, model=served.model, signature=served.signature)
    elif rest:
        client = RestClient(rest, model=served.model, signature=served.signature)
    config = build_config(ScoreConfig, options)
    written = score(
        run_dir,
        data,
        out,
        config,
        client=client,
        reference=reference,
        progress=not quiet,
        echo=click.echo,
    )
    click.echo(f"scored {written['count']} cutouts ({written['images_per_second']:.0f}/s)")
    click.echo(_finish_note(written))


@click.command("merge-scores")
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@out_option("out", "Merged folder.")
@_with_catalog_options
@_friendly_errors
def merge_scores(parts, out, reference, **options):
    """Join the result folders PARTS of `score --shard i/n` jobs into one catalog, with sigma
    values over the union (image cubes stay in the part folders)."""
    from tfanomaly.results.catalog import merge_results

    catalog = build_config(CatalogConfig, options)
    written = merge_results(
        parts,
        out,
        reference=reference,
        catalog_format=catalog.suffix,
        select_sigma=catalog.select_sigma,
        select_key=catalog.select_key,
    )
    click.echo(_finish_note(written))


@click.command("evaluate")
@click.argument("results", type=click.Path(file_okay=False, exists=True))
@data_option("Data set for the baselines (default: the one that was scored).")
@config_options(EvaluateConfig)
@_friendly_errors
@_uses_tensorflow
def evaluate_command(results, data, **options):
    """Measure how the scores in the folder RESULTS find the labelled anomalies of a simulated
    survey: AUROC, average precision, precision@k (k = number of anomalies) and precision@1%, for
    each score, overall and per anomaly kind, against five classical baselines computed in the
    same run: isolation forests on PCA-50 of the stretched and of the smoothed pixels (the
    Astronomaly recipe), the PCA-50 error and the 5-NN distance of the smoothed pixels, and an
    isolation forest on the standard morphology parameters. Writes RESULTS/evaluation.json and
    evaluation.csv.
    """
    from tfanomaly.pipelines.evaluate import evaluate, format_table

    config = build_config(EvaluateConfig, options)
    report = evaluate(results, config, data_dir=data)
    click.echo(format_table(report))


@click.command("embed")
@click.argument("source", type=click.Path(file_okay=False, exists=True))
@config_options(
    EmbedConfig, exclude=("n_neighbors", "min_dist", "min_cluster_size", "min_samples", "seed")
)
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="For a CAE folder: the scored catalog to embed (default: the one it was trained on).",
)
@config_options(EmbedConfig, exclude=("space", "selection", "select_key"))
@quiet_option("No progress messages.")
@_friendly_errors
@_uses_tensorflow
def embed_command(source, scores, quiet, **options):
    """Map the high-anomaly sample of a scored catalog with UMAP (2-D, seeded) and cluster the map
    with HDBSCAN. SOURCE is a results folder (objects compared in --space) or a `train cae`
    folder (the CAE's latents of its image cubes, the paper's way). Writes SOURCE/embedding.h5
    (vectors, idxs, object_ids, umap_x, umap_y, cluster) and adds umap_x, umap_y and cluster to
    the scored catalogs (NaN / -1 for objects not embedded); the report draws the map and the
    explorer's Clusters view labels whole clusters. For a labelled (simulated) survey it also
    prints how well the map groups the anomaly kinds."""
    from tfanomaly.pipelines.characterise import embed

    config = build_config(EmbedConfig, options)
    result = embed(
        source,
        config,
        scores_dir=scores,
        progress=not quiet,
        echo=(lambda *_: None) if quiet else click.echo,
    )
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
@out_option(
    "out_path", "HTML file to write (default RESULTS/report.html).", required=False, dir_okay=False
)
@config_options(ReportConfig)
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
def report_command(results, embedding, out_path, labels_path, **options):
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
        build_config(ReportConfig, options),
        embedding=embedding,
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
@config_options(RerankConfig)
@example_options
@_friendly_errors
def rerank_command(results, labels_path, like, like_cutouts, run_dir, **options):
    """Re-rank the catalogs of the folder RESULTS with an astronomer's labels (interesting,
    artifact, normal): the anomaly score combined with a relevance learned from the labels in a
    feature space of the model. Adds the columns rerank_score and rerank_rank (1 = first) to
    every catalog in RESULTS; with no labels the order is the anomaly score's. --like seeds the
    ranking with example objects before any label is given (--like-cutouts with cutouts from a
    file, e.g. known objects of another survey at the same size and bands). The column to_label (1 to --batch,
    else 0) marks the objects to label next, chosen by --query, and they come first in
    rerank_rank (the rest by rerank_score): the top of the new ranking alone shows only what it
    already believes in, so diverse and mixed show high-scoring objects unlike any labelled yet.
    """
    from pathlib import Path

    from tfanomaly.pipelines.rerank import read_labels, rerank

    config = build_config(RerankConfig, options)
    config.validate()
    examples = parse_like(like)
    path = Path(labels_path) if labels_path else Path(results) / config.labels
    seeded = examples or like_cutouts
    labels = read_labels(path) if labels_path or path.exists() or not seeded else {}
    # Left at its default, the space falls back to one the file has (results scored before it).
    source = click.get_current_context().get_parameter_source("features")
    chosen = source is not click.core.ParameterSource.DEFAULT
    rerank(
        results,
        labels,
        feature_key=config.features if chosen else None,
        like=examples,
        like_cutouts=like_cutouts,
        run_dir=run_dir,
        query=config.query,
        batch=config.batch,
        echo=click.echo,
    )
