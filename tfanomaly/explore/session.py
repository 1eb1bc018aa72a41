"""One labelling session: the objects of a results file in the order of the current ranking, the
label store, and the re-ranking that runs after every few labels (off the server's thread).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfanomaly.errors import InputError, TfanomalyError
from tfanomaly.explore.images import triptych, triptych_shape
from tfanomaly.explore.ranking import build_ranker
from tfanomaly.models.query import QUERIES, check_query
from tfanomaly.pipelines.config import ExploreConfig
from tfanomaly.results.browse import ResultsView
from tfanomaly.results.clusters import TYPICAL, ClusterMap, how_to_cluster
from tfanomaly.results.labels import LABELS, LabelStore, check_label, check_note, check_tags
from tfanomaly.results.preview import encode_png

PNG_CACHE_BYTES = 64 * 2**20  # rendered triptychs kept: pages of 96-px objects
PREFETCH_DELAY = 1.0  # seconds after a page is served before its next page is rendered


class UnknownObject(InputError):
    """An object id that is not in the results being explored."""


def _finite(value, digits: int = 3):
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def score_name(key: str) -> str:
    """``residual_scores_sigma`` -> ``residual``; ``scores_sigma`` -> ``score``."""
    name = key.removesuffix("_sigma").removesuffix("_scores").removesuffix("s")
    return name or "score"


class Explorer:
    """The state behind the explorer's pages: queue, labels and ranking change on one event-loop
    thread; triptychs render in worker threads.

    Args:
        view: the results being explored.
        store: where labels go.
        config: page size, re-ranking cadence, panel size, feature space.
        ranker_factory: ``view -> (ranker, description)`` (default :func:`build_ranker`); it runs
            in a worker thread, so the pages are served while it builds.
        echo: where one-line news goes (re-rankings, the ranker's state).
        clusters: the UMAP map and clusters of the objects (None: the cluster view says how to
            make them).
    """

    def __init__(
        self,
        view: ResultsView,
        store: LabelStore,
        config: ExploreConfig | None = None,
        ranker_factory: Callable | None = None,
        echo: Callable = print,
        clusters: ClusterMap | None = None,
        examples=(),
    ):
        self.view, self.store = view, store
        self.clusters = clusters
        self.config = config or ExploreConfig()
        self.config.validate()
        self.ranker_factory = ranker_factory or (lambda v: build_ranker(v, self.config.features))
        self.echo = echo
        self.set_order(view.ranking())
        self.version = store.max_version()
        self.pending = 0  # labels given since the last re-ranking
        # "find more like this": the ranking's seed objects (``examples``: ids to start from)
        self.examples: list[int] = []
        for oid in examples:
            self.row_of(oid)
            self.examples.append(int(oid))
        self.file_examples: list[int] = []  # the ranker's rows of example cutouts from a file
        self._seeded = bool(self.examples)  # examples changed since the last re-ranking
        self.query = self.config.query  # which objects open the queue (models.query)
        self.records = {oid: r for oid, r in store.current().items() if oid in view.rows}
        self.labelled = np.zeros(len(view), bool)
        for oid, record in self.records.items():
            self.labelled[view.rows[oid]] = record["label"] is not None
        self.ranker = None
        self.ranker_state, self.ranker_message = "building", "building the feature index"
        self.reranking = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank")
        # Triptychs are rendered off the event loop (reading a row decompresses an HDF5 chunk of
        # 64 images: ~0.1 s at 96 px), the next page ahead of time in a second thread.
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._png: OrderedDict[int, bytes] = OrderedDict()
        self._png_bytes = 0
        self._png_lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.image_shape = (
            triptych_shape(view.image_shape, self.config.panel_size) if view.has_images else None
        )

    # -- what the pages show ---------------------------------------------------------------

    def set_order(self, order: np.ndarray) -> None:
        self.order = np.asarray(order, dtype=np.int64)
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(len(self.order))

    def describe(self, row: int) -> dict:
        """One object as the page shows it (ids as text: JavaScript numbers lose uint64s)."""
        view = self.view
        oid = int(view.object_ids[row])
        record = self.records.get(oid) or {
            "label": None,
            "tags": [],
            "note": "",
            "time": None,
            "version": None,
        }
        return {
            "id": str(oid),
            "row": int(row),
            "rank": int(self.rank[row]) + 1,
            "idx": None if view.idxs is None else int(view.idxs[row]),
            "ra": _finite(view.ra[row], 6),
            "dec": _finite(view.dec[row], 6),
            "scores": {key: _finite(values[row]) for key, values in view.sigma.items()},
            "kind": view.kind(row),
            **record,
        }

    def info(self) -> dict:
        view = self.view
        return {
            "results": str(view.file),
            "layout": view.layout,
            "objects": len(view),
            "sort_key": view.sort_key,
            "scores": [{"key": k, "name": score_name(k)} for k in view.sigma],
            "has_images": view.has_images,
            "images_hint": None if view.has_images else view.images_hint(),
            "image_size": self.image_shape,
            "has_kinds": view.kind_names != [] and view.kinds is not None,
            "labels": list(LABELS),
            "label_file": str(self.store.path),
            "page_size": self.config.page_size,
            "rerank_every": self.config.rerank_every,
            "warnings": list(view.warnings),
            "has_clusters": self.clusters is not None,
            "queries": list(QUERIES),
            **self.state(),
        }

    def state(self) -> dict:
        return {
            "version": self.version,
            "labelled": int(self.labelled.sum()),
            "pending": self.pending,
            "reranking": self.reranking,
            "examples": [str(i) for i in self.examples],
            "query": self.query,
            "ranker": self.ranker_state,
            "ranker_message": self.ranker_message,
        }

    def page(self, number: int = 0, size: int | None = None, unlabelled: bool = False) -> dict:
        """A page of the queue (clamped to the last page)."""
        size = size or self.config.page_size
        rows = self.queue_rows(unlabelled)
        pages = max(1, -(-len(rows) // size))
        number = min(max(0, number), pages - 1)
        chosen = rows[number * size : (number + 1) * size]
        return {
            "page": number,
            "pages": pages,
            "size": size,
            "total": int(len(rows)),
            "objects": [self.describe(r) for r in chosen],
            **self.state(),
        }

    def queue_rows(self, unlabelled: bool = False) -> np.ndarray:
        """The rows of the queue in the current order (only those without a label: ``unlabelled``)."""
        return self.order[~self.labelled[self.order]] if unlabelled else self.order

    def row_of(self, object_id: int) -> int:
        try:
            return self.view.row_of(object_id)
        except KeyError:
            raise UnknownObject(f"no object {object_id} in {self.view.file}") from None

    def png(self, row: int) -> bytes:
        """The object's triptych as PNG (cached: a page is asked for again on every visit)."""
        with self._png_lock:
            if row in self._png:
                self._png.move_to_end(row)
                return self._png[row]
        data = encode_png(triptych(self.view.cubes(row), self.config.panel_size))
        with self._png_lock:
            if row not in self._png:
                self._png[row] = data
                self._png_bytes += len(data)
            while self._png_bytes > PNG_CACHE_BYTES and len(self._png) > 1:
                self._png_bytes -= len(self._png.popitem(last=False)[1])
        return data

    async def render(self, row: int) -> bytes:
        """:meth:`png` in the render thread, so that labels are taken while images decode."""
        return await asyncio.get_running_loop().run_in_executor(self._render, self.png, row)

    def prefetch(
        self, number: int, size: int, unlabelled: bool = False, delay: float = PREFETCH_DELAY
    ) -> None:
        """Render the triptychs of page ``number`` in the background, ``delay`` seconds from now
        (after the images of the page before were asked for; call from the event loop)."""
        rows = [int(r) for r in self.queue_rows(unlabelled)[number * size : (number + 1) * size]]
        if not self.view.has_images or not rows:
            return

        def submit():
            for row in rows:
                self._prefetch.submit(self.png, row)

        asyncio.get_running_loop().call_later(delay, submit)

    # -- labels ----------------------------------------------------------------------------

    def label(self, object_id: int, label=None, tags=None, note=None) -> dict:
        """Record a label, tags and/or a note of one object (committed when it returns)."""
        row = self.row_of(object_id)
        before = (self.records.get(int(object_id)) or {}).get("label")
        record = self.store.set(object_id, label=label, tags=tags, note=note, version=self.version)
        self.records[int(object_id)] = record
        self.labelled[row] = record["label"] is not None
        if record["label"] != before:  # a new label (the same one again is none)
            self.pending += 1
            self.schedule_rerank()
        return self.describe(row)

    def label_many(
        self, object_ids, label, tags=None, note=None, batch_tag: str = "selection"
    ) -> dict:
        """Label many objects in one bulk action (one transaction; one :meth:`undo` takes it all
        back): each gets ``label``, keeps its tags and gains ``tags`` and ``batch_tag`` (which
        names the action, ``cluster:7`` or ``selection``), and ``note`` when one is given.
        Returns the count and the tags given; the labels count for the re-ranking like any."""
        if label is None:
            raise InputError("give the label the objects get (one of " + ", ".join(LABELS) + ")")
        label = check_label(label)
        added = check_tags([*check_tags([] if tags is None else tags), batch_tag])
        note = None if note is None else check_note(note)
        ids = list(dict.fromkeys(int(oid) for oid in object_ids))
        if not ids:
            raise InputError("no objects to label")
        rows = [self.row_of(oid) for oid in ids]
        records = []
        for oid in ids:
            own = (self.records.get(oid) or {}).get("tags", [])
            records.append(
                {
                    "object_id": oid,
                    "label": label,
                    "note": note,
                    "tags": own + [t for t in added if t not in own],
                }
            )
        self.store.set_many(records, version=self.version)
        changed = 0
        for oid, row in zip(ids, rows, strict=True):
            before = (self.records.get(oid) or {}).get("label")
            self.records[oid] = self.store.get(oid)
            self.labelled[row] = True
            changed += before != label
        if changed:
            self.pending += changed
            self.schedule_rerank()
        return {"count": len(ids), "label": label, "tags": added, "changed": changed}

    def undo(self) -> dict | None:
        """Take back the last change (a bulk action whole); the last object as it is now, with
        ``objects``, every object taken back as it is now (None: nothing to undo)."""
        undone = self.store.undo()
        if undone is None:
            return None
        shown = [self._undone(item) for item in undone["objects"]]
        return {**shown[-1], "objects": shown, "count": len(shown), "batch": undone["batch"]}

    def _undone(self, undone: dict) -> dict:
        undone = dict(undone)
        oid = undone.pop("object_id")
        if oid not in self.view.rows:  # a label of another survey sharing the label file
            return {"id": str(oid), "label": undone["label"], "undone": undone["undone"]}
        row = self.view.rows[oid]
        taken = undone.pop("undone")
        if taken["label"] != undone["label"] and taken["version"] == self.version and self.pending:
            self.pending -= 1  # a label given since the last re-ranking no longer counts
        if undone["time"] is None:
            self.records.pop(oid, None)
        else:
            self.records[oid] = undone
        self.labelled[row] = undone["label"] is not None
        return {**self.describe(row), "undone": taken}

    # -- clusters --------------------------------------------------------------------------

    def cluster_list(self, typical: int = TYPICAL) -> dict:
        """Each cluster's size, its ``typical`` most typical members (nearest the cluster's
        centre in the UMAP map, ids) and the labels given in it; without clusters, a ``hint``."""
        if self.clusters is None:
            return {"available": False, "hint": how_to_cluster(self.view.folder), "clusters": []}
        by_row = {self.view.rows[oid]: r["label"] for oid, r in self.records.items()}
        ids = self.view.object_ids
        clusters = [
            {**c, "typical": [str(int(ids[r])) for r in c["typical"]]}
            for c in self.clusters.summaries(by_row, typical)
        ]
        return {
            "available": True,
            "hint": None,
            "source": str(self.clusters.source),
            "clusters": clusters,
            "embedded": int(self.clusters.embedded.sum()),
            "noise": self.clusters.noise,
        }

    def map_points(self) -> dict:
        """The embedded objects' ids, UMAP x and y, clusters and labels, column by column."""
        if self.clusters is None:
            return {
                "available": False,
                "hint": how_to_cluster(self.view.folder),
                "ids": [],
                "x": [],
                "y": [],
                "cluster": [],
                "label": [],
            }
        rows = np.flatnonzero(self.clusters.embedded)
        ids = self.view.object_ids[rows]
        return {
            "available": True,
            "ids": [str(i) for i in ids.tolist()],
            "x": np.round(self.clusters.x[rows], 4).tolist(),
            "y": np.round(self.clusters.y[rows], 4).tolist(),
            "cluster": self.clusters.cluster[rows].tolist(),
            "label": [(self.records.get(i) or {}).get("label") for i in ids.tolist()],
        }

    def cluster_ids(self, cluster: int) -> list[int]:
        """The object ids of one cluster."""
        if self.clusters is None:
            raise InputError(how_to_cluster(self.view.folder))
        return [int(i) for i in self.view.object_ids[self.clusters.members(cluster)].tolist()]

    def ranking_labels(self) -> dict[int, str]:
        """The labels of this file's objects, object id -> label name, for the ranker."""
        return {oid: r["label"] for oid, r in self.records.items() if r["label"] is not None}

    # -- ranking (worker thread) -----------------------------------------------------------

    def start(self) -> None:
        """Build the ranker in the worker thread and render the first page ahead of the browser
        (call from the running event loop)."""
        self._spawn(self._build())
        self.prefetch(0, self.config.page_size, delay=0.0)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.ranker, space = await loop.run_in_executor(
                self._pool, self.ranker_factory, self.view
            )
        except Exception as exc:  # labelling goes on without re-ranking, whatever the cause
            reason = str(exc) if isinstance(exc, TfanomalyError) else f"{type(exc).__name__}: {exc}"
            self.ranker_state, self.ranker_message = "unavailable", reason
            self.echo(f"re-ranking is off: {reason}")
            return
        self.file_examples = list(getattr(self.ranker, "example_ids", []))
        self.ranker_message = f"re-ranking in {space}"
        if self.file_examples:
            self.ranker_message += f", from {len(self.file_examples)} example cutouts"
        if self.ranking_labels():  # a restart: continue from the labels given so far
            await self.rerank()
        elif self.query != "top" or self.examples or self.file_examples:
            # the anomaly order (or the examples'), the query's first batch in front
            await self.rerank(count=False)
        self.ranker_state = "ready"  # the queue in its first ranked order

    def schedule_rerank(self) -> None:
        due = self.pending >= self.config.rerank_every or self._seeded
        if due and self.ranker is not None:
            try:
                self._spawn(self.rerank())
            except RuntimeError:  # no running loop (a caller outside the server): rank later
                pass

    async def rerank(self, count: bool = True) -> None:
        """Re-rank with every label given so far; the queue takes the new order, the next
        ``rerank_every`` objects of the query strategy in front (``count``: a new version)."""
        if self.reranking or self.ranker is None:
            return
        self.reranking = True
        labels, counted, examples = self.ranking_labels(), self.pending, list(self.examples)
        seeds = examples + self.file_examples
        self._seeded = False
        started = time.perf_counter()
        query, batch = self.query, self.config.rerank_every
        try:
            order = await asyncio.get_running_loop().run_in_executor(
                self._pool,
                lambda: self.ranker.order(labels, seeds, query=query, batch=batch),
            )
        except Exception as exc:  # the queue keeps its order; the labels are stored anyway
            self.ranker_message = f"the last re-ranking failed: {type(exc).__name__}: {exc}"
            self.echo(self.ranker_message)
            return
        finally:
            self.reranking = False
        self.set_order(order[order < len(self.view)])  # not the example cutouts' rows
        if not count:
            self.schedule_rerank()
            return
        self.version += 1
        self.pending = max(0, self.pending - counted)
        seeded = f" and {len(seeds)} examples" if seeds else ""
        self.echo(
            f"ranking v{self.version}: re-ranked {len(self.view)} objects with "
            f"{len(labels)} labels{seeded} in {time.perf_counter() - started:.2f} s"
        )
        self.schedule_rerank()

    def set_query(self, query: str) -> dict:
        """Choose which objects open the queue (``models.query.QUERIES``); the queue is
        re-ranked at once when the ranker is ready (else when it is). Returns the state."""
        check_query(query)
        if query != self.query:
            self.query = query
            self._seeded = True  # due at once, or after the re-ranking under way
            self.schedule_rerank()
        return self.state()

    def _ready_ranker(self):
        if self.ranker is None:
            status = 503 if self.ranker_state == "building" else 409
            raise RankerNotReady(self.ranker_message, status)
        return self.ranker

    def like(self, object_id: int, keep: bool = True) -> dict:
        """ "Find more like this": ``object_id`` becomes (``keep``) or stops being an example the
        ranking is seeded with (a cold start before any interesting label), and the queue is
        re-ranked at once. Returns the examples."""
        self.row_of(object_id)
        self._ready_ranker()
        oid = int(object_id)
        if keep and oid not in self.examples:
            self.examples.append(oid)
        elif not keep and oid in self.examples:
            self.examples.remove(oid)
        else:
            return {"examples": [str(i) for i in self.examples]}
        self._seeded = True
        self.schedule_rerank()
        return {"examples": [str(i) for i in self.examples]}

    def explain(self, object_id: int) -> dict:
        """Why an object ranks where it does (``Ranker.explain`` under the current ranking), ids
        as text; the rank is the queue's."""
        row = self.row_of(object_id)
        why = self._ready_ranker().explain(int(object_id))
        why["object_id"] = str(why["object_id"])
        for near in why["neighbours"]:
            near["object_id"] = str(near["object_id"])
        why["rank"] = int(self.rank[row]) + 1
        return why

    def similar(self, object_id: int, k: int | None = None) -> list[dict]:
        """The objects nearest to one in the feature space, nearest first."""
        self.row_of(object_id)
        if self.ranker is None:
            status = 503 if self.ranker_state == "building" else 409
            raise RankerNotReady(self.ranker_message, status)
        ids = self.ranker.similar(object_id, k or self.config.similar)
        return [self.describe(self.view.rows[int(i)]) for i in ids]

    def close(self) -> None:
        for pool in (self._pool, self._render, self._prefetch):
            pool.shutdown(wait=False, cancel_futures=True)


class RankerNotReady(TfanomalyError):
    """Asked for similar objects before the feature index is built (503), or where none is (409)."""

    def __init__(self, message: str, status: int = 503):
        super().__init__(message)
        self.status = status
