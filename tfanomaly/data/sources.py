"""The reader layer's common ground: a :class:`CutoutSource` validates one kind of input and hands
out :class:`CutoutBatch` es of cutouts, with their ids and, where the input has them, variance and
mask planes; the id and band checks every reader applies. The readers are in
:mod:`~tfanomaly.data.array_source` (HDF5, .npy/.npz) and :mod:`~tfanomaly.data.fits_source`
(folders of FITS files); :func:`tfanomaly.data.readers.open_source` picks one for a path.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfanomaly.data.planes import HSC_MASK_BITS
from tfanomaly.errors import InputError

DEFAULT_BANDS = ("g", "r", "i")
NO_LABEL = -1


@dataclass
class CutoutBatch:
    """Cutouts ``start .. start+n-1`` of a source, with the columns that travel with them."""

    start: int
    images: np.ndarray  # (n, H, W, C) float32 raw flux
    object_ids: np.ndarray  # uint64
    idxs: np.ndarray  # int64
    ra: np.ndarray  # float64, NaN when unknown
    dec: np.ndarray  # float64, NaN when unknown
    labels: np.ndarray  # int64, -1 when unknown
    origins: list[str] = field(default_factory=list)  # where each cutout came from, for messages
    variances: np.ndarray | None = None  # (n, H, W, C) float32 flux variance, when the input has it
    masks: np.ndarray | None = None  # (n, H, W, C) int32 mask bits, when the input has them

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, keep: np.ndarray) -> CutoutBatch:
        """The cutouts where ``keep`` (bool, one per cutout) is True."""

        def take(plane):
            return None if plane is None else plane[keep]

        return CutoutBatch(
            self.start,
            self.images[keep],
            self.object_ids[keep],
            self.idxs[keep],
            self.ra[keep],
            self.dec[keep],
            self.labels[keep],
            origins=[o for o, k in zip(self.origins, keep, strict=True) if k],
            variances=take(self.variances),
            masks=take(self.masks),
        )


def default_bands(n_bands: int) -> tuple[str, ...]:
    """Band names assumed when a file does not name its bands: g, r, i for three, else band0.."""
    if n_bands == len(DEFAULT_BANDS):
        return DEFAULT_BANDS
    return tuple(f"band{k}" for k in range(n_bands))


def check_bands(bands: tuple[str, ...] | None, n_bands: int, where: str) -> tuple[str, ...]:
    if bands is None:
        return default_bands(n_bands)
    if len(bands) != n_bands:
        raise InputError(
            f"{where}: band count mismatch: the cutouts have {n_bands} band(s) but "
            f"{len(bands)} band name(s) were given ({','.join(bands)})"
        )
    return tuple(bands)


def as_object_ids(values: np.ndarray, where: str) -> np.ndarray:
    """Convert an id column to uint64 exactly, refusing anything that would change a value."""
    values = np.asarray(values)
    if values.dtype.kind == "u":
        return values.astype(np.uint64)
    if values.dtype.kind == "i":
        if (values < 0).any():
            bad = int(np.flatnonzero(values < 0)[0])
            raise InputError(f"{where}: object_ids[{bad}] = {values[bad]} is negative")
        return values.astype(np.uint64)
    if values.dtype.kind == "f":
        if (
            not np.all(np.isfinite(values))
            or np.any(values != np.round(values))
            or (values < 0).any()
        ):
            raise InputError(
                f"{where}: object_ids are floats that are not whole non-negative numbers"
            )
        limit = 2**24 if values.dtype.itemsize <= 4 else 2**53
        if (values >= limit).any():
            warnings.warn(
                f"{where}: object_ids are stored as {values.dtype} above {limit}: they have lost "
                "precision (the paper's files did this); tfanomaly keeps them as uint64 from here on",
                stacklevel=2,
            )
        return values.astype(np.uint64)
    raise InputError(f"{where}: object_ids have dtype {values.dtype}, expected unsigned integers")


def check_unique_ids(object_ids: np.ndarray, where: str) -> None:
    """Raise InputError naming the first duplicated object id and both of its positions."""
    order = np.argsort(object_ids, kind="stable")
    sorted_ids = object_ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(dup):
        first, second = order[dup[0]], order[dup[0] + 1]
        raise InputError(
            f"{where}: duplicate object id {int(sorted_ids[dup[0]])} at index {first} and {second} "
            f"({len(dup)} duplicate(s) in all)"
        )


class CutoutSource:
    """A set of equally shaped multi-band cutouts with ids; subclasses read one kind of input."""

    path: Path
    count: int
    shape: tuple[int, int, int]
    bands: tuple[str, ...]
    kind_names: list[str] | None = None
    has_variance: bool = False
    has_mask: bool = False
    # {name: bit} of the mask planes (the file's own names, else the HSC pipeline's numbers).
    mask_bits: dict[str, int] = HSC_MASK_BITS

    def object_ids(self) -> np.ndarray:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> CutoutBatch:
        raise NotImplementedError

    def files(self) -> list[Path]:
        """The files this source reads, for the fingerprint that decides whether to resume."""
        return [self.path]

    def fingerprint(self) -> dict:
        """Names, sizes and modification times of the input: a changed input restarts an ingest."""
        entries = []
        for file in self.files():
            stat = file.stat()
            entries.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
        return {
            "kind": type(self).__name__,
            "files": len(entries),
            "entries_digest": _digest(entries),
        }

    def describe(self) -> dict:
        return {
            "path": str(self.path.resolve()),
            "format": type(self).__name__,
            "count": self.count,
        }


def _digest(entries: list) -> str:
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
