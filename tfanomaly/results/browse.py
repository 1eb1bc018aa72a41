"""A tolerant, lazy view of a results file for browsing: tfanomaly's ``results.h5`` or the paper's
published ``results_gri_lambda0.3_3sigd.h5``; ids and scores in memory, image rows read on demand.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from tfanomaly.errors import InputError, UnreadableFileError
from tfanomaly.models.scores import SCORES
from tfanomaly.results.catalog import IMAGE_KEYS, VECTOR_KEYS, json_attr

RESULTS_FILE = "results.h5"
# What to rank by, in order of preference: tfanomaly's default score, then the paper's.
SORT_KEYS = ("scores_sigma", "anomaly_scores_sigma", "disc_scores_sigma", "gen_scores_sigma")
# Sigma columns in the order they are shown (the default score and its terms, the paper's three).
SIGMA_KEYS = tuple(score.sigma for score in SCORES)
# The h5py chunk cache per open dataset: the cubes are gzip chunks of 64 images, so a page of
# objects from all over the ranking decompresses each chunk once, not once per image.
CHUNK_CACHE_BYTES = 64 * 2**20


class ResultsView:
    """The objects of a results file as an explorer needs them.

    In memory: object ids, ids' rows, the sigma score columns, ra/dec, simulated labels; the image
    cubes (``reals``, ``reconstructed``, ``residuals``) and feature vectors (``latents``,
    ``feature_axes``) stay in the file and are read a row, or a column, at a time.

    Args:
        path: a results folder (its ``results.h5``) or a results HDF5 file in tfanomaly's layout or
            the paper's (``anomaly_scores``, ``disc_scores``, ``gen_scores`` with ``_sigma``,
            ``idxs``, ``object_ids``, optionally the cubes).

    Example:
        view = ResultsView("scores")
        rows = view.ranking()[:20]          # the 20 most anomalous rows
        real, reconstructed, residual = view.cubes(rows[0])
    """

    def __init__(self, path):
        path = Path(path)
        self.file = path / RESULTS_FILE if path.is_dir() else path
        self.folder = self.file.parent
        if not self.file.exists():
            raise InputError(f"{self.file}: no such results file; run `tfanomaly score` first")
        try:
            self._h5 = h5py.File(self.file, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)
        except OSError as exc:
            raise UnreadableFileError(f"{self.file}: not a readable HDF5 file: {exc}") from exc
        self.warnings: list[str] = []
        try:
            self._read_columns()
        except BaseException:
            self._h5.close()
            raise

    def _read_columns(self) -> None:
        f = self._h5
        if "object_ids" not in f:
            raise InputError(f"{self.file}: not a results file (no object_ids)")
        ids = f["object_ids"][:]
        self.count = n = len(ids)
        if np.issubdtype(ids.dtype, np.floating):
            self.warnings.append(
                "object ids are stored as floating point (the paper's float32 ids): they are "
                "rounded HSC ids, and labels are keyed by the rounded values"
            )
            ids = np.rint(ids.astype(np.float64))
        self.object_ids = ids.astype(np.uint64)
        self.rows: dict[int, int] = {}
        for row, oid in enumerate(self.object_ids.tolist()):
            self.rows.setdefault(oid, row)
        if len(self.rows) != n:
            self.warnings.append(
                f"{n - len(self.rows)} objects share their id with another; only the first of "
                "each can be labelled, and re-ranking is off"
            )
        self.sigma = {key: self._column(key) for key in self._sigma_keys()}
        self.sort_key = next((key for key in SORT_KEYS if key in self.sigma), None)
        if self.sort_key is None:
            raise InputError(f"{self.file}: no score to rank by (none of {', '.join(SORT_KEYS)})")
        self.layout = "tfanomaly" if "scores_sigma" in self.sigma else "paper"
        self.idxs = self._column("idxs", np.int64) if "idxs" in f else None
        self.ra = self._column("ra") if "ra" in f else np.full(n, np.nan)
        self.dec = self._column("dec") if "dec" in f else np.full(n, np.nan)
        self.kind_names = list(json_attr(f.attrs.get("kind_names", "")) or [])
        self.kinds = self._column("labels", np.int64) if "labels" in f else None
        self.has_images = all(key in f and len(f[key]) == n for key in IMAGE_KEYS)
        # Open once: HDF5's chunk cache belongs to an open dataset.
        self._cubes = [f[key] for key in IMAGE_KEYS] if self.has_images else []
        self.vector_keys = [key for key in VECTOR_KEYS if key in f and len(f[key]) == n]
        self.attrs = {key: f.attrs[key] for key in ("run", "data") if key in f.attrs}

    def _sigma_keys(self) -> list[str]:
        present = [
            key
            for key in self._h5
            if key.endswith("_sigma") and self._h5[key].shape == (self.count,)
        ]
        return [k for k in SIGMA_KEYS if k in present] + sorted(set(present) - set(SIGMA_KEYS))

    def _column(self, key: str, dtype=np.float64) -> np.ndarray:
        data = self._h5[key]
        if data.shape != (self.count,):
            raise InputError(
                f"{self.file}: '{key}' has shape {data.shape}, expected "
                f"({self.count},) as object_ids"
            )
        return data[:].astype(dtype)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> ResultsView:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count

    @property
    def sort_values(self) -> np.ndarray:
        return self.sigma[self.sort_key]

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(H, W, C) of the stored images; None without cubes."""
        return tuple(self._cubes[0].shape[1:]) if self.has_images else None

    @property
    def unique_ids(self) -> bool:
        return len(self.rows) == self.count

    def ranking(self) -> np.ndarray:
        """Rows by the sort key, highest first (NaN last; ties in file order)."""
        values = np.nan_to_num(self.sort_values, nan=-np.inf)
        return np.argsort(-values, kind="stable")

    def row_of(self, object_id: int) -> int:
        """The row of an object id (KeyError when the file has no such object)."""
        return self.rows[int(object_id)]

    def kind(self, row: int) -> str | None:
        """The simulated kind of a row (``normal``, ``merger``, ...); None for real surveys."""
        if self.kinds is None or not self.kind_names:
            return None
        k = int(self.kinds[row])
        return self.kind_names[k] if 0 <= k < len(self.kind_names) else None

    def cubes(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stretched real image, reconstruction and residual (H, W, C) of one row."""
        if not self.has_images:
            raise InputError(f"{self.file}: no image cubes stored")
        return tuple(np.asarray(cube[int(row)], dtype=np.float32) for cube in self._cubes)

    def vectors(self, key: str) -> np.ndarray:
        """A feature-vector column (``latents`` or ``feature_axes``), (N, D) float32."""
        if key not in self.vector_keys:
            raise InputError(
                f"{self.file}: no '{key}' vectors (has: {', '.join(self.vector_keys) or 'none'})"
            )
        return np.asarray(self._h5[key][:], dtype=np.float32)

    def images_hint(self) -> str:
        """What to run to get the image cubes into this file."""
        data = self.attrs.get("data", "DATA")
        run = self.attrs.get("run", "RUN")
        if not isinstance(run, str) or run.startswith("{"):
            run = "RUN"
        return (
            f"no image cubes in {self.file}: rerun `tfanomaly score {data} --run {run} --out "
            f"{self.folder} --store-images` to see the triptychs"
        )
