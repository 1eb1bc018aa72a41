"""The explorer's server over HTTP: the page, the queue in pages, labels, undo, re-ranking after a
round of labels, "more like this", triptych PNGs, the paper's layout, and bad requests (4xx with a
JSON error, and the server keeps serving; no file is readable through a URL)."""

import struct
import zlib

import numpy as np
import pytest
from conftest import BIG_ID
from results.test_browse import write_paper_file, write_results_file

from explore.helpers import call, get, post, wait_for
from tfanomaly.explore.app import ExploreServer
from tfanomaly.explore.images import scale_for, triptych
from tfanomaly.explore.session import Explorer
from tfanomaly.pipelines.config import ExploreConfig
from tfanomaly.results.browse import ResultsView
from tfanomaly.results.labels import LabelStore
from tfanomaly.results.preview import encode_png


def serve(results, labels, **options):
    config = ExploreConfig(port=0, **options)
    explorer = Explorer(ResultsView(results), LabelStore(labels), config, echo=lambda *_: None)
    return ExploreServer(explorer, "127.0.0.1", 0).start_in_thread()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = write_results_file(tmp_path_factory.mktemp("explore") / "scores", n=50)
    running = serve(folder, folder / "labels.sqlite", rerank_every=3, page_size=20, query="top")
    wait_for(running.url, lambda s: s["ranker"] == "ready")
    yield running
    running.stop()


def decode_png(data: bytes) -> np.ndarray:
    """The pixels of an 8-bit RGB PNG without filters (what ``encode_png`` writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    rows = np.frombuffer(zlib.decompress(data[idat + 4 : idat + 4 + length]), np.uint8)
    return rows.reshape(height, 1 + 3 * width)[:, 1:].reshape(height, width, 3)


def test_triptych_png_enlarges_by_whole_factors_nearest_neighbour():
    rng = np.random.default_rng(0)
    panels = [rng.uniform(size=(16, 16, 3)).astype(np.float32) for _ in range(3)]
    pixels = triptych(panels, panel_size=128)
    assert pixels.shape == (128, 3 * 128 + 2 * 4, 3) and scale_for(96, 128) == 2
    np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)
    first = np.clip(panels[0] * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels[:128, :128], first.repeat(8, 0).repeat(8, 1))
    grey = triptych([np.full((32, 32, 1), 0.5, np.float32)] * 3, panel_size=100)
    assert grey.shape == (128, 392, 3) and (grey[:, :128] == 128).all()


def test_page_and_info(server):
    status, headers, page = call(server.url, "/")
    assert status == 200 and b'<script src="/static/explore.js">' in page
    assert headers["Content-Type"].startswith("text/html")
    for name in ("explore.js", "explore.css"):
        assert call(server.url, f"/static/{name}")[0] == 200
    info = get(server.url, "/api/info")
    assert info["objects"] == 50 and info["sort_key"] == "scores_sigma" and info["has_images"]
    assert info["labels"] == ["interesting", "artifact", "normal"] and info["has_kinds"]
    assert info["image_size"] == [128, 392] and info["images_hint"] is None


def test_queue_pages_the_ranking_with_exact_ids(server):
    with ResultsView(server.explorer.view.file) as view:
        expected = [str(i) for i in view.object_ids[view.ranking()]]
    first = get(server.url, "/api/queue?page=0")
    assert first["pages"] == 3 and first["total"] == 50 and len(first["objects"]) == 20
    seen = [o["id"] for p in range(3) for o in get(server.url, f"/api/queue?page={p}")["objects"]]
    assert seen == expected  # every object once, in the order of the score, ids exact
    obj = first["objects"][0]
    assert isinstance(obj["id"], str) and int(obj["id"]) >= BIG_ID and obj["rank"] == 1
    assert set(obj["scores"]) >= {"scores_sigma", "anomaly_scores_sigma"}
    assert obj["kind"] in ("normal", "merger", "lensed_arc", "bad_column")
    last = get(server.url, "/api/queue?page=99&size=7")
    assert last["page"] == 7 and len(last["objects"]) == 1  # clamped to the last page
    one = get(server.url, f"/api/objects/{obj['id']}")
    assert one["id"] == obj["id"] and one["rank"] == 1


def test_triptych_route(server):
    oid = get(server.url, "/api/queue?size=1")["objects"][0]["id"]
    status, headers, data = call(server.url, f"/api/images/{oid}.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert decode_png(data).shape == (128, 392, 3)


def test_labels_undo_and_a_rerank_after_each_round(server):
    url = server.url
    before = get(url, "/api/queue?size=50")
    top = [o["id"] for o in before["objects"][:3]]
    version = before["version"]
    shown = post(
        url,
        "/api/labels",
        {"object_id": top[0], "label": "interesting", "tags": ["merger"], "note": "bridge?"},
    )["object"]
    assert shown["label"] == "interesting" and shown["tags"] == ["merger"]
    post(url, "/api/labels", {"object_id": top[1], "label": "artifact"})
    assert post(url, "/api/labels", {"object_id": top[1], "note": "ghost"})["pending"] == 2
    undone = post(url, "/api/undo", {})["undone"]
    assert undone["id"] == top[1] and undone["note"] == "" and undone["label"] == "artifact"
    state = post(url, "/api/labels", {"object_id": top[2], "label": "normal"})
    assert state["pending"] == 3 or state["version"] == version + 1
    state = wait_for(url, lambda s: s["version"] == version + 1 and not s["reranking"])
    assert state["pending"] == 0 and state["labelled"] == 3
    after = get(url, "/api/queue?size=50")
    order = [o["id"] for o in after["objects"]]
    assert after["version"] == version + 1 and set(order[-3:]) == set(top)
    assert order[:3] != top  # the queue reordered: the labelled objects go last
    unlabelled = get(url, "/api/queue?unlabelled=1&size=50")
    assert unlabelled["total"] == 47 and not set(top) & {o["id"] for o in unlabelled["objects"]}
    labels = get(url, "/api/labels")["labels"]
    assert labels[top[0]]["note"] == "bridge?" and labels[top[2]]["version"] == version


def test_more_like_this(server):
    oid = get(server.url, "/api/queue?size=1")["objects"][0]["id"]
    similar = get(server.url, f"/api/similar/{oid}?k=5")
    ids = [o["id"] for o in similar["objects"]]
    assert similar["of"] == oid and len(ids) == 5 and oid not in ids and len(set(ids)) == 5
    with ResultsView(server.explorer.view.file) as view:
        # The file has no residual_shape vectors: the default space falls back to the z.
        x = view.vectors("latents")
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        d = ((x - x[view.row_of(int(oid))]) ** 2).sum(1)
        assert [str(view.object_ids[r]) for r in np.argsort(d)[1:6]] == ids


BAD_REQUESTS = [
    # (method, path, raw body, content type, status, message part)
    ("GET", f"/api/objects/{BIG_ID + 1}", None, None, 404, "no object"),
    ("GET", "/api/objects/abc", None, None, 400, "not an unsigned 64-bit integer"),
    ("GET", f"/api/images/{2**64}.png", None, None, 400, "not an unsigned 64-bit integer"),
    ("GET", f"/api/similar/{BIG_ID + 1}", None, None, 404, "no object"),
    ("GET", "/api/queue?page=-1", None, None, 400, "page must be in"),
    ("GET", "/api/queue?size=x", None, None, 400, "not an integer"),
    (
        "POST",
        "/api/labels",
        b'{"object_id": "%d"' % BIG_ID + b', "label": "lens"}',
        "application/json",
        400,
        "unknown label 'lens'",
    ),
    (
        "POST",
        "/api/labels",
        b'{"object_id": "12", "label": "normal"}',
        "application/json",
        404,
        "no object 12",
    ),
    ("POST", "/api/labels", b'{"object_id": ', "application/json", 400, "malformed JSON"),
    ("POST", "/api/labels", b'["x"]', "application/json", 400, "must be a JSON object"),
    ("POST", "/api/labels", b'{"label": "normal"}', "application/json", 400, "give the object_id"),
    (
        "POST",
        "/api/labels",
        b'{"object_id": "%d"' % BIG_ID + b"}",
        "application/json",
        400,
        "nothing to record",
    ),
    (
        "POST",
        "/api/labels",
        b'{"object_id": "%d"' % BIG_ID + b', "labels": "normal"}',
        "application/json",
        400,
        "unknown field(s) labels",
    ),
    (
        "POST",
        "/api/labels",
        b'{"object_id": 1.5, "label": "normal"}',
        "application/json",
        400,
        "not floats",
    ),
    (
        "POST",
        "/api/labels",
        b"object_id=1&label=normal",
        "application/x-www-form-urlencoded",
        415,
        "application/json",
    ),
    (
        "POST",
        "/api/labels",
        b'{"object_id": "%d"' % BIG_ID + b', "tags": "a,' + b"b" * 70 + b'"}',
        "application/json",
        400,
        "at most 64 characters",
    ),
    ("GET", "/api/nothing", None, None, 404, "not found"),
    ("DELETE", "/api/labels", None, None, 405, "Method Not Allowed"),
    ("GET", "/static/..%2f..%2fresults%2fbrowse.py", None, None, 403, "forbidden"),
    ("GET", "/static/%2e%2e/%2e%2e/fileio.py", None, None, 403, "forbidden"),
    ("GET", "/static/../app.py", None, None, 403, "forbidden"),
    (
        "GET",
        "/static/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        None,
        None,
        403,
        "forbidden",
    ),
    ("GET", "/static//etc/passwd", None, None, 403, "forbidden"),
    ("GET", "/static/missing.js", None, None, 404, "not found"),
    ("GET", "/..%2fsetup.cfg", None, None, 404, "not found"),
    ("GET", "/api/images/..%2f..%2fresults.h5", None, None, 404, "not found"),
    ("GET", "/api/images/..%2fresults.h5.png", None, None, 400, "not an unsigned"),
]


@pytest.mark.parametrize("method,path,body,kind,status,message", BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    server, method, path, body, kind, status, message
):
    got, headers, payload = call(
        server.url, path, method=method, raw=body, content_type=kind or "application/json"
    )
    assert got == status, payload
    assert headers["Content-Type"].startswith("application/json")
    assert message in payload["error"], payload
    assert b"import" not in str(payload).encode()  # no source text leaks into an error
    assert call(server.url, "/api/info")[0] == 200


def test_only_loopback_names_are_answered(server):
    status, _, payload = call(server.url, "/api/labels", headers={"Host": "evil.example:8765"})
    assert status == 403 and "answers to 'evil.example' only as 127.0.0.1" in payload["error"]
    for host in ("localhost", "127.0.0.1"):
        assert call(server.url, "/api/state", headers={"Host": f"{host}:1"})[0] == 200


def test_results_without_cubes_and_the_papers_file(tmp_path):
    folder = write_results_file(tmp_path / "plain", n=12, images=False, vectors=False)
    running = serve(folder, tmp_path / "a.sqlite")
    try:
        info = get(running.url, "/api/info")
        assert not info["has_images"] and "--store-images" in info["images_hint"]
        oid = get(running.url, "/api/queue")["objects"][0]["id"]
        status, _, payload = call(running.url, f"/api/images/{oid}.png")
        assert status == 404 and "tfanomaly score" in payload["error"]
        state = wait_for(running.url, lambda s: s["ranker"] != "building")
        assert state["ranker"] == "unavailable" and "no feature vectors" in state["ranker_message"]
        status, _, payload = call(running.url, f"/api/similar/{oid}")
        assert status == 409 and "no feature vectors" in payload["error"]
        post(running.url, "/api/labels", {"object_id": oid, "label": "normal"})  # labels still go
    finally:
        running.stop()
    paper = write_paper_file(tmp_path / "results_gri_lambda0.3_3sigd.h5", n=30)
    running = serve(paper, tmp_path / "b.sqlite", rerank_every=2)
    try:
        info = get(running.url, "/api/info")
        assert info["layout"] == "paper" and info["sort_key"] == "anomaly_scores_sigma"
        assert [s["name"] for s in info["scores"]] == ["disc", "gen", "anomaly"]
        state = wait_for(running.url, lambda s: s["ranker"] != "building")
        assert state["ranker"] == "ready" and "PCA of residuals" in state["ranker_message"]
        ids = [o["id"] for o in get(running.url, "/api/queue?size=30")["objects"]]
        assert len(get(running.url, f"/api/similar/{ids[0]}?k=4")["objects"]) == 4
        assert call(running.url, f"/api/images/{ids[0]}.png")[0] == 200
        post(running.url, "/api/labels", {"object_id": ids[0], "label": "interesting"})
        post(running.url, "/api/labels", {"object_id": ids[1], "label": "artifact"})
        wait_for(running.url, lambda s: s["version"] == 1)
        order = [o["id"] for o in get(running.url, "/api/queue?size=30")["objects"]]
        assert set(order[-2:]) == set(ids[:2])
    finally:
        running.stop()


def test_a_restart_continues_from_the_labels(tmp_path):
    folder = write_results_file(tmp_path / "scores", n=30, seed=4)
    running = serve(folder, folder / "labels.sqlite", rerank_every=100)
    try:
        wait_for(running.url, lambda s: s["ranker"] == "ready")
        ids = [o["id"] for o in get(running.url, "/api/queue?size=30")["objects"]]
        for oid, label in zip(
            ids[:4], ("interesting", "artifact", "normal", "normal"), strict=True
        ):
            post(running.url, "/api/labels", {"object_id": oid, "label": label})
        assert get(running.url, "/api/state")["version"] == 0  # fewer than --rerank-every
    finally:
        running.stop()
        running.explorer.store.close()
    running = serve(folder, folder / "labels.sqlite")
    try:
        state = wait_for(running.url, lambda s: s["version"] == 1)  # re-ranked with them
        assert state["labelled"] == 4
        order = [o["id"] for o in get(running.url, "/api/queue?size=30")["objects"]]
        assert set(order[-4:]) == set(ids[:4])
    finally:
        running.stop()


class BrokenRanker:
    def order(self, labels, *examples, **query):
        raise ValueError("singular matrix")


def test_a_failing_ranker_does_not_stop_the_labelling(tmp_path):
    folder = write_results_file(tmp_path / "scores", n=10)
    factories = {"build": lambda view: 1 / 0, "order": lambda view: (BrokenRanker(), "test")}
    for name, factory in factories.items():
        explorer = Explorer(
            ResultsView(folder),
            LabelStore(tmp_path / f"{name}.sqlite"),
            ExploreConfig(rerank_every=1),
            ranker_factory=factory,
            echo=lambda *_: None,
        )
        running = ExploreServer(explorer, "127.0.0.1", 0).start_in_thread()
        try:
            state = wait_for(running.url, lambda s: s["ranker"] != "building")
            ids = [o["id"] for o in get(running.url, "/api/queue")["objects"]]
            post(running.url, "/api/labels", {"object_id": ids[0], "label": "normal"})
            if name == "build":
                assert state["ranker"] == "unavailable"
                assert "ZeroDivisionError" in state["ranker_message"]
            else:
                state = wait_for(running.url, lambda s: "failed" in s["ranker_message"])
                assert "ValueError: singular matrix" in state["ranker_message"]
            assert state["version"] == 0 and get(running.url, "/api/state")["labelled"] == 1
            assert [o["id"] for o in get(running.url, "/api/queue")["objects"]] == ids
        finally:
            running.stop()


def test_the_query_strategy_sets_which_objects_open_the_queue(tmp_path):
    folder = write_results_file(tmp_path / "scores", n=60, seed=5)
    running = serve(folder, tmp_path / "labels.sqlite", rerank_every=5, query="top")
    try:
        state = wait_for(running.url, lambda s: s["ranker"] == "ready")
        info = get(running.url, "/api/info")
        assert state["query"] == "top" and info["queries"] == [
            "top",
            "uncertain",
            "diverse",
            "mixed",
        ]
        top = [o["id"] for o in get(running.url, "/api/queue?size=60")["objects"]]
        assert post(running.url, "/api/query", {"query": "diverse"})["query"] == "diverse"
        state = wait_for(running.url, lambda s: s["version"] == 1 and not s["reranking"])
        shown = [o["id"] for o in get(running.url, "/api/queue?size=60")["objects"]]
        assert shown != top and sorted(shown) == sorted(top)
        assert shown[0] == top[0]  # the batch opens with the best-scored, then spreads
        assert shown[:5] == [str(i) for i in running.explorer.ranker.to_label("diverse", 5)]
        for body in ({"query": "random"}, {"query": 3}, {}):
            status, _, payload = call(running.url, "/api/query", body)
            assert status == 400 and "top" in payload["error"]
        assert get(running.url, "/api/state")["query"] == "diverse"
    finally:
        running.stop()
