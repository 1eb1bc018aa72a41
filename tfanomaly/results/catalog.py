"""Scored results: the results HDF5 (the paper's keys), sigma-normalisation statistics, catalogs in
FITS / CSV / Parquet, the high-anomaly selection, and merging the parts of a sharded run.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import atomic_path, write_json_atomic
from tfanomaly.models.scores import SCORES

# Derived from the one table of score names (tfanomaly.models.scores.SCORES): the inverter's
# output -> the results key; the results keys; the catalog column -> the results sigma key.
SCORE_OUTPUTS = {score.output: score.results for score in SCORES}
SCORE_KEYS = tuple(score.results for score in SCORES)
CATALOG_COLUMNS = {score.catalog: score.sigma for score in SCORES}
IMAGE_KEYS = ("reals", "reconstructed", "residuals")
# n_masked: the object's masked pixels over all bands (0 for data sets without a mask plane).
COLUMN_KEYS = ("idxs", "object_ids", "ra", "dec", "labels", "n_masked")
# Per-object vectors of the models' feature spaces (for characterisation, similarity search and
# learning from labels): the encoder's z, the critic features on the calibration's whitened
# principal axes, the residual image's shape descriptors (models.residual_shape) and the raw
# flux's morphology parameters (models.morphology). Inverter output -> results key.
VECTOR_OUTPUTS = {
    "z": "latents",
    "feature_axes": "feature_axes",
    "residual_shape": "residual_shape",
    "morphology": "morphology",
}
VECTOR_KEYS = tuple(VECTOR_OUTPUTS.values())
CATALOG_FORMATS = {".fits": "fits", ".csv": "ascii.csv", ".parquet": "parquet"}
STATS_FILE = "score_stats.json"


def score_statistics(results: dict[str, np.ndarray]) -> dict:
    """Mean and standard deviation of each raw score over a catalog: the sigma reference."""
    values = {key: np.asarray(results[key], dtype=np.float64) for key in SCORE_KEYS}
    return {
        key: {"mean": float(v.mean()), "std": float(v.std()), "count": int(len(v))}
        for key, v in values.items()
    }


def read_statistics(path) -> dict:
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read score statistics: {exc}") from exc
    missing = [k for k in SCORE_KEYS if k not in stats.get("scores", {})]
    if missing:
        raise InputError(f"{path}: not a tfanomaly {STATS_FILE} (missing {', '.join(missing)})")
    return stats["scores"]


def sigma_scores(results: dict[str, np.ndarray], stats: dict) -> dict[str, np.ndarray]:
    """z-scores of each raw score against the reference statistics."""
    out = {}
    for key in SCORE_KEYS:
        std = stats[key]["std"] or 1.0
        raw = np.asarray(results[key], dtype=np.float64)
        out[f"{key}_sigma"] = (raw - stats[key]["mean"]) / std
    return out


def write_results(
    path, columns: dict[str, np.ndarray], parts: list[Path], attrs: dict, stats: dict
) -> None:
    """Write the results HDF5 atomically: score and id columns, their sigma values, and the image
    cubes copied part by part from ``parts`` (so memory stays flat for any catalog size)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, values in {**columns, **sigma_scores(columns, stats)}.items():
            f.create_dataset(key, data=values)
        first = np.load(parts[0]) if parts else None
        cubes = [k for k in IMAGE_KEYS if first is not None and k in first.files]
        n = len(columns["object_ids"])
        for key in cubes:
            shape = first[key].shape[1:]
            f.create_dataset(
                key,
                (n, *shape),
                "float32",
                chunks=(min(n, 64), *shape),
                compression="gzip",
                compression_opts=1,
            )
        offset = 0
        for part in parts:
            with np.load(part) as data:
                count = len(data["object_ids"])
                for key in cubes:
                    f[key][offset : offset + count] = data[key]
                offset += count
        for key, value in attrs.items():
            f.attrs[key] = value if not isinstance(value, dict | list) else json.dumps(value)


def read_results(
    path, with_images: bool = False, with_vectors: bool = False
) -> tuple[dict[str, np.ndarray], dict]:
    """Columns (and optionally the image cubes and the feature vectors) and attributes of a
    results file."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.h5"
    if not path.exists():
        raise InputError(f"{path}: no such results file; run `tfanomaly score` first")
    try:
        with h5py.File(path, "r") as f:
            keys = [
                k
                for k in f.keys()
                if (with_images or k not in IMAGE_KEYS) and (with_vectors or k not in VECTOR_KEYS)
            ]
            columns = {k: f[k][:] for k in keys}
            attrs = {k: f.attrs[k] for k in f.attrs}
    except OSError as exc:
        raise InputError(f"{path}: not a readable results file: {exc}") from exc
    missing = [k for k in (*SCORE_KEYS, "object_ids", "idxs") if k not in columns]
    if missing:
        raise InputError(
            f"{path}: not a results file of this tfanomaly version (missing "
            f"{', '.join(missing)}); score the data again with `tfanomaly score`"
        )
    return columns, attrs


def read_cube(path, name: str, rows=None) -> np.ndarray:
    """The rows ``rows`` (default all; in the order given) of a results file's image cube
    (``reals``, ``reconstructed``, ``residuals``: stretched, (n, H, W, C)) or feature vectors
    (``latents``, ``feature_axes``: (n, D)), as float32."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.h5"
    if name not in (*IMAGE_KEYS, *VECTOR_KEYS):
        raise ConfigError(f"no cube '{name}'; choose one of {', '.join(IMAGE_KEYS + VECTOR_KEYS)}")
    if not path.exists():
        raise InputError(f"{path}: no such results file; run `tfanomaly score` first")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                hint = " (score with --store-images)" if name in IMAGE_KEYS else ""
                raise InputError(f"{path}: no '{name}' in the results{hint}")
            data = f[name]
            if rows is None:
                return data[:].astype(np.float32)
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
            if not len(rows):
                return np.empty((0, *data.shape[1:]), np.float32)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(data)):
                raise InputError(f"{path}: rows must be in 0-{len(data) - 1}")
            # h5py reads increasing unique rows; put them back in the order asked.
            unique, inverse = np.unique(rows, return_inverse=True)
            return data[unique].astype(np.float32)[inverse]
    except OSError as exc:
        raise InputError(f"{path}: not a readable results file: {exc}") from exc


def catalog_table(columns: dict[str, np.ndarray], kind_names=None):
    """An astropy Table with the catalog columns, sorted by the default score, highest first."""
    from astropy.table import Table

    table = Table()
    table["idx"] = columns["idxs"].astype(np.int64)
    table["object_id"] = columns["object_ids"].astype(np.uint64)
    table["ra"] = columns.get("ra", np.full(len(table), np.nan))
    table["dec"] = columns.get("dec", np.full(len(table), np.nan))
    for name, key in CATALOG_COLUMNS.items():
        table[name] = columns[key]
    table["n_masked"] = columns.get("n_masked", np.zeros(len(table), np.int32)).astype(np.int32)
    if "labels" in columns and (columns["labels"] >= 0).any():
        table["label"] = columns["labels"].astype(np.int64)
        if kind_names:
            names = list(kind_names)
            table["kind"] = [names[k] if 0 <= k < len(names) else "" for k in table["label"]]
    for name in ("umap_x", "umap_y", "cluster"):
        if name in columns:
            table[name] = columns[name]
    table.sort("score_normalized", reverse=True)
    return table


def write_catalog(table, path) -> Path:
    """Write a catalog atomically; the format follows the suffix (.fits, .csv, .parquet)."""
    path = Path(path)
    fmt = CATALOG_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown catalog format; use one of {', '.join(CATALOG_FORMATS)}"
        )
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True)
    return path


def select(table, key: str, sigma: float):
    """Rows whose ``key`` (a catalog column, e.g. score_normalized) exceeds sigma."""
    if key not in table.colnames:
        raise ConfigError(f"no catalog column '{key}'; choose one of {', '.join(CATALOG_COLUMNS)}")
    return table[table[key] > sigma]


def json_attr(value):
    """Attributes that hold structures are stored as JSON text in HDF5."""
    if isinstance(value, str | bytes):
        return json.loads(value) if value else None
    return value


def finalize(
    out_dir,
    columns,
    parts,
    attrs,
    reference=None,
    catalog_format=".fits",
    select_sigma=None,
    select_key="score_normalized",
) -> dict:
    """Sigma-normalise, write results.h5, score_stats.json and the catalog(s); return paths."""
    out_dir = Path(out_dir)
    # Scorers that do not read the mask plane (and results written before it) count none.
    columns = {"n_masked": np.zeros(len(columns["object_ids"]), np.int32), **columns}
    stats = read_statistics(reference) if reference else score_statistics(columns)
    write_results(out_dir / "results.h5", columns, parts, attrs, stats)
    write_json_atomic(
        out_dir / STATS_FILE,
        {
            "scores": stats,
            "reference": str(reference) if reference else "this catalog",
            "run": attrs.get("run"),
            "inversion": json_attr(attrs.get("inversion")),
        },
    )
    kind_names = json_attr(attrs.get("kind_names"))
    table = catalog_table({**columns, **sigma_scores(columns, stats)}, kind_names)
    written = {"results": out_dir / "results.h5", "stats": out_dir / STATS_FILE}
    written["catalog"] = write_catalog(table, out_dir / f"catalog{catalog_format}")
    if select_sigma is not None:
        chosen = select(table, select_key, select_sigma)
        name = f"catalog_sigma{select_sigma:g}{catalog_format}"
        written["selection"] = write_catalog(chosen, out_dir / name)
        written["n_selected"] = len(chosen)
    return written


def merge_results(result_dirs, out_dir, **finalize_options) -> dict:
    """Join the results of ``score --shard i/n`` runs and sigma-normalise over the union."""
    result_dirs = [Path(p) for p in result_dirs]
    merged: dict[str, list] = {}
    attrs = {}
    for folder in result_dirs:
        columns, attrs = read_results(folder, with_vectors=True)
        for key in (*SCORE_KEYS, *COLUMN_KEYS, *VECTOR_KEYS):
            if key in columns:
                merged.setdefault(key, []).append(columns[key])
    columns = {k: np.concatenate(v) for k, v in merged.items()}
    ids, counts = np.unique(columns["object_ids"], return_counts=True)
    if (counts > 1).any():
        raise InputError(
            f"object {int(ids[counts > 1][0])} appears in more than one of the merged results"
        )
    order = np.argsort(columns["idxs"], kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    attrs = {k: v for k, v in attrs.items() if k != "shard"}
    attrs["merged_from"] = json.dumps([str(p) for p in result_dirs])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return finalize(out_dir, columns, [], attrs, **finalize_options)
