"""Commands where the astronomer looks and labels: ``explore`` (the local web app) and
``labels export|import`` (label tables in and out of the label store)."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, example_options, parse_like
from tfanomaly.cli.options import build_config, config_options
from tfanomaly.pipelines.config import ExploreConfig

_RESULTS = click.Path(exists=True)


def _labels_option(command):
    return click.option(
        "--labels",
        "labels_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="The label file (SQLite; several results folders may share one, labels are keyed "
        "by object id) [default: RESULTS/labels.sqlite].",
    )(command)


@click.command("explore")
@click.argument("results", type=_RESULTS)
@_labels_option
@config_options(ExploreConfig)
@click.option(
    "--embedding",
    type=click.Path(exists=True),
    default=None,
    help="The clusters of the Clusters view: an embedding.h5 of `tfanomaly embed` (or "
    "its CAE folder) [default: the umap_x, umap_y, cluster columns of the catalog "
    "beside RESULTS, when it has them].",
)
@example_options
@_friendly_errors
def explore_command(results, labels_path, embedding, like, like_cutouts, run_dir, **options):
    """Open RESULTS (a `tfanomaly score` folder, or a results HDF5 file such as the paper's
    results_gri_lambda0.3_3sigd.h5) in a local web app, and label its objects in a browser.

    The queue shows the objects in the order of the current ranking, 20 per page, each as its
    triptych (real | reconstruction | residual, stretched as the models see them) with id, ra/dec
    and sigma scores. Keys: 1 interesting, 2 artifact, 3 normal, t tag, e note, u undo, j/n next,
    k previous, m more like this, [ ] pages, s show the simulated kind, c the Clusters view. Every
    label is committed
    to the label file when given; after every --rerank-every new labels the queue is re-ranked
    with them (`tfanomaly rerank` writes the same ranking into the catalogs). Ctrl-C stops.

    The Clusters tab shows the clusters of `tfanomaly train cae` + `tfanomaly embed` (UMAP +
    HDBSCAN): each cluster's size, its most typical members (nearest its centre in the map) and
    the labels given in it, and the UMAP map. One click labels a whole cluster, or the objects in
    a rectangle dragged on the map, with a tag (e.g. 'satellite trail') and a tag naming the
    action (cluster:7, selection); they are ordinary labels, the re-ranking learns from them, and
    one undo (u) takes the whole action back.

    --like and --like-cutouts start the ranking from examples of what you look for, as "find
    more" (f) on a card does: ids of objects of RESULTS, or cutouts from a file that are not in
    it (scored by the run first).
    """
    from tfanomaly.explore import explorer_server

    config = build_config(ExploreConfig, options)
    server = explorer_server(
        results,
        config,
        labels_path,
        echo=click.echo,
        embedding=embedding,
        like=parse_like(like),
        like_cutouts=like_cutouts,
        run_dir=run_dir,
    )
    explorer = server.explorer
    for warning in explorer.view.warnings:
        click.echo(f"warning: {warning}")
    if not explorer.view.has_images:
        click.echo(f"note: {explorer.view.images_hint()}")
    click.echo(
        f"explore {len(explorer.view)} objects of {explorer.view.file} (labels: "
        f"{explorer.store.path}, {int(explorer.labelled.sum())} so far)"
    )
    clusters = explorer.clusters
    if clusters is not None:
        click.echo(
            f"clusters: {len(clusters.groups())} from {clusters.source} "
            f"({int(clusters.embedded.sum())} objects in the map)"
        )
    click.echo(f"open {server.url} in a browser (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped; every label given is in " + str(explorer.store.path))
    finally:
        explorer.store.close()
        explorer.view.close()


@click.group("labels")
def labels_group():
    """Label tables in and out of a label file: export to share or archive, import labels from a
    colleague, Astronomaly or a Galaxy Zoo-style table (keyed by object_id)."""


@labels_group.command("export")
@click.argument("results", type=_RESULTS)
@click.argument("out_path", type=click.Path(dir_okay=False))
@_labels_option
@_friendly_errors
def labels_export(results, out_path, labels_path):
    """Write the current labels to OUT_PATH (.csv or .fits): object_id (uint64, exact), label,
    tags (comma-separated), note, time (UTC), one row per labelled object. Written atomically."""
    from pathlib import Path

    from tfanomaly.errors import InputError
    from tfanomaly.results.labels import LabelStore, default_label_path, export_labels

    path = Path(labels_path) if labels_path else default_label_path(results)
    if not path.exists():
        raise InputError(f"{path}: no labels yet; label objects with `tfanomaly explore {results}`")
    with LabelStore(path) as store:
        count = export_labels(store, out_path)
    click.echo(f"exported {count} labelled objects from {path} -> {out_path}")


@labels_group.command("import")
@click.argument("results", type=_RESULTS)
@click.argument("in_path", type=click.Path(dir_okay=False, exists=True))
@_labels_option
@_friendly_errors
def labels_import(results, in_path, labels_path):
    """Add the labels of IN_PATH (.csv or .fits with an object_id column and any of label,
    tags, note, time) to the label file, in one transaction: all rows or none. Labels are
    interesting, artifact or normal (any case); an empty label leaves the object's label as it
    is. Each row becomes the object's newest record; one undo in the explorer takes the whole
    import back."""
    from tfanomaly.results.browse import ResultsView
    from tfanomaly.results.labels import LabelStore, default_label_path, read_label_table

    path = labels_path or default_label_path(results)
    records = read_label_table(in_path)
    with ResultsView(results) as view:
        outside = sum(1 for r in records if r["object_id"] not in view.rows)
    with LabelStore(path) as store:
        count = store.set_many(records)
    click.echo(f"imported {count} rows from {in_path} -> {path}")
    if outside:
        click.echo(
            f"note: {outside} of them are objects not in {results}; they are kept, for the "
            "results that have them"
        )
