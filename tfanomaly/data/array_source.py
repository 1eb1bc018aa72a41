"""Cutouts held in named arrays: HDF5 files in the paper's layout and .npy/.npz files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from tfanomaly.data.planes import HSC_MASK_BITS, as_mask, as_variance, mask_bits_from_header
from tfanomaly.data.sources import (
    NO_LABEL,
    CutoutBatch,
    CutoutSource,
    as_object_ids,
    check_bands,
    first_line,
)
from tfanomaly.errors import InputError, UnreadableFileError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


class ArraySource(CutoutSource):
    """Cutouts held in named arrays in the paper's layout (``images``, ``object_ids``, ``idxs``, ...).

    The arrays can be h5py datasets or (memory-mapped) NumPy arrays: they are only sliced.
    Optional planes: ``variances`` (float, shape as ``images``) and ``masks`` (integer bits, shape
    as ``images``), with ``mask_bits`` naming the bits (default: the HSC pipeline's numbers).
    """

    def __init__(
        self,
        path: Path,
        arrays: dict,
        bands=None,
        kind_names=None,
        extra_files=(),
        mask_bits: dict[str, int] | None = None,
    ):
        self.path = Path(path)
        self._arrays = arrays
        self._extra_files = [Path(p) for p in extra_files]
        if "images" not in arrays:
            raise InputError(
                f"{path}: no 'images' array (found: {', '.join(sorted(arrays)) or 'none'})"
            )
        images = arrays["images"]
        if images.dtype.kind not in "fiu" or images.dtype.kind == "c":
            raise InputError(
                f"{path}: 'images' has non-numeric dtype {images.dtype}; expected float32 flux"
            )
        if len(images.shape) != 4:
            hint = " (add a band axis: images[..., None])" if len(images.shape) == 3 else ""
            raise InputError(
                f"{path}: 'images' has rank {len(images.shape)} with shape {tuple(images.shape)}; "
                f"expected (N, H, W, C){hint}"
            )
        n, height, width, n_bands = (int(v) for v in images.shape)
        if n == 0:
            raise InputError(f"{path}: 'images' holds no cutouts")
        if height < 2 or width < 2 or n_bands < 1:
            raise InputError(f"{path}: 'images' has shape {tuple(images.shape)}: empty cutouts")
        self.count = n
        self.shape = (height, width, n_bands)
        self.bands = check_bands(bands, n_bands, str(path))
        self.kind_names = kind_names
        for key in ("object_ids", "idxs", "ra", "dec", "labels"):
            if key in arrays and len(arrays[key]) != n:
                raise InputError(
                    f"{path}: '{key}' has {len(arrays[key])} entries but 'images' has {n} cutouts"
                )
        for key in ("idxs", "ra", "dec", "labels"):
            if key in arrays and arrays[key].dtype.kind not in "fiu":
                raise InputError(f"{path}: '{key}' has non-numeric dtype {arrays[key].dtype}")
        for key in ("variances", "masks"):
            if key in arrays and tuple(arrays[key].shape) != tuple(images.shape):
                raise InputError(
                    f"{path}: '{key}' has shape {tuple(arrays[key].shape)} but 'images' has "
                    f"{tuple(images.shape)}; the planes must match the images pixel for pixel"
                )
        if "variances" in arrays and arrays["variances"].dtype.kind not in "fiu":
            raise InputError(
                f"{path}: 'variances' has non-numeric dtype {arrays['variances'].dtype}"
            )
        if "masks" in arrays and arrays["masks"].dtype.kind not in "iub":
            raise InputError(
                f"{path}: 'masks' has dtype {arrays['masks'].dtype}, expected integer bit planes"
            )
        self.has_variance = "variances" in arrays
        self.has_mask = "masks" in arrays
        self.mask_bits = dict(mask_bits) if mask_bits else dict(HSC_MASK_BITS)
        self._ids = (
            as_object_ids(arrays["object_ids"][:], str(path))
            if "object_ids" in arrays
            else np.arange(n, dtype=np.uint64)
        )

    def object_ids(self) -> np.ndarray:
        return self._ids

    def files(self) -> list[Path]:
        return [self.path, *self._extra_files]

    def _column(self, key, start, stop, dtype, fill):
        if key in self._arrays:
            return np.asarray(self._arrays[key][start:stop]).astype(dtype)
        if key == "idxs":
            return np.arange(start, stop, dtype=dtype)
        return np.full(stop - start, fill, dtype=dtype)

    def read(self, start: int, stop: int) -> CutoutBatch:
        try:
            # A copy: ingest fills non-finite pixels in place, and may read a cutout twice.
            images = np.array(self._arrays["images"][start:stop], dtype=np.float32)
            columns = {
                "idxs": self._column("idxs", start, stop, np.int64, 0),
                "ra": self._column("ra", start, stop, np.float64, np.nan),
                "dec": self._column("dec", start, stop, np.float64, np.nan),
                "labels": self._column("labels", start, stop, np.int64, NO_LABEL),
            }
            where = f"{self.path}: objects {start}..{stop - 1}"
            if self.has_variance:
                raw = self._arrays["variances"][start:stop]
                columns["variances"] = as_variance(raw, images.shape, where)
            if self.has_mask:
                columns["masks"] = as_mask(self._arrays["masks"][start:stop], images.shape, where)
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(
                f"{self.path}: cannot read cutouts {start}..{stop - 1} "
                f"(object {int(self._ids[start])} onwards): {first_line(exc)}"
            ) from exc
        origins = [
            f"{self.path} object {int(i)} (index {start + k})"
            for k, i in enumerate(self._ids[start:stop])
        ]
        return CutoutBatch(start, images, self._ids[start:stop], origins=origins, **columns)


def open_hdf5(path: Path, bands=None) -> ArraySource:
    """Open an HDF5 file in the paper's layout (``images``, ``object_ids``, optional ``idxs``,
    ``ra``, ``dec``, ``labels``; attributes ``bands`` and ``kind_names`` when present)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 file: {first_line(exc)}") from exc
    arrays = {key: handle[key] for key in handle.keys() if isinstance(handle[key], h5py.Dataset)}
    file_bands = handle.attrs.get("bands")
    if bands is None and file_bands is not None:
        bands = _band_names(file_bands, path)
    kind_names = handle.attrs.get("kind_names")
    kind_names = json.loads(kind_names) if isinstance(kind_names, str) else None
    source = ArraySource(
        path,
        arrays,
        bands=bands,
        kind_names=kind_names,
        mask_bits=_hdf5_mask_bits(handle.attrs, path),
    )
    source._handle = handle  # keep the file open as long as the source lives
    return source


def _band_names(value, path: Path) -> tuple[str, ...]:
    """The ``bands`` attribute of an HDF5 file: "g,r,i", a JSON list '["g", "r", "i"]' or an
    array of strings."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                return tuple(str(b) for b in json.loads(value))
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"{path}: attribute 'bands' is not a JSON list: {value!r}"
                ) from exc
        return tuple(b.strip() for b in value.split(","))
    return tuple(b.decode() if isinstance(b, bytes) else str(b) for b in value)


def _hdf5_mask_bits(attrs, path: Path) -> dict[str, int] | None:
    """Mask bit names of an HDF5 file: the attribute ``mask_bits`` (JSON {name: bit}), or
    ``MP_<NAME>`` attributes as in a FITS header; None when it names none."""
    text = attrs.get("mask_bits")
    if text is not None:
        try:
            return {str(k).upper(): int(v) for k, v in json.loads(text).items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{path}: attribute 'mask_bits' is not a JSON object of name: bit"
            ) from exc
    return mask_bits_from_header(attrs) or None


def _check_npy_complete(path: Path) -> None:
    """Compare a .npy file's size with what its header promises (a cut copy is caught here)."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        except ValueError as exc:
            raise UnreadableFileError(f"{path}: not a .npy file: {first_line(exc)}") from exc
        expected = handle.tell() + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if dtype.kind in "fiu" and size < expected:
        raise UnreadableFileError(
            f"{path}: unreadable or truncated: {size} bytes, the header promises {expected}"
        )


def open_numpy(path: Path, bands=None, object_ids_path: Path | None = None) -> ArraySource:
    """Open ``images.npy`` (N, H, W, C) (ids from ``object_ids_path`` or 0..N-1), or an ``.npz``
    holding the same arrays as the HDF5 layout."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        else:
            _check_npy_complete(path)
            arrays = {"images": np.load(path, mmap_mode="r", allow_pickle=False)}
        if object_ids_path is not None:
            arrays["object_ids"] = np.load(object_ids_path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: not numeric array data: {first_line(exc)}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UnreadableFileError(f"{path}: unreadable or truncated: {first_line(exc)}") from exc
    extra = [object_ids_path] if object_ids_path is not None else []
    return ArraySource(path, arrays, bands=bands, extra_files=extra)
