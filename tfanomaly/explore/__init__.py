"""The explorer (``tfanomaly explore``): a local web app where an astronomer labels the objects of a
results file in the order of a ranking that learns from her labels.

The Clusters view shows the clusters of ``tfanomaly embed`` (``results.clusters``: from an
``embedding.h5``, or the catalog's ``umap_x``, ``umap_y``, ``cluster`` columns): each cluster's size,
its most typical members and the labels given in it, and the UMAP map; one action labels a whole
cluster, or the objects of a rectangle drawn on the map, as ordinary labels with a tag naming the
action (``cluster:7``, ``selection``), and one undo takes the action back.

``session`` holds the state (queue, labels, re-ranking, clusters), ``app`` the Tornado server and
its JSON API, ``images`` the triptych PNGs, ``static/`` the page (HTML, vanilla JavaScript, CSS).
"""

from __future__ import annotations

from collections.abc import Callable


def explorer_server(
    results,
    config=None,
    labels_path=None,
    echo: Callable = print,
    embedding=None,
    like=(),
    like_cutouts=None,
    run_dir=None,
):
    """An :class:`~tfanomaly.explore.app.ExploreServer` over ``results`` (a results folder or
    HDF5 file), bound and ready to ``serve_forever``; labels go to ``labels_path`` (default
    ``RESULTS/labels.sqlite``). Clusters come from ``embedding`` (an ``embedding.h5`` or its CAE
    folder), else from the catalog beside the results when it has the cluster columns (an
    unreadable catalog is a warning: the explorer runs without clusters). The ranking starts from
    the example objects ``like`` (ids) and the example cutouts of the file ``like_cutouts``,
    scored by the run that scored the results (or ``run_dir``), as "find more" does."""
    from tfanomaly.errors import TfanomalyError
    from tfanomaly.explore.app import ExploreServer
    from tfanomaly.explore.session import Explorer
    from tfanomaly.pipelines.config import ExploreConfig
    from tfanomaly.results.browse import ResultsView
    from tfanomaly.results.clusters import load_clusters
    from tfanomaly.results.labels import LabelStore, default_label_path

    config = config or ExploreConfig()
    config.validate()
    view = ResultsView(results)
    store = None
    try:
        try:
            clusters = load_clusters(view.file, view.object_ids, embedding)
        except TfanomalyError as exc:
            if embedding is not None:
                raise
            view.warnings.append(f"no clusters: {exc}")
            clusters = None
        store = LabelStore(labels_path or default_label_path(results))
        factory = None
        if like_cutouts is not None:
            from tfanomaly.explore.ranking import build_ranker
            from tfanomaly.pipelines.rerank import example_columns, read_example_cutouts

            images = read_example_cutouts(like_cutouts)
            examples = example_columns(view.file.parent, images, run_dir=run_dir)
            echo(f"scored {len(images)} example cutouts of {like_cutouts}")

            def factory(v):
                return build_ranker(v, config.features, examples)

        explorer = Explorer(
            view, store, config, factory, echo=echo, clusters=clusters, examples=like
        )
        return ExploreServer(explorer, config.host, config.port)
    except BaseException:
        view.close()
        if store is not None:
            store.close()
        raise
