"""Folders of FITS cutouts: one multi-extension file per object or one file per band."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from tfanomaly.data.planes import HSC_MASK_BITS, as_mask, as_variance, mask_bits_from_header
from tfanomaly.data.sources import (
    DEFAULT_BANDS,
    NO_LABEL,
    CutoutBatch,
    CutoutSource,
    first_line,
)
from tfanomaly.errors import InputError, UnreadableFileError

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


_PER_BAND = re.compile(r"^(?P<id>\d+)[_-](?P<band>[A-Za-z0-9]+)$")
_PER_OBJECT = re.compile(r"^(?P<id>\d+)$")


def strip_fits_suffix(name: str) -> str | None:
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
        names = sorted(p.name for p in self.path.iterdir() if strip_fits_suffix(p.name) is not None)
        if not names:
            raise InputError(f"{path}: no FITS files (*.fits, *.fit, *.fits.gz) in this folder")
        per_object: dict[int, Path] = {}
        per_band: dict[int, dict[str, Path]] = {}
        for name in names:
            stem = strip_fits_suffix(name)
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
                f"{where}: object {object_id}: unreadable or truncated FITS: {first_line(exc)}"
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
            for name, plane, expected in (
                ("VARIANCE", variance, self.has_variance),
                ("MASK", mask, self.has_mask),
            ):
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
