"""The explorer (``tfanomaly explore``): a local web app where an astronomer labels the objects of a
results file in the order of a ranking that learns from her labels.

``session`` holds the state (queue, labels, re-ranking), ``app`` the Tornado server and its JSON
API, ``images`` the triptych PNGs, ``static/`` the page (HTML, vanilla JavaScript, CSS).
"""

from __future__ import annotations

from collections.abc import Callable


def explorer_server(results, config=None, labels_path=None, echo: Callable = print):
    """An :class:`~tfanomaly.explore.app.ExploreServer` over ``results`` (a results folder or
    HDF5 file), bound and ready to ``serve_forever``; labels go to ``labels_path`` (default
    ``RESULTS/labels.sqlite``)."""
    from tfanomaly.explore.app import ExploreServer
    from tfanomaly.explore.session import Explorer
    from tfanomaly.pipelines.config import ExploreConfig
    from tfanomaly.results.browse import ResultsView
    from tfanomaly.results.labels import LabelStore, default_label_path

    config = config or ExploreConfig()
    config.validate()
    view = ResultsView(results)
    store = None
    try:
        store = LabelStore(labels_path or default_label_path(results))
        explorer = Explorer(view, store, config, echo=echo)
        return ExploreServer(explorer, config.host, config.port)
    except BaseException:
        view.close()
        if store is not None:
            store.close()
        raise
