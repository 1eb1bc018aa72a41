"""Readers for survey cutouts: HDF5 in the paper's layout, .npy/.npz arrays, and folders of FITS files.

Each reader is a :class:`CutoutSource` that validates its input and hands out batches of cutouts,
with their variance and mask planes where the input has them.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfanomaly.data.planes import HSC_MASK_BITS, as_mask, as_variance, mask_bits_from_header
from tfanomaly.errors import InputError, UnreadableFileError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
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


def _check_bands(bands: tuple[str, ...] | None, n_bands: int, where: str) -> tuple[str, ...]:
    if bands is None:
        return default_bands(n_bands)
    if len(bands) != n_bands:
        raise InputError(
            f"{where}: band count mismatch: the cutouts have {n_bands} band(s) but "
            f"{len(bands)} band name(s) were given ({','.join(bands)})"
        )
    return tuple(bands)


def _as_object_ids(values: np.ndarray, where: str) -> np.ndarray:
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


class ArraySource(CutoutSource):
    """Cutouts held in named arrays in the paper's layout (``images``, ``object_ids``, ``idxs``, ...).

    The arrays can be h5py datasets or (memory-mapped) NumPy arrays: they are only sliced.
    Optional planes: ``variances`` (float, shape as ``images``) and ``masks`` (integer bits, shape
    as ``images``), with ``mask_bits`` naming the bits (default: the HSC pipeline's numbers).
    """

    def __init__(self, path: Path, arrays: dict, bands=None, kind_names=None, extra_files=(),
                 mask_bits: dict[str, int] | None = None):  # fmt: skip
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
        self.bands = _check_bands(bands, n_bands, str(path))
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
            _as_object_ids(arrays["object_ids"][:], str(path))
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
                f"(object {int(self._ids[start])} onwards): {_first_line(exc)}"
            ) from exc
        origins = [
            f"{self.path} object {int(i)} (index {start + k})"
            for k, i in enumerate(self._ids[start:stop])
        ]
        return CutoutBatch(start, images, self._ids[start:stop], origins=origins, **columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_hdf5(path: Path, bands=None) -> ArraySource:
    """Open an HDF5 file in the paper's layout (``images``, ``object_ids``, optional ``idxs``,
    ``ra``, ``dec``, ``labels``; attributes ``bands`` and ``kind_names`` when present)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: not a readable HDF5 file: {_first_line(exc)}") from exc
    arrays = {key: handle[key] for key in handle.keys() if isinstance(handle[key], h5py.Dataset)}
    file_bands = handle.attrs.get("bands")
    if bands is None and file_bands is not None:
        bands = _band_names(file_bands, path)
    kind_names = handle.attrs.get("kind_names")
    kind_names = json.loads(kind_names) if isinstance(kind_names, str) else None
    source = ArraySource(path, arrays, bands=bands, kind_names=kind_names,
                         mask_bits=_hdf5_mask_bits(handle.attrs, path))  # fmt: skip
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
            raise UnreadableFileError(f"{path}: not a .npy file: {_first_line(exc)}") from exc
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
        raise InputError(f"{path}: not numeric array data: {_first_line(exc)}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UnreadableFileError(f"{path}: unreadable or truncated: {_first_line(exc)}") from exc
    extra = [object_ids_path] if object_ids_path is not None else []
    return ArraySource(path, arrays, bands=bands, extra_files=extra)


_PER_BAND = re.compile(r"^(?P<id>\d+)[_-](?P<band>[A-Za-z0-9]+)$")
_PER_OBJECT = re.compile(r"^(?P<id>\d+)$")


def _strip_fits_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


class FitsFolderSource(CutoutSource):
    """A folder of FITS cutouts, in one of two layouts (decided from the file names):

    - one multi-extension file per object, ``<object_id>.fits``: one image HDU per band, found by
      EXTNAME or FILTER equal to (or ending in ``-``) the band name, e.g. ``G`` or ``HSC-G``;
    - one file per band, ``<object_id>_<band>.fits`` (e.g. ``36411448540270969_g.fits``): the
      image is the HDU named ``IMAGE`` (the HSC cutout service's layout) or else the first 2-D HDU;
      the ``VARIANCE`` and ``MASK`` HDUs beside it, when there, are the variance and mask planes
      (mask bit names from the ``MP_<NAME> = bit`` cards of the MASK header, else the HSC
      pipeline's numbers). The first object decides which planes the folder has.

    ra/dec come from the header keywords RA/DEC when present, else from the WCS at the centre.
    """

    def __init__(self, path: Path, bands=None):
        self.path = Path(path)
        self.bands = tuple(bands) if bands else DEFAULT_BANDS
        names = sorted(
            p.name for p in self.path.iterdir() if _strip_fits_suffix(p.name) is not None
        )
        if not names:
            raise InputError(f"{path}: no FITS files (*.fits, *.fit, *.fits.gz) in this folder")
        per_object: dict[int, Path] = {}
        per_band: dict[int, dict[str, Path]] = {}
        for name in names:
            stem = _strip_fits_suffix(name)
            if match := _PER_OBJECT.match(stem):
                per_object[self._parse_id(match["id"], name)] = self.path / name
            elif match := _PER_BAND.match(stem):
                band = match["band"]
                band = next((b for b in self.bands if b.lower() == band.lower()), band)
                per_band.setdefault(self._parse_id(match["id"], name), {})[band] = self.path / name
            else:
                raise InputError(
                    f"{path / name}: file name not understood; expected <object_id>.fits (one file "
                    "per object) or <object_id>_<band>.fits (one file per band)"
                )
        if per_object and per_band:
            raise InputError(f"{path}: mixes per-object and per-band FITS files; use one layout")
        self.layout = "per_object" if per_object else "per_band"
        if per_band:
            for object_id, files in per_band.items():
                missing = [b for b in self.bands if b not in files]
                extra = [b for b in files if b not in self.bands]
                if missing or extra:
                    problem = (
                        f"missing band(s) {','.join(missing)}"
                        if missing
                        else (f"band(s) {','.join(extra)} not in --bands {','.join(self.bands)}")
                    )
                    raise InputError(f"{path}: object {object_id}: {problem}")
        self._entries = per_object or per_band
        self._ids = np.array(sorted(self._entries), dtype=np.uint64)
        self.count = len(self._ids)
        first = self._read_object(0)
        self.shape = first[0].shape
        self.has_variance = first[2] is not None
        self.has_mask = first[3] is not None
        self.mask_bits = first[4] or dict(HSC_MASK_BITS)

    @staticmethod
    def _parse_id(text: str, name: str) -> int:
        value = int(text)
        if value >= 2**64:
            raise InputError(f"{name}: object id {value} does not fit in uint64")
        return value

    def files(self) -> list[Path]:
        if self.layout == "per_object":
            return [self._entries[int(i)] for i in self._ids]
        return [self._entries[int(i)][b] for i in self._ids for b in self.bands]

    def object_ids(self) -> np.ndarray:
        return self._ids

    def _read_object(self, index: int):
        with warnings.catch_warnings():
            return self._read_object_strictly(index)

    def _read_object_strictly(self, index: int):
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyUserWarning

        object_id = int(self._ids[index])
        entry = self._entries[object_id]
        planes, header, fallback = [], None, None
        variances, masks, bits = [], [], {}
        current = entry
        try:
            # astropy only warns about a truncated file and then returns fewer HDUs or short data.
            warnings.simplefilter("error", AstropyUserWarning)
            if self.layout == "per_object":
                with fits.open(entry, memmap=False) as hdus:
                    header = hdus[0].header
                    for band in self.bands:
                        hdu = _find_band_hdu(hdus, band)
                        if hdu is None:
                            raise InputError(
                                f"{entry}: object {object_id}: no image extension for band "
                                f"'{band}' (EXTNAME or FILTER); found "
                                f"{[h.name for h in hdus]}"
                            )
                        planes.append(_image_data(hdu, entry, object_id))
                        # An empty primary often leaves the WCS to the band images.
                        fallback = fallback if fallback is not None else hdu.header
            else:
                for band in self.bands:
                    current = entry[band]
                    with fits.open(entry[band], memmap=False) as hdus:
                        hdu = _find_image_hdu(hdus)
                        if hdu is None:
                            raise InputError(f"{entry[band]}: object {object_id}: no 2-D image HDU")
                        planes.append(_image_data(hdu, entry[band], object_id))
                        header = header or hdu.header
                        where = f"{entry[band]}: object {object_id}"
                        if "VARIANCE" in hdus and hdus["VARIANCE"].data is not None:
                            data = hdus["VARIANCE"].data
                            variances.append(as_variance(data, planes[-1].shape, where))
                        if "MASK" in hdus and hdus["MASK"].data is not None:
                            masks.append(as_mask(hdus["MASK"].data, planes[-1].shape, where))
                            bits = bits or mask_bits_from_header(hdus["MASK"].header)
        except InputError:
            raise
        except (OSError, ValueError, TypeError, IndexError, AstropyUserWarning) as exc:
            where = entry if self.layout == "per_object" else current
            raise UnreadableFileError(
                f"{where}: object {object_id}: unreadable or truncated FITS: {_first_line(exc)}"
            ) from exc
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise InputError(
                f"{self.path}: object {object_id}: bands differ in shape {sorted(shapes)}"
            )
        image = np.stack(planes, axis=-1).astype(np.float32)
        ra, dec = _sky_position(header, image.shape)
        if not np.isfinite(ra) and fallback is not None:
            ra, dec = _sky_position(fallback, image.shape)
        for name, found in (("VARIANCE", variances), ("MASK", masks)):
            if found and len(found) != len(planes):
                raise InputError(
                    f"{self.path}: object {object_id}: only {len(found)} of {len(planes)} band "
                    f"file(s) have a {name} HDU"
                )
        variance = np.stack(variances, axis=-1) if variances else None
        mask = np.stack(masks, axis=-1) if masks else None
        return image, (ra, dec), variance, mask, bits

    def read(self, start: int, stop: int) -> CutoutBatch:
        images, ra, dec, variances, masks = [], [], [], [], []
        for index in range(start, stop):
            image, (obj_ra, obj_dec), variance, mask, bits = self._read_object(index)
            where = f"{self.path}: object {int(self._ids[index])}"
            if image.shape != self.shape:
                raise InputError(
                    f"{where}: cutout shape {image.shape} differs from the first object's "
                    f"{self.shape}"
                )
            for name, plane, expected in (("VARIANCE", variance, self.has_variance),
                                          ("MASK", mask, self.has_mask)):  # fmt: skip
                if (plane is not None) != expected:
                    has = "has" if plane is not None else "has no"
                    raise InputError(
                        f"{where}: {has} {name} HDU, unlike the first object; give every "
                        "object the same planes"
                    )
            if mask is not None and (bits or self.mask_bits) != self.mask_bits:
                raise InputError(f"{where}: its MP_* mask bit names differ from the first object's")
            images.append(image)
            ra.append(obj_ra)
            dec.append(obj_dec)
            variances.append(variance)
            masks.append(mask)
        ids = self._ids[start:stop]
        return CutoutBatch(
            start,
            np.stack(images),
            ids,
            np.arange(start, stop, dtype=np.int64),
            np.array(ra, dtype=np.float64),
            np.array(dec, dtype=np.float64),
            np.full(stop - start, NO_LABEL, dtype=np.int64),
            origins=[f"{self.path} object {int(i)}" for i in ids],
            variances=np.stack(variances) if self.has_variance else None,
            masks=np.stack(masks) if self.has_mask else None,
        )


def _band_matches(value, band: str) -> bool:
    value = str(value or "").strip().lower()
    band = band.lower()
    return value == band or value.endswith("-" + band)


def _find_band_hdu(hdus, band: str):
    for hdu in hdus:
        if hdu.data is None or getattr(hdu.data, "ndim", 0) != 2:
            continue
        if _band_matches(hdu.name, band) or _band_matches(hdu.header.get("FILTER"), band):
            return hdu
    return None


def _find_image_hdu(hdus):
    if "IMAGE" in hdus:
        return hdus["IMAGE"]
    return next((h for h in hdus if h.data is not None and getattr(h.data, "ndim", 0) == 2), None)


def _image_data(hdu, path: Path, object_id: int) -> np.ndarray:
    data = hdu.data
    if data.dtype.kind not in "fiu":
        raise InputError(f"{path}: object {object_id}: non-numeric image data ({data.dtype})")
    if data.ndim != 2:
        raise InputError(f"{path}: object {object_id}: image has rank {data.ndim}, expected 2-D")
    return np.asarray(data, dtype=np.float32)


def _sky_position(header, shape) -> tuple[float, float]:
    if header is None:
        return float("nan"), float("nan")
    for ra_key, dec_key in (("RA", "DEC"), ("RA_OBJ", "DEC_OBJ")):
        if ra_key in header and dec_key in header:
            try:
                return float(header[ra_key]), float(header[dec_key])
            except (TypeError, ValueError):
                break
    if str(header.get("CTYPE1", "")).startswith("RA"):
        from astropy.wcs import WCS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                world = WCS(header).celestial.pixel_to_world_values(
                    (shape[1] - 1) / 2, (shape[0] - 1) / 2
                )
                return float(world[0]), float(world[1])
            except Exception:  # a malformed WCS is not worth failing an ingest over
                pass
    return float("nan"), float("nan")


def open_source(path, bands=None, object_ids_path=None) -> CutoutSource:
    """Open cutouts from ``path``: an HDF5 file, a .npy/.npz file or a folder of FITS files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    bands = tuple(bands) if bands else None
    if path.is_dir():
        return FitsFolderSource(path, bands=bands)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return open_hdf5(path, bands=bands)
    if suffix in (".npy", ".npz"):
        return open_numpy(path, bands=bands, object_ids_path=object_ids_path)
    if _strip_fits_suffix(path.name) is not None:
        raise InputError(f"{path}: give the folder that holds the FITS cutouts, not one file")
    raise InputError(
        f"{path}: unknown input format '{suffix}'; expected .h5/.hdf5, .npy/.npz or a FITS folder"
    )


__all__ = [
    "CutoutBatch",
    "CutoutSource",
    "ArraySource",
    "FitsFolderSource",
    "check_unique_ids",
    "default_bands",
    "open_source",
]
