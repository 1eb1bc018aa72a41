"""The explorer's web server (Tornado): the page and its static files from the package, and a JSON
API over one :class:`~tfanomaly.explore.session.Explorer`. Bad requests get a 4xx with
``{"error": ...}`` and the server keeps serving; no URL reads a file by its path.

Routes:
    GET  /                          the page (static/index.html)
    GET  /static/<file>             the page's script and style, from the package only
    GET  /api/info                  the results, score columns, labels, ranking state
    GET  /api/state                 ranking version, labels given, re-ranking in progress
    GET  /api/queue?page=&size=&unlabelled=   a page of the current ranking
    GET  /api/objects/<id>          one object
    GET  /api/images/<id>.png       its triptych (real | reconstruction | residual)
    GET  /api/similar/<id>?k=       "more like this": the nearest objects in the feature space
    GET  /api/explain/<id>          why it ranks where it does: contributions, labelled neighbours
    POST /api/like                  {"object_id": "...", "keep"?: true}: "find more like this"
                                    seeds (or, keep false, unseeds) the ranking; re-ranks at once
    POST /api/query                 {"query": "top" | "uncertain" | "diverse" | "mixed"}: which
                                    objects open the queue (the next to label); re-ranks at once
    GET  /api/labels                every current label of this file's objects
    POST /api/labels                {"object_id": "...", "label"?, "tags"?, "note"?}
    POST /api/labels/bulk           {"cluster": k} or {"object_ids": ["...", ...]}, with "label",
                                    "tags"?, "note"?: one bulk action, tagged cluster:k or
                                    selection (one undo takes it back)
    POST /api/undo                  take back the last change (a bulk action whole)
    GET  /api/clusters?typical=     each cluster's size, most typical members, labels given
    GET  /api/map                   the UMAP map: ids, x, y, cluster, label (column by column)
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from importlib import resources
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web

from tfanomaly.errors import ConfigError, InputError, TfanomalyError
from tfanomaly.explore.session import Explorer, RankerNotReady, UnknownObject
from tfanomaly.models.query import QUERIES
from tfanomaly.results.clusters import TYPICAL
from tfanomaly.results.labels import parse_object_id

STATIC = Path(str(resources.files("tfanomaly.explore") / "static"))
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_BODY = 1 << 20  # a label request is a few hundred bytes


class ApiError(tornado.web.HTTPError):
    """A request the API refuses, with the message the page shows."""

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.message = message


def user_status(exc) -> int | None:
    """The 4xx status of an error the request caused (None: not the request's fault)."""
    if isinstance(exc, UnknownObject):
        return 404
    if isinstance(exc, RankerNotReady):
        return exc.status
    if isinstance(exc, TfanomalyError):
        return 400
    return None


def _error_message(handler, status: int, exc) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, TfanomalyError):
        return str(exc)
    if status == 403:
        return "forbidden: only the page's own files can be read"
    if status == 404:
        return f"not found: {handler.request.path}"
    if isinstance(exc, tornado.web.HTTPError) or exc is None:
        return handler._reason
    return f"internal error ({type(exc).__name__}); the server keeps running"


class JsonErrors:
    """Errors as JSON ``{"error": message}``; the project's errors a request causes are 4xx."""

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status = user_status(exc) or status_code
        self.set_status(status)
        self.clear_header("Content-Disposition")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"error": _error_message(self, status, exc)}))

    def log_exception(self, typ, value, tb) -> None:
        if user_status(value) is None:  # a bug: keep its traceback in the server's log
            super().log_exception(typ, value, tb)


class ApiHandler(JsonErrors, tornado.web.RequestHandler):
    def initialize(self, explorer: Explorer) -> None:
        self.explorer = explorer

    def prepare(self) -> None:
        # Bound to the loopback address, answer only to its names: a web page whose own name
        # was pointed at 127.0.0.1 (DNS rebinding) cannot read or write the labels.
        if self.settings.get("loopback_only") and self.request.host_name not in LOOPBACK:
            raise ApiError(
                403,
                f"this explorer answers to {self.request.host_name!r} only as "
                "127.0.0.1 or localhost (start it with --host to serve others)",
            )

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

    def send(self, payload) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(payload, allow_nan=False))

    def object_id(self, text: str) -> int:
        try:
            return parse_object_id(text)
        except InputError as exc:
            raise ApiError(400, str(exc)) from None

    def int_argument(self, name: str, default: int, low: int, high: int) -> int:
        text = self.get_argument(name, None)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(400, f"{name}={text!r} is not an integer") from None
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be in {low}-{high}, got {value}")
        return value

    def json_body(self) -> dict:
        # Only JSON bodies: a page of another site cannot send one here without CORS consent.
        kind = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(415, "send the request body as application/json")
        try:
            body = json.loads(self.request.body or b"")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body


class IndexHandler(ApiHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC / "index.html").read_bytes())


class InfoHandler(ApiHandler):
    def get(self) -> None:
        self.send(self.explorer.info())


class StateHandler(ApiHandler):
    def get(self) -> None:
        self.send(self.explorer.state())


class QueueHandler(ApiHandler):
    def get(self) -> None:
        page = self.int_argument("page", 0, 0, 10**9)
        size = self.int_argument("size", self.explorer.config.page_size, 1, 200)
        unlabelled = self.get_argument("unlabelled", "0") not in ("0", "false", "")
        shown = self.explorer.page(page, size, unlabelled)
        self.send(shown)
        self.explorer.prefetch(shown["page"] + 1, size, unlabelled)


class ObjectHandler(ApiHandler):
    def get(self, text: str) -> None:
        self.send(self.explorer.describe(self.explorer.row_of(self.object_id(text))))


class ImageHandler(ApiHandler):
    async def get(self, text: str) -> None:
        row = self.explorer.row_of(self.object_id(text))
        if not self.explorer.view.has_images:
            raise ApiError(404, self.explorer.view.images_hint())
        data = await self.explorer.render(row)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=600")
        self.finish(data)


class SimilarHandler(ApiHandler):
    def get(self, text: str) -> None:
        oid = self.object_id(text)
        k = self.int_argument("k", self.explorer.config.similar, 1, 200)
        objects = self.explorer.similar(oid, k)
        self.send({"of": str(oid), "objects": objects, **self.explorer.state()})


class ExplainHandler(ApiHandler):
    def get(self, text: str) -> None:
        self.send({**self.explorer.explain(self.object_id(text)), **self.explorer.state()})


class LikeHandler(ApiHandler):
    def post(self) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - {"object_id", "keep"})
        if unknown or "object_id" not in body:
            raise ApiError(400, "send object_id (as text) and optionally keep (true / false)")
        keep = body.get("keep", True)
        if not isinstance(keep, bool):
            raise ApiError(400, "keep must be true or false")
        done = self.explorer.like(self.object_id(body["object_id"]), keep)
        self.send({**done, **self.explorer.state()})


class QueryHandler(ApiHandler):
    def post(self) -> None:
        body = self.json_body()
        if set(body) != {"query"} or not isinstance(body["query"], str):
            raise ApiError(400, "send query: one of " + ", ".join(QUERIES))
        self.send(self.explorer.set_query(body["query"]))


class LabelsHandler(ApiHandler):
    def get(self) -> None:
        records = self.explorer.records
        self.send({"labels": {str(oid): r for oid, r in sorted(records.items())}})

    def post(self) -> None:
        body = self.json_body()
        if "object_id" not in body:
            raise ApiError(400, "give the object_id (as text: ids are 64-bit)")
        unknown = sorted(set(body) - {"object_id", "label", "tags", "note"})
        if unknown:
            raise ApiError(
                400,
                f"unknown field(s) {', '.join(unknown)}; send object_id and any "
                "of label, tags, note",
            )
        if all(body.get(k) is None for k in ("label", "tags", "note")):
            raise ApiError(400, "nothing to record: give a label, tags or a note")
        oid = self.object_id(body["object_id"])
        shown = self.explorer.label(oid, body.get("label"), body.get("tags"), body.get("note"))
        self.send({"object": shown, **self.explorer.state()})


class BulkLabelsHandler(ApiHandler):
    def post(self) -> None:
        body = self.json_body()
        unknown = sorted(set(body) - {"cluster", "object_ids", "label", "tags", "note"})
        if unknown:
            raise ApiError(
                400,
                f"unknown field(s) {', '.join(unknown)}; send cluster or "
                "object_ids, a label, and any of tags, note",
            )
        if ("cluster" in body) == ("object_ids" in body):
            raise ApiError(400, "give either a cluster or object_ids (a list of ids as text)")
        if "cluster" in body:
            cluster = body["cluster"]
            if isinstance(cluster, bool) or not isinstance(cluster, int | str):
                raise ApiError(400, f"cluster {cluster!r} is not an integer")
            try:
                cluster = int(cluster)
            except ValueError:
                raise ApiError(400, f"cluster {cluster!r} is not an integer") from None
            ids, batch_tag = self.explorer.cluster_ids(cluster), f"cluster:{cluster}"
        else:
            if not isinstance(body["object_ids"], list) or not body["object_ids"]:
                raise ApiError(400, "object_ids must be a non-empty list of ids (as text)")
            ids, batch_tag = [self.object_id(i) for i in body["object_ids"]], "selection"
        done = self.explorer.label_many(
            ids, body.get("label"), body.get("tags"), body.get("note"), batch_tag
        )
        self.send({**done, **self.explorer.state()})


class ClustersHandler(ApiHandler):
    def get(self) -> None:
        typical = self.int_argument("typical", TYPICAL, 0, 100)
        self.send(self.explorer.cluster_list(typical))


class MapHandler(ApiHandler):
    def get(self) -> None:
        self.send(self.explorer.map_points())


class UndoHandler(ApiHandler):
    def post(self) -> None:
        self.send({"undone": self.explorer.undo(), **self.explorer.state()})


class StaticHandler(JsonErrors, tornado.web.StaticFileHandler):
    """The page's files, from the package's static folder and nowhere else (Tornado refuses any
    path that resolves outside it with 403, ``..%2f`` included)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")


class NotFoundHandler(JsonErrors, tornado.web.RequestHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


def make_app(explorer: Explorer, loopback_only: bool = True) -> tornado.web.Application:
    """The Tornado application over one explorer session (``loopback_only``: refuse requests
    addressed to any host name but 127.0.0.1, localhost, ::1)."""
    ids = r"([^/]+)"
    api = {"explorer": explorer}
    routes = [
        (r"/", IndexHandler, api),
        (r"/static/(.*)", StaticHandler, {"path": str(STATIC)}),
        (r"/api/info", InfoHandler, api),
        (r"/api/state", StateHandler, api),
        (r"/api/queue", QueueHandler, api),
        (rf"/api/objects/{ids}", ObjectHandler, api),
        (rf"/api/images/{ids}\.png", ImageHandler, api),
        (rf"/api/similar/{ids}", SimilarHandler, api),
        (rf"/api/explain/{ids}", ExplainHandler, api),
        (r"/api/like", LikeHandler, api),
        (r"/api/query", QueryHandler, api),
        (r"/api/labels", LabelsHandler, api),
        (r"/api/labels/bulk", BulkLabelsHandler, api),
        (r"/api/undo", UndoHandler, api),
        (r"/api/clusters", ClustersHandler, api),
        (r"/api/map", MapHandler, api),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        log_function=lambda handler: None,
        loopback_only=loopback_only,
    )


class ExploreServer:
    """The explorer bound to ``host:port`` (0: any free port), served until :meth:`stop`.

    Example:
        server = ExploreServer(explorer, "127.0.0.1", 0)
        print(server.url)
        server.serve_forever()            # or start_in_thread() ... stop()
    """

    def __init__(self, explorer: Explorer, host: str = "127.0.0.1", port: int = 8765):
        self.explorer = explorer
        try:
            self._sockets = tornado.netutil.bind_sockets(port, host)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                "another --port (0: any free port)"
            ) from exc
        self.host, self.port = host, self._sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else shown}:{self.port}/"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._interrupted = False

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        app = make_app(self.explorer, loopback_only=self.host in LOOPBACK)
        server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY)
        server.add_sockets(self._sockets)
        self.explorer.start()
        # Ctrl-C through the loop's own signal handling, in the main thread. asyncio.run's handler
        # is a plain signal.signal one: where the kernel delivers SIGINT to another thread (the
        # ranker's workers), the main thread stays blocked in select() and never runs it (seen as a
        # CI hang). The loop's handler sets the wakeup fd, so the signal wakes select() from any
        # thread.
        handles_sigint = threading.current_thread() is threading.main_thread()
        if handles_sigint:
            self._loop.add_signal_handler(signal.SIGINT, self._interrupt)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            if handles_sigint:
                self._loop.remove_signal_handler(signal.SIGINT)
            server.stop()
            self.explorer.close()

    def _interrupt(self) -> None:
        self._interrupted = True
        self._stopped.set()

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (or Ctrl-C, as KeyboardInterrupt)."""
        self._interrupted = False
        asyncio.run(self._serve())
        if self._interrupted:
            raise KeyboardInterrupt

    def start_in_thread(self) -> ExploreServer:
        self._thread = threading.Thread(target=self.serve_forever, name="explore", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
