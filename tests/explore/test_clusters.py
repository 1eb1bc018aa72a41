"""The Clusters view's server side: clusters from the catalog's columns or an embedding.h5, each
cluster's size, typical members and labels, the map, a whole cluster or a selection labelled in one
bulk action (ordinary labels with a tag naming it) that the re-ranking counts and one undo takes
back, bad bulk requests as 4xx JSON, and results without clusters."""

import shutil

import numpy as np
import pytest
from astropy.table import Table
from results.test_browse import write_results_file

from explore.helpers import add_clusters, call, get, post, wait_for
from tfanomaly.errors import InputError
from tfanomaly.explore import explorer_server
from tfanomaly.explore.app import ExploreServer
from tfanomaly.explore.session import Explorer
from tfanomaly.pipelines.config import ExploreConfig
from tfanomaly.results.browse import ResultsView
from tfanomaly.results.catalog import write_catalog
from tfanomaly.results.clusters import load_clusters
from tfanomaly.results.labels import LabelStore


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    folder = write_results_file(tmp_path_factory.mktemp("clusters") / "scores", n=50)
    return folder, add_clusters(folder)


@pytest.fixture
def server(clustered, tmp_path):
    folder, _ = clustered
    config = ExploreConfig(host="127.0.0.1", port=0, rerank_every=50)
    running = explorer_server(folder, config, tmp_path / "labels.sqlite", echo=lambda *_: None)
    running.start_in_thread()
    wait_for(running.url, lambda s: s["ranker"] == "ready")
    yield running
    running.stop()
    running.explorer.store.close()
    running.explorer.view.close()


def test_clusters_from_the_catalog_or_an_embedding_file(clustered, tmp_path):
    folder, members = clustered
    with ResultsView(folder) as view:
        found = load_clusters(view.file, view.object_ids)
        assert found.source == folder / "catalog.fits"
        assert found.embedded.sum() == 32 and found.noise == 4
        groups = found.groups()
        assert sorted(groups) == [0, 1, 2]
        for c, rows in groups.items():
            assert sorted(int(view.object_ids[r]) for r in rows) == sorted(members[c])
            centre = np.median(found.x[rows]), np.median(found.y[rows])
            distance = np.hypot(found.x[rows] - centre[0], found.y[rows] - centre[1])
            assert (np.diff(distance) >= 0).all()  # the most typical first
        other = write_results_file(tmp_path / "other", n=30, seed=3, ids=np.arange(30) + 7)
        embedded = add_clusters(other, sizes=(5, 5), noise=0, embedding=tmp_path / "emb.h5")
        with ResultsView(other) as view2:
            assert load_clusters(view2.file, view2.object_ids) is None  # catalog has none
            from_file = load_clusters(view2.file, view2.object_ids, tmp_path / "emb.h5")
            assert from_file.source == tmp_path / "emb.h5"
            ids = view2.object_ids[from_file.members(1)].tolist()
            assert sorted(ids) == sorted(embedded[1])
        with pytest.raises(InputError, match="none of its objects are in"):
            load_clusters(view.file, view.object_ids, tmp_path / "emb.h5")
        with pytest.raises(InputError, match="no such embedding file"):
            load_clusters(view.file, view.object_ids, tmp_path)
        with pytest.raises(InputError, match=r"no cluster 9 \(clusters: 0, 1, 2\)"):
            found.members(9)
        table = Table.read(folder / "catalog.fits")
        for suffix in (".csv", ".parquet"):  # the other catalog formats of `embed`
            copy = tmp_path / suffix.strip(".")
            copy.mkdir()
            shutil.copy(folder / "results.h5", copy)
            write_catalog(table, copy / f"catalog{suffix}")
            again = load_clusters(copy / "results.h5", view.object_ids)
            assert again.source.name == f"catalog{suffix}"
            np.testing.assert_array_equal(again.cluster, found.cluster)
            np.testing.assert_allclose(again.x, found.x)


def test_cluster_list_map_and_one_bulk_action_undone_whole(server, clustered):
    url, (_, members) = server.url, clustered
    assert get(url, "/api/info")["has_clusters"]
    listed = get(url, "/api/clusters?typical=4")
    assert listed["available"] and listed["noise"] == 4 and listed["embedded"] == 32
    assert [(c["cluster"], c["size"]) for c in listed["clusters"]] == [(0, 12), (1, 9), (2, 7)]
    first = listed["clusters"][0]
    assert len(first["typical"]) == 4 and {int(i) for i in first["typical"]} <= set(members[0])
    assert first["labels"] == {} and first["labelled"] == 0
    shown = get(url, "/api/map")
    assert len(shown["ids"]) == len(shown["x"]) == len(shown["cluster"]) == 32
    assert all(isinstance(i, str) for i in shown["ids"]) and shown["label"] == [None] * 32

    one = str(members[0][0])
    post(url, "/api/labels", {"object_id": one, "label": "normal", "tags": ["bright"]})
    done = post(
        url, "/api/labels/bulk", {"cluster": 0, "label": "artifact", "tags": "satellite trail"}
    )
    assert done["count"] == 12 and done["tags"] == ["satellite trail", "cluster:0"]
    assert done["labelled"] == 12 and done["pending"] == 13  # they count like any labels
    labels = get(url, "/api/labels")["labels"]
    for oid in members[0]:
        assert labels[str(oid)]["label"] == "artifact"
        assert labels[str(oid)]["tags"][-2:] == ["satellite trail", "cluster:0"]
    assert labels[one]["tags"] == ["bright", "satellite trail", "cluster:0"]  # own tags kept
    assert get(url, "/api/clusters")["clusters"][0]["labels"] == {"artifact": 12}

    picked = [str(i) for i in members[1][:3] + members[-1][:1]]  # a selection in the map
    done = post(
        url, "/api/labels/bulk", {"object_ids": picked, "label": "interesting", "note": "ring?"}
    )
    assert done["count"] == 4 and done["tags"] == ["selection"]
    assert get(url, "/api/clusters")["clusters"][1]["labels"] == {"interesting": 3}

    undone = post(url, "/api/undo", {})  # the selection, whole
    assert undone["undone"]["count"] == 4 and undone["labelled"] == 12
    assert sorted(o["id"] for o in undone["undone"]["objects"]) == sorted(picked)
    undone = post(url, "/api/undo", {})  # the cluster, whole: the single label is back
    assert undone["undone"]["count"] == 12 and undone["labelled"] == 1 and undone["pending"] == 1
    labels = get(url, "/api/labels")["labels"]
    assert list(labels) == [one] and labels[one]["label"] == "normal"
    assert labels[one]["tags"] == ["bright"]


def test_bulk_labels_feed_the_reranking(clustered, tmp_path):
    folder, members = clustered
    config = ExploreConfig(port=0, rerank_every=5)
    explorer = Explorer(
        ResultsView(folder),
        LabelStore(tmp_path / "l.sqlite"),
        config,
        echo=lambda *_: None,
        clusters=None,
    )
    running = ExploreServer(explorer, "127.0.0.1", 0).start_in_thread()
    try:
        wait_for(running.url, lambda s: s["ranker"] == "ready")
        assert not get(running.url, "/api/clusters")["available"]
        ids = [str(i) for i in members[0][:6]]
        post(running.url, "/api/labels/bulk", {"object_ids": ids, "label": "interesting"})
        state = wait_for(running.url, lambda s: s["version"] == 1, what="a re-ranking")
        assert state["pending"] == 0 and state["labelled"] == 6
        queue = get(running.url, "/api/queue?unlabelled=1")
        assert not set(ids) & {o["id"] for o in queue["objects"]}
    finally:
        running.stop()
        explorer.store.close()
        explorer.view.close()


def test_bad_bulk_requests_are_4xx_json(server, clustered):
    url, (_, members) = server.url, clustered
    oid = str(members[0][0])
    cases = [
        ({"cluster": 0}, 400, "give the label"),
        ({"cluster": 0, "object_ids": [oid], "label": "normal"}, 400, "either a cluster or"),
        ({"label": "normal"}, 400, "either a cluster or"),
        ({"cluster": 7, "label": "normal"}, 400, "no cluster 7"),
        ({"cluster": "x", "label": "normal"}, 400, "not an integer"),
        ({"cluster": True, "label": "normal"}, 400, "not an integer"),
        ({"cluster": 0, "label": "lens"}, 400, "unknown label 'lens'"),
        ({"cluster": 0, "label": "normal", "tags": 5}, 400, "tags must be a list"),
        ({"object_ids": [], "label": "normal"}, 400, "non-empty list"),
        ({"object_ids": "1,2", "label": "normal"}, 400, "non-empty list"),
        ({"object_ids": ["-1"], "label": "normal"}, 400, "not an unsigned 64-bit"),
        ({"object_ids": ["12"], "label": "normal"}, 404, "no object 12"),
        ({"cluster": 0, "label": "normal", "colour": "red"}, 400, "unknown field(s) colour"),
    ]
    for body, status, message in cases:
        got, _, payload = call(url, "/api/labels/bulk", body)
        assert got == status and message in payload["error"], (body, got, payload)
    assert get(url, "/api/labels")["labels"] == {}  # nothing half-written
    assert call(url, "/api/clusters?typical=x")[0] == 400


def test_results_without_clusters_say_how_to_make_them(tmp_path):
    folder = write_results_file(tmp_path / "scores", n=20)
    config = ExploreConfig(port=0)
    running = explorer_server(folder, config, tmp_path / "l.sqlite", echo=lambda *_: None)
    try:
        explorer = running.explorer
        assert explorer.clusters is None and not explorer.info()["has_clusters"]
        listed = explorer.cluster_list()
        assert not listed["available"] and f"`tfanomaly embed {folder}`" in listed["hint"]
        assert "tfanomaly embed" in explorer.map_points()["hint"]
        with pytest.raises(InputError, match="no clusters for these results"):
            explorer.cluster_ids(0)
    finally:
        running.explorer.store.close()
        running.explorer.view.close()
    with pytest.raises(InputError, match="no such embedding file"):  # named: must be there
        explorer_server(folder, config, tmp_path / "l.sqlite", embedding=tmp_path / "cae")
    (folder / "catalog.fits").write_bytes(b"not a catalog" * 300)  # found: a warning only
    running = explorer_server(folder, config, tmp_path / "l.sqlite", echo=lambda *_: None)
    try:
        assert running.explorer.clusters is None
        assert any(
            "no clusters:" in w and "catalog.fits" in w for w in running.explorer.view.warnings
        )
    finally:
        running.explorer.store.close()
        running.explorer.view.close()
