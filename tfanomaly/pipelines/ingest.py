"""Ingest survey cutouts into a folder of sharded TFRecord files plus ``manifest.json``.

Shards are written one at a time and renamed into place; a data set is complete only once its
manifest exists, and an interrupted ingest resumes from its last finished shard.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import tfanomaly
from tfanomaly.data.manifest import FORMAT, FORMAT_VERSION, MANIFEST, STATE
from tfanomaly.data.readers import CutoutBatch, check_unique_ids, open_source
from tfanomaly.data.schema import FEATURES, serialize_cutout
from tfanomaly.errors import DatasetError, InputError
from tfanomaly.fileio import atomic_path, sha256_file, write_json_atomic
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.loop import Ledger


def shard_name(index: int, total: int) -> str:
    return f"cutouts-{index:05d}-of-{total:05d}.tfrecord"


def apply_nan_policy(batch: CutoutBatch, config: IngestConfig) -> tuple[CutoutBatch, dict]:
    """Apply the NaN/inf policy to a batch; return the batch to write and what was done."""
    finite = np.isfinite(batch.images)
    bad_objects = np.flatnonzero(~finite.all(axis=(1, 2, 3)))
    counts = {"objects_with_nonfinite": len(bad_objects), "pixels_filled": 0, "dropped_ids": []}
    if not len(bad_objects):
        return batch, counts
    if config.nan_policy == "error":
        k = bad_objects[0]
        n_bad = int((~finite[k]).sum())
        raise InputError(
            f"{batch.origins[k]}: {n_bad} NaN/inf pixel(s); use --nan fill to replace them with "
            f"{config.fill_value:g} or --nan drop to leave such cutouts out"
        )
    if config.nan_policy == "fill":
        counts["pixels_filled"] = int((~finite).sum())
        batch.images[~finite] = config.fill_value
        return batch, counts
    keep = np.ones(len(batch), dtype=bool)
    keep[bad_objects] = False
    counts["dropped_ids"] = [int(i) for i in batch.object_ids[bad_objects]]
    kept = CutoutBatch(
        batch.start,
        batch.images[keep],
        batch.object_ids[keep],
        batch.idxs[keep],
        batch.ra[keep],
        batch.dec[keep],
        batch.labels[keep],
        origins=[o for o, k in zip(batch.origins, keep, strict=True) if k],
    )
    return kept, counts


def _write_shard(path: Path, batch: CutoutBatch) -> None:
    import tensorflow as tf

    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for k in range(len(batch)):
                writer.write(
                    serialize_cutout(
                        batch.images[k],
                        batch.object_ids[k],
                        batch.idxs[k],
                        batch.ra[k],
                        batch.dec[k],
                        batch.labels[k],
                    )
                )


def _prepare_output(out_dir: Path, overwrite: bool, job: dict) -> Ledger:
    """Check the output folder; return its ledger, holding the shards already finished by an
    identical earlier run."""
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        if not overwrite:
            raise DatasetError(
                f"{out_dir}: already holds a complete data set ({MANIFEST}); "
                "pass --overwrite to replace it"
            )
        manifest_path.unlink()  # from here on the folder no longer looks complete
    if out_dir.exists():
        ours = {MANIFEST, STATE}
        foreign = [
            p.name
            for p in out_dir.iterdir()
            if p.name not in ours and not (p.name.startswith("cutouts-") or p.name.startswith("."))
        ]
        if foreign:
            raise DatasetError(
                f"{out_dir}: folder is not empty and not a tfanomaly data set "
                f"(holds {', '.join(sorted(foreign)[:3])}); choose another output folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (out_dir / STATE).unlink(missing_ok=True)

    def clear():
        for stale in out_dir.glob("cutouts-*.tfrecord"):
            stale.unlink()

    ledger = Ledger(out_dir / STATE, job)
    ledger.resume("restart", clear=clear)
    return ledger


def ingest(
    source_path,
    out_dir,
    config: IngestConfig | None = None,
    *,
    bands=None,
    object_ids_path=None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Ingest cutouts from ``source_path`` (HDF5, .npy/.npz, FITS folder) into ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). Rerunning after an interrupt
    resumes from the last finished shard when the input and options are unchanged.

    Example:
        >>> manifest = ingest("survey.h5", "survey_tfrecords", IngestConfig(shard_size=1024))
    """
    config = config or IngestConfig()
    config.validate()
    started = time.perf_counter()
    source = open_source(source_path, bands=bands, object_ids_path=object_ids_path)
    check_unique_ids(source.object_ids(), str(source.path))
    out_dir = Path(out_dir)
    n_shards = math.ceil(source.count / config.shard_size)
    job = {
        "source": source.fingerprint(),
        "config": asdict(config),
        "shape": list(source.shape),
        "bands": list(source.bands),
    }
    ledger = _prepare_output(out_dir, overwrite, job)
    done = list(ledger.units)
    done_files = {s["file"] for s in done}
    bar = tqdm(
        total=source.count,
        unit="cutout",
        desc=f"ingest {Path(source_path).name}",
        disable=not progress,
        initial=sum(s["input_count"] for s in done),
    )
    for index in range(n_shards):
        name = shard_name(index, n_shards)
        if name in done_files:
            continue
        start, stop = index * config.shard_size, min((index + 1) * config.shard_size, source.count)
        batch, counts = apply_nan_policy(source.read(start, stop), config)
        _write_shard(out_dir / name, batch)
        ledger.add(
            {
                "file": name,
                "count": len(batch),
                "input_count": stop - start,
                "bytes": (out_dir / name).stat().st_size,
                "sha256": sha256_file(out_dir / name),
                "has_labels": bool((batch.labels >= 0).any()),
                "label_counts": _label_counts(batch.labels),
                "has_sky_positions": bool(np.isfinite(batch.ra).any()),
                **counts,
            }
        )
        bar.update(stop - start)
    bar.close()
    shards = sorted(ledger.units, key=lambda s: s["file"])
    manifest = _manifest(source, config, shards, time.perf_counter() - started)
    write_json_atomic(out_dir / MANIFEST, manifest)
    ledger.close()
    return manifest


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels[labels >= 0], return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def _manifest(source, config: IngestConfig, shards: list[dict], seconds: float) -> dict:
    dropped = [i for s in shards for i in s["dropped_ids"]]
    count = sum(s["count"] for s in shards)
    label_counts: dict[str, int] = {}
    for shard in shards:
        for label, n in shard["label_counts"].items():
            label_counts[label] = label_counts.get(label, 0) + n
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": count,
        "shape": list(source.shape),
        "layout": "HWC",
        "bands": list(source.bands),
        "dtype": "float32",
        "units": "raw flux as in the input (not stretched)",
        "features": list(FEATURES),
        "has_labels": any(s["has_labels"] for s in shards),
        "kind_names": source.kind_names,
        "label_counts": dict(sorted(label_counts.items(), key=lambda item: int(item[0]))),
        "has_sky_positions": any(s["has_sky_positions"] for s in shards),
        "shards": [
            {k: s[k] for k in ("file", "count", "bytes", "sha256")} for s in shards if s["count"]
        ],
        "source": {**source.describe(), "fingerprint": source.fingerprint()},
        "ingest": {
            **asdict(config),
            "nan": {
                "policy": config.nan_policy,
                "objects_with_nonfinite": sum(s["objects_with_nonfinite"] for s in shards),
                "pixels_filled": sum(s["pixels_filled"] for s in shards),
                "objects_dropped": len(dropped),
                "dropped_object_ids": dropped,
            },
            "seconds": round(seconds, 3),
        },
        "tfanomaly_version": tfanomaly.__version__,
    }
