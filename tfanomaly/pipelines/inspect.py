"""A first look at an ingested data set (its manifest in words, checksums, and a gallery PNG with
one row per anomaly kind or the first cutouts) or at a run's default score (its calibration).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfanomaly.data.dataset import load_dataset
from tfanomaly.data.manifest import DatasetInfo, read_manifest, verify
from tfanomaly.models.calibration import KNN_TERMS, Calibration
from tfanomaly.pipelines.run import CALIBRATION_FILE, load_run
from tfanomaly.results.preview import save_png, tile


def kind_name(info: DatasetInfo, label: int) -> str:
    if info.kind_names and 0 <= label < len(info.kind_names):
        return info.kind_names[label]
    return f"label {label}"


def gallery_rows(data_dir, per_row: int = 8, max_rows: int = 12) -> list[tuple[str, np.ndarray]]:
    """Stretched example cutouts: for a labelled data set one row per label, else the first ones."""
    info = DatasetInfo.from_folder(data_dir)
    batches = load_dataset(data_dir, batch_size=256)
    if not info.has_labels:
        images = np.concatenate(
            [b["image"].numpy() for b in batches.take(max_rows * per_row // 256 + 1)]
        )
        images = images[: max_rows * per_row]
        return [("", images[k : k + per_row]) for k in range(0, len(images), per_row)]
    present = len(read_manifest(data_dir).get("label_counts") or {})
    rows: dict[int, list[np.ndarray]] = {}
    for batch in batches:
        for image, label in zip(batch["image"].numpy(), batch["label"].numpy(), strict=True):
            row = rows.setdefault(int(label), [])
            if len(row) < per_row:
                row.append(image)
        if len(rows) >= present and all(len(r) == per_row for r in rows.values()):
            break
    return [(kind_name(info, k), np.stack(rows[k])) for k in sorted(rows)][:max_rows]


def save_gallery(data_dir, path, per_row: int = 8, scale: int = 2) -> list[str]:
    """Write the gallery PNG; return the row captions, top to bottom."""
    rows = gallery_rows(data_dir, per_row)
    height, width = rows[0][1].shape[1:3]
    padded = []
    for _, images in rows:
        if len(images) < per_row:  # rare kinds: fill the row with blank tiles
            blank = np.ones((per_row - len(images), height, width, images.shape[-1]), np.float32)
            images = np.concatenate([images, blank])
        padded.append(images)
    save_png(path, tile(np.concatenate(padded), columns=per_row), scale=scale)
    return [name for name, _ in rows]


def describe(data_dir, check: bool = False) -> dict:
    """A summary of the data set: counts, shape, bands, labels, NaN handling, its variance and mask
    planes, its stretch, its data health (None before it was recorded), optional checksums."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    info = DatasetInfo.from_folder(data_dir)
    summary = {
        "path": str(data_dir),
        "count": manifest["count"],
        "shape": manifest["shape"],
        "bands": manifest["bands"],
        "shards": len(manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "source": manifest["source"]["path"],
        "nan": manifest["ingest"]["nan"],
        "labels": {
            kind_name(info, int(k)): n for k, n in (manifest.get("label_counts") or {}).items()
        },
        "planes": manifest.get("planes") or {},
        "stretch": {
            "mode": "paper",
            **info.stretch.get_config(),
            **(manifest.get("stretch") or {}),
        },
        "resize": manifest.get("resize"),
        # None for data sets ingested before data health was measured.
        "health": manifest.get("health"),
    }
    if check:
        summary["corrupt_shards"] = verify(data_dir)
    return summary


def describe_run(run_dir) -> dict:
    """A summary of a run folder's default score: the trained stages and, where it is calibrated,
    the calibration's data, terms, their weights as set (``nominal_weights``) and as the score
    weighs them (``term_weights``: a term found degenerate on the calibration set weighs 0), each
    term's health record (none: calibrated before the check), the terms left out and the
    morphology term's reference set (its size, k, the copies and the most isolated cutouts the
    calibration left out of it) and the residual-shape term's (the same)."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    summary = {
        "path": str(run_dir),
        "model": (run.get("model") or {}).get("name"),
        "stages": [stage for stage in ("gan", "encoder") if stage in run],
        "calibration": None,
    }
    path = run_dir / CALIBRATION_FILE
    if not path.exists():
        return summary
    calibration = Calibration.load(path)
    nominal = calibration.nominal_weights
    summary["calibration"] = {
        "path": str(path),
        "data": calibration.info.get("data"),
        "count": calibration.info.get("count"),
        "planes": list(calibration.planes),
        "terms": list(calibration.terms),
        "combine": calibration.settings.combine,
        "nominal_weights": dict(zip(calibration.terms, nominal.tolist(), strict=True)),
        **calibration.weights_record(),
        "health": {term: h.to_dict() for term, h in calibration.health.items()} or None,
        **dict.fromkeys(KNN_TERMS),
    }
    for term in KNN_TERMS:
        if term in calibration.terms:
            summary["calibration"][term] = {
                "neighbours": calibration.settings.morphology_neighbours,
                "reference": len(getattr(calibration, term).reference),
                # None: calibrated before the copies (or the trim) were counted
                "copies": calibration.info.get(f"{term}_copies"),
                "trimmed": calibration.info.get(f"{term}_trimmed"),
            }
    if summary["calibration"]["morphology"]:
        summary["calibration"]["morphology"]["parameters"] = (
            calibration.settings.morphology_parameters
        )
        summary["calibration"]["morphology"]["units"] = calibration.settings.morphology_units
    if summary["calibration"]["residual_shape"]:
        summary["calibration"]["residual_shape"]["units"] = (
            calibration.settings.residual_shape_units
        )
    return summary
