"""The manifest of an ingested data set (``manifest.json``): its file names, its format, reading
and checking it, and :class:`DatasetInfo`, what the rest of the package needs to know of a data set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import DatasetError
from tfanomaly.fileio import sha256_file

MANIFEST = "manifest.json"
STATE = ".ingest-state.json"
FORMAT = "tfanomaly-tfrecord"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetInfo:
    """What the manifest says about an ingested data set."""

    path: Path
    count: int
    shape: tuple[int, int, int]
    bands: tuple[str, ...]
    has_labels: bool
    kind_names: tuple[str, ...] | None
    files: tuple[str, ...]
    # The per-pixel planes the records carry (of ``schema.PLANES``; empty for plain data sets).
    planes: tuple[str, ...] = ()
    # The mask bits ingest chose to leave out, as one int32 value (0: none).
    masked_bits: int = 0
    # The manifest's stretch record (None: the paper's Q=15, stretch=0.5).
    stretch_config: dict | None = field(default=None, hash=False, compare=False)
    # What ingest found about the images (``data.health``; None: ingested before it looked).
    health: dict | None = field(default=None, hash=False, compare=False)

    @property
    def stretch(self) -> LuptonStretch:
        """The Lupton stretch this data set is seen through (training, scoring, export)."""
        return LuptonStretch.from_config(self.stretch_config)

    @classmethod
    def from_folder(cls, data_dir) -> DatasetInfo:
        data_dir = Path(data_dir)
        manifest = read_manifest(data_dir)
        kinds = manifest.get("kind_names")
        planes = manifest.get("planes") or {}
        return cls(
            path=data_dir,
            count=int(manifest["count"]),
            shape=tuple(manifest["shape"]),
            bands=tuple(manifest["bands"]),
            has_labels=bool(manifest["has_labels"]),
            kind_names=tuple(kinds) if kinds else None,
            files=tuple(str(data_dir / s["file"]) for s in manifest["shards"]),
            planes=tuple(name for name in ("variance", "mask") if name in planes),
            masked_bits=int((planes.get("mask") or {}).get("masked_value", 0)),
            stretch_config=manifest.get("stretch"),
            health=manifest.get("health"),
        )


def read_manifest(data_dir) -> dict:
    """Load and check the manifest of an ingested data set; raise DatasetError if incomplete."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not path.exists():
        hint = (
            " (an ingest was interrupted here: rerun it to finish)"
            if (data_dir / STATE).exists()
            else ""
        )
        raise DatasetError(f"{data_dir}: not a complete tfanomaly data set, no {MANIFEST}{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: unreadable manifest: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a tfanomaly TFRecord manifest")
    missing = [s["file"] for s in manifest["shards"] if not (data_dir / s["file"]).exists()]
    if missing:
        raise DatasetError(
            f"{data_dir}: shard(s) listed in the manifest are missing: {missing[:3]}"
        )
    return manifest


def verify(data_dir) -> list[str]:
    """Re-hash every shard; return the names of shards whose checksum differs from the manifest."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    return [
        s["file"] for s in manifest["shards"] if sha256_file(data_dir / s["file"]) != s["sha256"]
    ]
