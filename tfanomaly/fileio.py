"""Crash-safe file writing: everything tfanomaly writes appears whole or not at all.

Files are written next to their destination under a temporary name, flushed to disk, then renamed
over the destination (rename is atomic within a file system on POSIX).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_path(path: str | os.PathLike) -> Path:
    """Return the hidden sibling path used while ``path`` is being written; it keeps the suffix,
    since some writers (Keras, h5py drivers) choose the format from it."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, on error removed.

    Example:
        with atomic_path("survey.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                ...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Return the hex SHA-256 of a file, read in chunks (flat memory for large shards)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
