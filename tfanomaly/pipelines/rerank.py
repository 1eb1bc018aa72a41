"""Re-ranking a scored catalog with an astronomer's labels: the ``Ranker`` the explorer calls after
each batch of labels, similarity search, and ``rerank``, which writes the new order into the catalogs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import write_json_atomic
from tfanomaly.models.preference import (
    PreferenceConfig,
    asinh_columns,
    fit_preference,
    lift_bump,
    rejected_sink,
    standardised_columns,
)
from tfanomaly.models.query import DEFAULT_QUERY, batch_first, check_query, query_batch
from tfanomaly.models.relevance import (
    INTERESTING,
    LABELS,
    RelevanceConfig,
    anomaly_prior,
    check_labelled,
    label_targets,
    ranking_space,
    relevance,
)
from tfanomaly.results.catalog import (
    CATALOG_FORMATS,
    VECTOR_KEYS,
    VECTOR_OUTPUTS,
    read_results,
    write_catalog,
)
from tfanomaly.results.spaces import check_space, choose_space, space_vectors

ANOMALY_KEY = "scores_sigma"
RERANK_RECORD = "rerank.json"
METHODS = ("learned", "relevance")  # learned: models.preference; relevance: the nearest-label vote


class Ranker:
    """The ranking of one catalog, re-computed from the labels given so far.

    Args:
        object_ids: (N,) uint64 ids.
        anomaly: (N,) the unsupervised score in sigma units (higher = more anomalous).
        features: (N, D) the feature space similarity and relevance are measured in.
        config: the relevance knobs (``method="relevance"``).
        prepared: the features come from ``results.spaces.space_vectors`` (blocks already
            weighed against each other), not raw vectors to standardise.
        terms: name -> (N,) the score terms' sigma columns, which the learned ranking may use
            (and ``explain`` names).
        blocks: (name, width) of the features' blocks, side by side (``explain`` names them).
        method: ``learned`` (default: a gated classifier of the labels, ``models.preference``)
            or ``relevance`` (the nearest-label vote, ``models.relevance``).
        preference: the learned ranking's knobs.
    """

    def __init__(
        self,
        object_ids,
        anomaly,
        features,
        config: RelevanceConfig | None = None,
        *,
        prepared: bool = False,
        terms: dict | None = None,
        blocks=None,
        method: str = "learned",
        preference: PreferenceConfig | None = None,
    ):
        self.object_ids = np.asarray(object_ids, dtype=np.uint64)
        self.anomaly = np.asarray(anomaly, dtype=np.float64)
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        n = len(self.object_ids)
        if self.anomaly.shape != (n,) or self.features.ndim != 2 or len(self.features) != n:
            raise InputError(
                f"ranker: {n} ids, anomaly {self.anomaly.shape}, features {self.features.shape}"
            )
        self.config = config or RelevanceConfig()
        self.config.validate()
        self._rows = {int(i): r for r, i in enumerate(self.object_ids)}
        if len(self._rows) != n:
            raise InputError("ranker: object ids are not unique")
        # What every re-rank and similarity query needs, computed once: the ranking space
        # (standardised features and the anomaly coordinate) and the anomaly on its scale.
        self._space = ranking_space(self.anomaly, self.features, self.config, prepared=prepared)
        self._unit = np.ascontiguousarray(self._space[:, :-1])  # similarity: the features alone
        self._norms = (self._unit * self._unit).sum(axis=1)
        self._prior = anomaly_prior(self.anomaly, self.config.anomaly_scale)
        if method not in METHODS:
            raise ConfigError(
                f"unknown ranking method '{method}'; choose one of {', '.join(METHODS)}"
            )
        self.method = method
        self.preference = preference or PreferenceConfig()
        self.preference.validate()
        # The learned ranking's design: the features (standardised, clipped), the score terms and
        # the prior (robust z through asinh: preference.asinh_columns); the names ``explain``
        # groups the columns by.
        terms = {k: np.asarray(v, dtype=np.float64) for k, v in (terms or {}).items()}
        for key, values in terms.items():
            if values.shape != (n,):
                raise InputError(f"ranker: score term {key} has shape {values.shape}, not ({n},)")
        widths = list(blocks) if blocks else [("features", self.features.shape[1])]
        if sum(w for _, w in widths) != self.features.shape[1]:
            raise InputError(f"ranker: blocks {widths} do not add up to the features' width")
        self._columns = [name for name, w in widths for _ in range(w)]
        self._columns += [*terms, "anomaly score"]
        scores = np.stack([*terms.values(), self._prior], axis=1)
        self._design = np.concatenate(
            [standardised_columns(self._unit), asinh_columns(scores)], axis=1
        )
        self.fitted = None  # the last learned fit (``explain`` reads it)
        self._lifted = None
        self.last_score = None
        self._given: dict[int, str] = {}
        self.version = 0
        self.space = "the given features"  # from_results names the space it read
        self.example_ids: list[int] = []  # objects from example cutouts (from_results)

    @classmethod
    def from_results(
        cls, results_dir, feature_key: str | None = None, config=None, *, examples=None, **kwargs
    ) -> Ranker:
        """A ranker over a tfanomaly results folder (its ``results.h5``), in the feature space
        ``feature_key`` (``results.spaces.SPACES``); without one, the default space, or the first
        space the file has when it was scored before the default's vectors existed. The space
        used is the ranker's ``space``. ``examples``: the columns of example cutouts that are not
        in the catalog (:func:`example_columns`), added as objects of their own whose ids are the
        ranker's ``example_ids`` (give them as ``like`` to rank objects like them first)."""
        results_dir = Path(results_dir)
        columns, _ = read_results(results_dir, with_vectors=True)
        example_ids: list[int] = []
        if examples:
            columns, example_ids = with_examples(columns, examples)
        key, _ = choose_space(feature_key, columns, results_dir / "results.h5", "--features")
        vectors = space_vectors(lambda k: columns[k], key)
        terms = {k: columns[k] for k in sorted(columns) if k.endswith("_sigma")}
        blocks = [(block, columns[block].shape[1]) for block in check_space(key)]
        ranker = cls(
            columns["object_ids"],
            columns[ANOMALY_KEY],
            vectors,
            config,
            prepared=True,
            terms=terms,
            blocks=blocks,
            **kwargs,
        )
        ranker.space = key
        ranker.example_ids = example_ids
        return ranker

    def rows_of(self, object_ids, where="labels") -> np.ndarray:
        """Row indices of these object ids; an id not in the catalog is an InputError."""
        rows = [self._rows.get(int(i), -1) for i in object_ids]
        if -1 in rows:
            missing = int(list(object_ids)[rows.index(-1)])
            raise InputError(f"{where}: object {missing} is not in this catalog")
        return np.array(rows, dtype=np.int64)

    def _labelled(self, labels: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
        return self.rows_of(list(labels)), label_targets(list(labels.values()))

    def scores(self, labels: dict[int, str], like=()) -> np.ndarray:
        """(N,) the score to rank by under these labels (object id -> label name) and the example
        ids ``like`` (objects like these are wanted: interesting examples, unless labelled)."""
        labels = {**{int(i): INTERESTING for i in like}, **labels}
        rows, targets = self._labelled(labels)
        rows, targets = check_labelled(rows, targets, len(self._prior))
        self.version += 1
        self.fitted = None
        self._lifted = None  # the lift of the classifier's best matches (explain reads it)
        if len(rows) == 0:
            score = self._prior.copy()
        elif self.method == "relevance":
            score = self._prior + self.config.weight * relevance(
                self._space, rows, targets, self.config
            )
        else:
            self.fitted = fit_preference(self._design, rows, targets, self.preference)
            if self.fitted is not None and any(labels.get(int(i)) == INTERESTING for i in like):
                # Examples are the astronomer's statement of what they want, not evidence to
                # test: the classifier is trusted from the first one (a cold start).
                self.fitted.gate = max(self.fitted.gate, self.preference.example_gate)
            score = self._prior.copy()
            if self.fitted is None:  # other labels only: their neighbourhoods sink
                score -= rejected_sink(self._unit, rows, self.preference)
            else:
                gate, knobs = self.fitted.gate, self.preference
                if gate > 0 or knobs.lift > 0:
                    unit = self.fitted.unit_logit(self._design)
                    score += knobs.weight * gate * unit
                    if knobs.lift > 0 and gate < 1:
                        self._lifted = (
                            knobs.lift * (1 - gate) * lift_bump(unit, knobs.lift_fraction)
                        )
                        score += self._lifted
        self._given = labels
        self.last_score = score
        return score.copy()

    def order(
        self, labels: dict[int, str], like=(), query: str = "top", batch: int = 10
    ) -> np.ndarray:
        """Row indices, best first; the labelled objects last. ``query``: the strategy of the next
        ``batch`` objects to label (``models.query``), moved to the front (``top``: the ranking's
        own order)."""
        score = self.scores(labels, like)
        rows, _ = self._labelled(labels)
        score[rows] = -np.inf
        if check_query(query) == "top":
            return np.argsort(-score, kind="stable")
        return batch_first(score, self.rows_of(self.to_label(query, batch)))

    def to_label(self, query: str = DEFAULT_QUERY, size: int = 10) -> list[int]:
        """Ids of the next ``size`` objects to label under the last :meth:`scores` (the anomaly
        order before any), chosen by the strategy ``query`` (``models.query.QUERIES``): never an
        object labelled or given as an example."""
        score = self.last_score if self.last_score is not None else self._prior
        labelled = np.zeros(len(score), bool)
        labelled[self.rows_of(list(self._given))] = True
        fitted = self.fitted

        def boundary(rows):
            return self._design[rows] @ fitted.coef.astype(np.float32) + fitted.intercept

        rows = query_batch(
            query,
            score,
            labelled,
            self._unit,
            size,
            boundary=None if fitted is None else boundary,
        )
        return [int(i) for i in self.object_ids[rows]]

    def explain(self, object_id: int, top: int = 5, neighbours: int = 3) -> dict:
        """Why ``object_id`` ranks where it does under the last :meth:`scores`: its rank and score,
        the ``top`` largest contributions to the score (the anomaly score's prior, then the score
        terms and feature blocks through the learned classifier, by size), and its ``neighbours``
        nearest labelled objects (id, label, distance in the feature space).

        Returns:
            dict with ``object_id``, ``rank`` (1 = first), ``score``, ``gate`` (the classifier's
            trust, 0-1), ``cv_auroc``, ``contributions`` [{name, value}], ``neighbours``
            [{object_id, label, distance}] and a one-line ``summary``.
        """
        if int(object_id) not in self._rows:
            raise InputError(f"object {int(object_id)} is not in this catalog")
        row = self._rows[int(object_id)]
        score = self.last_score if self.last_score is not None else self._prior
        rank = int((score > score[row]).sum()) + 1
        contributions = [{"name": "anomaly score", "value": float(self._prior[row])}]
        learned = []
        fitted = self.fitted
        if fitted is not None and fitted.gate > 0:
            pull = self.preference.weight * fitted.gate / fitted.scale
            parts = pull * fitted.coef * self._design[row]
            grouped: dict[str, float] = {}
            for name, value in zip(self._columns, parts, strict=True):
                grouped[name] = grouped.get(name, 0.0) + float(value)
            learned = [
                {"name": f"{name} (labels)", "value": value} for name, value in grouped.items()
            ]
        elif self.method == "relevance" and self._given:
            learned = [
                {"name": "labelled neighbours", "value": float(score[row] - self._prior[row])}
            ]
        lifted = 0.0 if self._lifted is None else float(self._lifted[row])
        if lifted > 0:
            learned.append({"name": "a best match of the labels' classifier", "value": lifted})
        learned.sort(key=lambda c: -abs(c["value"]))
        contributions += learned[: max(0, top - 1)]
        near = []
        if self._given and neighbours > 0:
            ids = [i for i in self._given if i != int(object_id)]
            if ids:
                rows = self.rows_of(ids)
                diff = self._unit[rows] - self._unit[row]
                d = np.sqrt((diff * diff).sum(axis=1))
                for k in np.argsort(d, kind="stable")[:neighbours]:
                    near.append(
                        {
                            "object_id": int(ids[k]),
                            "label": self._given[ids[k]],
                            "distance": round(float(d[k]), 4),
                        }
                    )
        if fitted is None or fitted.gate == 0:
            why = (
                "the anomaly score alone"
                if not self._given or self.method == "learned"
                else "the anomaly score and its labelled neighbours"
            )
            if lifted > 0:
                why += ", lifted as one of the best matches of the labels' classifier"
            if self._given and self.method == "learned":
                why += " (the labels do not yet separate in cross-validation)"
        else:
            main = [c["name"] for c in learned[:2]]
            why = (
                f"the anomaly score and the labels' classifier (trust {fitted.gate:.2f}, "
                f"cross-validated AUROC {fitted.cv_auroc:.2f}), mostly through "
                f"{' and '.join(main)}"
            )
        return {
            "object_id": int(object_id),
            "rank": rank,
            "score": float(score[row]),
            "gate": 0.0 if fitted is None else float(fitted.gate),
            "cv_auroc": None if fitted is None else float(fitted.cv_auroc),
            "contributions": contributions,
            "neighbours": near,
            "summary": f"rank {rank}: {why}",
        }

    def similar(self, object_id: int, k: int = 12) -> list[int]:
        """Ids of the k objects nearest to ``object_id`` in the feature space (not itself)."""
        if int(object_id) not in self._rows:
            raise InputError(f"object {int(object_id)} is not in this catalog")
        row = self._rows[int(object_id)]
        d2 = self._norms - 2.0 * (self._unit @ self._unit[row]) + self._norms[row]
        d2[row] = np.inf
        k = min(k, len(d2) - 1)
        near = np.argpartition(d2, k - 1)[:k] if k > 0 else np.array([], dtype=np.int64)
        near = near[np.argsort(d2[near], kind="stable")]
        return [int(self.object_ids[r]) for r in near]


def with_examples(columns: dict, examples: dict) -> tuple[dict, list[int]]:
    """The results ``columns`` (``object_ids``, the ``*_sigma`` keys, the vector keys) with the
    example rows ``examples`` (:func:`example_columns`) appended under new ids after the
    catalog's largest, and those ids; every key the ranker reads must be in both."""
    ids = np.asarray(columns["object_ids"], dtype=np.uint64)
    count = {len(np.asarray(v)) for v in examples.values()}
    if len(count) != 1:
        raise InputError(f"examples: columns of different lengths {sorted(count)}")
    (e,) = count
    first = int(ids.max()) + 1 if len(ids) else 0
    if first + e > np.iinfo(np.uint64).max:
        raise InputError("examples: no free object ids above the catalog's")
    joined = {}
    for key, values in columns.items():
        if key == "object_ids":
            joined[key] = np.concatenate([ids, np.arange(first, first + e, dtype=np.uint64)])
        elif key.endswith("_sigma") or key in VECTOR_KEYS:  # ANOMALY_KEY among them
            if key not in examples:
                raise InputError(f"examples: no '{key}' values (the catalog has them)")
            extra = np.asarray(examples[key], values.dtype)
            if extra.ndim == 2 and values.ndim == 2 and extra.shape[1] != values.shape[1]:
                if extra.shape[1] < values.shape[1]:
                    raise InputError(
                        f"examples: '{key}' vectors of {extra.shape[1]} values, the catalog's "
                        f"have {values.shape[1]}"
                    )
                # a catalog scored before later parameters (which come last) has the first ones
                extra = extra[:, : values.shape[1]]
            joined[key] = np.concatenate([values, extra])
    return joined, list(range(first, first + e))


def read_example_cutouts(path) -> np.ndarray:
    """(E, H, W, C) raw flux of the example cutouts in ``path`` (a survey file ``ingest``
    reads); an InputError naming the file when it holds none."""
    from tfanomaly.data.readers import open_source

    source = open_source(path)
    if source.count == 0:
        raise InputError(f"{path}: no cutouts to use as examples")
    return np.asarray(source.read(0, source.count).images, dtype=np.float32)


def example_columns(results_dir, images, *, run_dir=None, batch_size: int = 64) -> dict:
    """Example cutouts that are not in a scored catalog, scored as it was: raw flux ``images``
    (E, H, W, C), bands last, through the run that scored ``results_dir`` (or ``run_dir``) with
    the catalog's inversion settings and sigma reference (its ``score_stats.json``). Returns the
    ``*_sigma`` score keys and the vector keys ``results.h5`` has, for
    ``Ranker.from_results(examples=...)``."""
    from tfanomaly.models.scores import SCORES
    from tfanomaly.pipelines.export import build_scorer
    from tfanomaly.serving.saved_model import call_in_batches

    results_dir = Path(results_dir)
    if run_dir is None:
        with h5py.File(results_dir / "results.h5", "r") as f:
            run_dir = str(f.attrs.get("run", ""))
        if not run_dir or not Path(run_dir).is_dir():
            raise ConfigError(
                f"{results_dir}: scored by '{run_dir}', not a run folder here: give the run "
                "that scored it (--run)"
            )
    images = np.asarray(images, dtype=np.float32)
    scorer, made = build_scorer(run_dir, scores_dir=results_dir)
    shape = tuple(made["shape"])
    if images.ndim != 4 or images.shape[1:] != shape:
        raise InputError(
            f"example cutouts of shape {images.shape[1:]}: the run {run_dir} takes {shape} "
            "(height, width, bands)"
        )
    out = call_in_batches(scorer.describe, batch_size, images)
    columns = {s.sigma: out[f"{s.output}_sigma"] for s in SCORES if f"{s.output}_sigma" in out}
    columns.update({key: out[name] for name, key in VECTOR_OUTPUTS.items() if name in out})
    return columns


def features_from_cubes(
    h5_path, cube: str = "residuals", size: int = 8, components: int = 16, *, chunk: int = 1024
) -> np.ndarray:
    """Features for results files without vectors (the paper's results HDF5 has only scores and
    image cubes): each image of ``cube`` area-averaged to size x size, then projected on the
    ``components`` leading principal axes. Two passes of ``chunk`` images each (the mean and
    covariance in float64, then the projection), so the cube is never in memory whole.

    Returns:
        (N, components) float32, the projections in the file's row order.
    """
    import h5py

    path = Path(h5_path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file: {exc}") from exc
    with handle as f:
        if cube not in f:
            raise InputError(f"{path}: no '{cube}' cube (has: {', '.join(sorted(f.keys()))})")
        data = f[cube]
        if data.ndim not in (3, 4):
            raise InputError(f"{path}: '{cube}' has shape {data.shape}, not (N, H, W[, C])")
        n, height, width = data.shape[:3]
        if size < 1 or height % size or width % size:
            raise InputError(
                f"{path}: {height}x{width} images do not area-average to {size}x{size}"
            )
        if not 1 <= components <= size * size * (data.shape[3] if data.ndim == 4 else 1):
            raise ConfigError(f"components must be between 1 and the {size}x{size} pixel count")

        def small(start: int) -> np.ndarray:
            block = np.asarray(data[start : start + chunk], dtype=np.float64)
            block = block.reshape(len(block), size, height // size, size, width // size, -1)
            return block.mean(axis=(2, 4)).reshape(len(block), -1)

        total, outer = 0.0, 0.0
        for start in range(0, n, chunk):
            block = small(start)
            total = total + block.sum(axis=0)
            outer = outer + block.T @ block
        mean = total / max(n, 1)
        covariance = outer / max(n, 1) - np.outer(mean, mean)
        _, vectors = np.linalg.eigh(covariance)
        axes = vectors[:, ::-1][:, :components]
        # A fixed sign per axis (largest loading positive), so the features do not flip between
        # files or library versions.
        axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(components)])
        out = np.empty((n, components), dtype=np.float32)
        for start in range(0, n, chunk):
            out[start : start + chunk] = (small(start) - mean) @ axes
    return out


def read_catalog(path):
    """A catalog as an astropy Table with exact uint64 object ids, whatever its format (CSV ids
    above 2**63 would otherwise come back as text; Parquet is read with pyarrow, which astropy's
    reader needs pandas for)."""
    from astropy.io import ascii
    from astropy.table import Table

    path = Path(path)
    fmt = CATALOG_FORMATS.get(path.suffix.lower())
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq
            from pyarrow import types

            arrow = pq.read_table(path)
            table = Table()
            for name in arrow.column_names:
                column = arrow.column(name)
                if types.is_string(column.type) or types.is_large_string(column.type):
                    table[name] = np.array(column.to_pylist(), dtype=str)
                else:
                    table[name] = column.to_numpy()
        elif fmt == "ascii.csv":
            table = Table.read(
                path, format=fmt, converters={"object_id": [ascii.convert_numpy(np.uint64)]}
            )
        else:
            table = Table.read(path, format=fmt)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable catalog: {exc}") from exc
    if "object_id" not in table.colnames:
        raise InputError(f"{path}: no object_id column")
    return table


def rerank(
    results_dir,
    labels: dict[int, str],
    *,
    feature_key=None,
    config=None,
    like=(),
    like_cutouts=None,
    run_dir=None,
    query: str = DEFAULT_QUERY,
    batch: int = 10,
    echo=print,
) -> dict:
    """Re-rank a results folder under ``labels`` (object id -> label name): every catalog in it
    (``catalog*.fits/.csv/.parquet``) is written again, rows in their old order with every old
    column, plus ``rerank_score`` (higher first), ``to_label`` (1 to ``batch``: the next objects
    to label, in showing order, chosen by the strategy ``query`` of ``models.query``; 0 for the
    others) and ``rerank_rank`` (1 = first, over the whole results file: the order the explorer's
    queue shows, the batch to label first, then every other object by score, labelled ones
    included). ``RESULTS/rerank.json`` records the ranking's version
    (one more than the last one written there), the labels' count, the batch to label and the
    settings. ``like``: ids of example objects (a cold start), ranked as interesting labels;
    ``like_cutouts``: a file of example cutouts that are not in the catalog (any survey file
    ``ingest`` reads: HDF5, .npy/.npz, a folder of FITS files), scored by the run that scored
    the catalog (or ``run_dir``) and ranked as interesting examples too.

    Returns:
        dict with ``catalogs`` (paths written), ``record`` (the rerank.json path), ``version``,
        ``n_labels``, ``features`` and ``to_label`` (the batch's ids).
    """
    results_dir = Path(results_dir)
    check_query(query)
    if batch < 1:
        raise ConfigError(f"the batch to label needs at least one object, got {batch}")
    examples = None
    if like_cutouts is not None:
        images = read_example_cutouts(like_cutouts)
        examples = example_columns(results_dir, images, run_dir=run_dir)
    ranker = Ranker.from_results(results_dir, feature_key, config, examples=examples)
    feature_key = ranker.space
    like = [int(i) for i in like]
    ranker.rows_of(like, where="--like")
    # The example cutouts are rows after the catalog's: they seed the ranking, not the catalogs.
    catalog_rows = len(ranker.object_ids) - len(ranker.example_ids)
    score = ranker.scores(labels, like=like + ranker.example_ids)[:catalog_rows]
    to_label = ranker.to_label(query, batch)
    first = ranker.rows_of(to_label)
    position = np.zeros(len(score), dtype=np.int64)
    position[first] = np.arange(1, len(first) + 1)
    # The order to look at objects in, as the explorer's queue shows it: the batch to label, then
    # every other object by score (a user who labels "the top of the ranking" labels the batch).
    order = batch_first(score, first)
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    written = []
    for path in sorted(results_dir.glob("catalog*")):
        if path.suffix.lower() not in CATALOG_FORMATS or path.name.startswith("."):
            continue
        table = read_catalog(path)
        rows = ranker.rows_of(np.asarray(table["object_id"], dtype=np.uint64), where=path)
        table["rerank_score"] = score[rows]
        table["rerank_rank"] = rank[rows]
        table["to_label"] = position[rows]
        write_catalog(table, path)
        written.append(path)
    record_path = results_dir / RERANK_RECORD
    previous = 0
    if record_path.exists():
        try:
            previous = int(json.loads(record_path.read_text()).get("version", 0))
        except (OSError, ValueError, AttributeError):
            previous = 0  # a damaged record only restarts the count
    counts = {name: sum(1 for v in labels.values() if v == name) for name in LABELS}
    record = {
        "version": previous + 1,
        "n_labels": len(labels),
        "labels": counts,
        "like": [str(i) for i in like],
        "like_cutouts": {"path": str(like_cutouts), "count": len(ranker.example_ids)}
        if like_cutouts is not None
        else None,
        "query": query,
        "to_label": [str(i) for i in to_label],
        "method": ranker.method,
        "preference": dataclasses.asdict(ranker.preference),
        "features": feature_key,
        "relevance": dataclasses.asdict(ranker.config),
        "catalogs": [p.name for p in written],
    }
    write_json_atomic(record_path, record)
    given = len(like) + len(ranker.example_ids)
    seeded = f" and {given} examples" if given else ""
    echo(
        f"re-ranked {len(score)} objects with {len(labels)} labels "
        f"({', '.join(f'{c} {n}' for n, c in counts.items())}){seeded} in {feature_key}, version "
        f"{record['version']}: {', '.join(map(str, written)) or 'no catalogs'}; next to label "
        f"({query}): {len(to_label)} objects in the column to_label"
    )
    return {
        "catalogs": written,
        "record": record_path,
        "version": record["version"],
        "n_labels": len(labels),
        "features": feature_key,
        "to_label": to_label,
    }


def read_labels(path) -> dict[int, str]:
    """The current labels, object id -> label name: from the explorer's SQLite label store
    (``tfanomaly.results.labels.LabelStore``), or from a label table (.csv or .fits with columns
    object_id,label, as ``tfanomaly.results.labels`` exports them). Objects with tags or notes
    but no label are left out."""
    from tfanomaly.results.labels import TABLE_FORMATS, LabelStore, read_label_table

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such label file")
    if path.suffix.lower() in TABLE_FORMATS:
        records = read_label_table(path)
        if records and "label" not in records[0]:
            raise InputError(f"{path}: a label table needs the columns object_id,label")
        labels = {record["object_id"]: record["label"] for record in records}
    else:
        with LabelStore(path) as store:
            labels = {i: record["label"] for i, record in store.current().items()}
    return {i: label for i, label in labels.items() if label is not None}
