"""The clusters of the characterisation step (``tfanomaly embed``) for the objects of a results
file: where each object lies in the UMAP map and which HDBSCAN cluster holds it, each cluster's
size and its most typical members, and the labels given in it.

They come from an ``embedding.h5`` when one is named, else from the columns ``umap_x``, ``umap_y``,
``cluster`` that ``embed`` adds to the catalog beside ``results.h5`` (``catalog.fits``,
``.parquet`` or ``.csv``). Objects are matched by id; those not embedded have no cluster (-1).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from tfanomaly.errors import InputError, UnreadableFileError

EMBEDDING_FILE = "embedding.h5"
CATALOG_NAMES = ("catalog.fits", "catalog.parquet", "catalog.csv")
CLUSTER_COLUMNS = ("umap_x", "umap_y", "cluster")
NOISE = -1  # HDBSCAN's label of objects in no cluster
TYPICAL = 6  # members shown per cluster


def how_to_cluster(results="RESULTS") -> str:
    """What to run to get clusters for a results folder (text with `code` spans)."""
    return (
        f"no clusters for these results: run `tfanomaly embed {results}` (UMAP + HDBSCAN of "
        "the high-anomaly sample; adds umap_x, umap_y, cluster to the catalog), or give "
        "`--embedding FILE` (an embedding.h5)"
    )


@dataclass
class ClusterMap:
    """UMAP positions and clusters of a results file's objects, row by row of that file.

    Attributes:
        x, y: UMAP coordinates (NaN where an object was not embedded).
        cluster: HDBSCAN cluster (-1: noise, or not embedded).
        source: the file they were read from.
    """

    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    source: Path
    _groups: dict[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def embedded(self) -> np.ndarray:
        return np.isfinite(self.x) & np.isfinite(self.y)

    def groups(self) -> dict[int, np.ndarray]:
        """Each cluster's rows, nearest to the cluster's centre in the map (its median) first."""
        if self._groups is None:
            rows = np.flatnonzero(self.embedded & (self.cluster != NOISE))
            order = rows[np.argsort(self.cluster[rows], kind="stable")]
            ids, starts = np.unique(self.cluster[order], return_index=True)
            self._groups = {}
            for c, members in zip(ids.tolist(), np.split(order, starts[1:]), strict=True):
                cx, cy = np.median(self.x[members]), np.median(self.y[members])
                distance = np.hypot(self.x[members] - cx, self.y[members] - cy)
                self._groups[int(c)] = members[np.argsort(distance, kind="stable")]
        return self._groups

    def members(self, cluster: int) -> np.ndarray:
        groups = self.groups()
        if int(cluster) not in groups:
            raise InputError(
                f"no cluster {cluster} (clusters: {_ranges(sorted(groups)) or 'none'})"
            )
        return groups[int(cluster)]

    def summaries(
        self, labels_by_row: dict[int, str] | None = None, typical: int = TYPICAL
    ) -> list[dict]:
        """Per cluster (in cluster order): ``cluster``, ``size``, ``typical`` (the rows of the
        ``typical`` members nearest the centre), ``labels`` ({label: count} of the labels given
        in it, from ``labels_by_row``: row -> label) and ``labelled`` (their sum)."""
        counts: dict[int, Counter] = {}
        for row, label in (labels_by_row or {}).items():
            c = int(self.cluster[row])
            if label and c != NOISE:
                counts.setdefault(c, Counter())[label] += 1
        out = []
        for c, members in self.groups().items():
            given = counts.get(c, Counter())
            out.append(
                {
                    "cluster": c,
                    "size": int(len(members)),
                    "typical": members[:typical],
                    "labels": dict(sorted(given.items())),
                    "labelled": int(sum(given.values())),
                }
            )
        return out

    @property
    def noise(self) -> int:
        """Objects embedded in the map but in no cluster."""
        return int((self.embedded & (self.cluster == NOISE)).sum())


def _ranges(values: list[int]) -> str:
    return ", ".join(map(str, values[:12])) + (" ..." if len(values) > 12 else "")


def _from_embedding(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("object_ids", *CLUSTER_COLUMNS) if k not in f]
            if missing:
                raise InputError(
                    f"{path}: not an embedding file of `tfanomaly embed` (missing "
                    f"{', '.join(missing)})"
                )
            return tuple(f[k][:] for k in ("object_ids", *CLUSTER_COLUMNS))
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 file: {exc}") from exc


def _from_catalog(path: Path) -> tuple[np.ndarray, ...] | None:
    """The catalog's ids and cluster columns; None when it has no cluster columns."""
    try:
        from pyarrow import ArrowException
    except ImportError:  # no pyarrow: a parquet catalog is unreadable (ImportError below)
        ArrowException = OSError  # noqa: N806
    names = ("object_id", *CLUSTER_COLUMNS)
    try:
        if path.suffix == ".csv":  # ids above 2**63 as exact integers, not as floats
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if not set(names) <= set(reader.fieldnames or ()):
                    return None
                rows = [[row[k] for k in names] for row in reader]
            ids = np.array([int(r[0]) for r in rows], dtype=np.uint64)
            x, y = (np.array([float(r[k] or "nan") for r in rows]) for k in (1, 2))
            cluster = np.array([int(float(r[3] or -1)) for r in rows], dtype=np.int64)
            return ids, x, y, cluster
        if path.suffix == ".parquet":  # pyarrow itself: astropy's reader wants pandas
            import pyarrow.parquet as pq

            if not set(names) <= set(pq.read_schema(path).names):
                return None
            table = pq.read_table(path, columns=list(names))
            return tuple(table.column(k).to_numpy() for k in names)
        from astropy.table import Table

        table = Table.read(path, format="fits")
        if not set(names) <= set(table.colnames):
            return None
        return tuple(np.asarray(table[k]) for k in names)
    except (OSError, ValueError, KeyError, ImportError, csv.Error, ArrowException) as exc:
        raise UnreadableFileError(f"{path}: not a readable catalog: {exc}") from exc


def load_clusters(results_file, object_ids: np.ndarray, embedding=None) -> ClusterMap | None:
    """The cluster map of a results file's objects (``object_ids``, its rows' ids), from
    ``embedding`` (an ``embedding.h5`` or the CAE folder holding one) or else from the first
    catalog beside ``results_file`` with the cluster columns; None when there is neither.

    Raises:
        InputError, UnreadableFileError: ``embedding`` named but missing or unreadable, or none of
            its objects in the results.
    """
    results_file = Path(results_file)
    folder = results_file if results_file.is_dir() else results_file.parent
    if embedding is not None:
        source = Path(embedding)
        source = source / EMBEDDING_FILE if source.is_dir() else source
        if not source.exists():
            raise InputError(f"{source}: no such embedding file; run `tfanomaly embed` first")
        columns = _from_embedding(source)
    else:
        for name in CATALOG_NAMES:
            source = folder / name
            columns = _from_catalog(source) if source.exists() else None
            if columns is not None:
                break
        else:
            return None
    ids, x, y, cluster = columns
    n = len(object_ids)
    where = {oid: row for row, oid in enumerate(np.asarray(object_ids, np.uint64).tolist())}
    full_x, full_y = np.full(n, np.nan), np.full(n, np.nan)
    full_cluster = np.full(n, NOISE, dtype=np.int64)
    found = 0
    for oid, xi, yi, ci in zip(
        np.asarray(ids).astype(np.uint64).tolist(),
        x.tolist(),
        y.tolist(),
        np.asarray(cluster).tolist(),
        strict=True,
    ):
        row = where.get(oid)
        if row is None or not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        full_x[row], full_y[row], full_cluster[row] = xi, yi, int(ci)
        found += 1
    if not found:
        if embedding is not None:
            raise InputError(
                f"{source}: none of its objects are in {results_file}; embed these "
                "results (`tfanomaly embed CAE --scores RESULTS`)"
            )
        return None
    return ClusterMap(full_x, full_y, full_cluster, source)
