"""Data health of a set of cutouts, measured at ingest (NumPy only): quantised pixel values,
clipped backgrounds, constant and noise-free images, images normalised one by one, and duplicated
cutouts (the same id, or the same pixels up to a flip or a quarter turn).

ML-ready catalogues often ship images scaled per image, quantised to 8 bits, with the background
clipped at 0; a sky noise measured on such images can fall far below the quantisation step (and
the auto stretch's softening with it), and duplicated cutouts fool k-NN density terms.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tfanomaly.data.stretch import sky_sigma

# A background is called clipped when at least this fraction of a band's pixels sits exactly at
# its image's minimum (Gaussian sky noise puts one pixel there).
CLIPPED_FRACTION = 0.05
# A quantisation step spans at most this many levels over an image's range (16 bits).
MAX_LEVELS = 65536
# Share of an image's distinct-value gaps that must be whole multiples of the step.
ON_GRID = 0.99
# Share of the non-constant images of a band that must be quantised for the band to count as such.
QUANTISED_IMAGES = 0.9
EXAMPLES = 5


def quantisation_step(values: np.ndarray) -> float | None:
    """The step of the grid the finite ``values`` lie on: the smallest gap between distinct values,
    kept where (nearly) every gap is a whole multiple of it and the range spans at most
    ``MAX_LEVELS`` of them and the step is well above float32 rounding; else 0 (continuous
    values, or only two). None where there are fewer than two distinct values."""
    values = np.asarray(values, np.float64).ravel()
    distinct = np.unique(values[np.isfinite(values)])
    if len(distinct) < 2:
        return None
    if len(distinct) < 3:  # two values: a step nothing can tell from a binary image
        return 0.0
    gaps = np.diff(distinct)
    smallest = float(gaps.min())
    rounding = 8.0 * float(np.spacing(np.float32(np.abs(distinct).max())))
    if smallest <= rounding or (distinct[-1] - distinct[0]) / smallest > MAX_LEVELS:
        return 0.0
    ratio = gaps / smallest
    whole = np.round(ratio)
    if np.mean(np.abs(ratio - whole) <= 0.01) < ON_GRID:
        return 0.0
    return float(np.mean(gaps[whole == 1]))  # the unit gaps, averaging out their rounding


def _dihedral(image: np.ndarray):
    """The 8 flips and quarter turns of an (H, W, C) image."""
    for flipped in (image, image[:, ::-1]):
        for k in range(4):
            yield np.rot90(flipped, k, axes=(0, 1))


def _digest(image: np.ndarray) -> int:
    data = np.ascontiguousarray(image, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0
    h = hashlib.blake2b(digest_size=8)
    h.update(np.asarray(data.shape, np.int64).tobytes())
    h.update(data.tobytes())
    return int.from_bytes(h.digest(), "little")


def image_hashes(image: np.ndarray) -> tuple[int, int]:
    """(exact, canonical) 64-bit hashes of an (H, W, C) image's float32 bytes: the image's own and
    the smallest over its 8 flips and quarter turns (equal for images equal up to one of them)."""
    image = np.asarray(image, np.float32)
    return _digest(image), min(_digest(v) for v in _dihedral(image))


class DuplicateFinder:
    """Duplicated ids and pixel content of cutouts seen batch by batch; keeps only the ids and two
    64-bit hashes per cutout, never the images."""

    def __init__(self):
        self._ids: list[np.ndarray] = []
        self._exact: list[np.ndarray] = []
        self._canonical: list[np.ndarray] = []

    def add(self, images: np.ndarray, object_ids) -> None:
        hashes = np.array([image_hashes(im) for im in images], np.uint64).reshape(-1, 2)
        self._ids.append(np.asarray(object_ids, np.int64).reshape(-1))
        self._exact.append(hashes[:, 0])
        self._canonical.append(hashes[:, 1])

    def result(self) -> dict:
        """Counts and example ids: ``ids`` (objects sharing an id with an earlier one),
        ``identical`` (cutouts whose pixels repeat an earlier cutout's), of which
        ``transformed`` only up to a flip or quarter turn."""
        empty = np.zeros(0, np.int64)
        ids = np.concatenate(self._ids) if self._ids else empty
        exact = np.concatenate(self._exact) if self._exact else empty.astype(np.uint64)
        canonical = np.concatenate(self._canonical) if self._canonical else exact
        repeated_id = _repeats(ids)
        repeated = _repeats(canonical)
        same_bytes = _repeats(exact)
        transformed = repeated & ~same_bytes
        return {
            "checked": int(len(ids)),
            "ids": int(repeated_id.sum()),
            "id_examples": [int(i) for i in np.unique(ids[repeated_id])[:EXAMPLES]],
            "identical": int(repeated.sum()),
            "transformed": int(transformed.sum()),
            "examples": [int(i) for i in ids[repeated][:EXAMPLES]],
        }


def _repeats(keys: np.ndarray) -> np.ndarray:
    """True for every entry whose key occurred at an earlier position."""
    _, first = np.unique(keys, return_index=True)
    repeat = np.ones(len(keys), bool)
    repeat[first] = False
    return repeat


def data_health(images, object_ids=None, masks=None, bands=None) -> dict:
    """The health of a sample of cutouts (n, H, W, C) of raw flux: a JSON-safe dict with per band
    the quantisation step (0: continuous), the fractions of pixels exactly at their image's
    minimum and exactly 0 and whether the background looks clipped; the constant images, the
    noise-free ones (sky noise 0, not constant), a per-image normalisation (every image's max or
    sum the same) and the duplicates among them; ``findings`` holds one line per finding.
    ``masks`` (bool, True = left out) leaves pixels out of the pixel statistics."""
    images = np.asarray(images, np.float32)
    n, bands_n = len(images), images.shape[-1]
    ids = np.arange(n) if object_ids is None else np.asarray(object_ids, np.int64)
    bands = [str(b) for b in bands] if bands is not None else [str(b) for b in range(bands_n)]
    usable = np.isfinite(images)
    if masks is not None:
        usable &= ~np.asarray(masks, bool)
    flat = np.where(usable, images, np.nan).reshape(n, -1, bands_n)
    spread = np.nanmax(flat, axis=1) - np.nanmin(flat, axis=1) if n else np.zeros((0, bands_n))
    constant = ~np.any(np.nan_to_num(spread, nan=0.0) > 0, axis=1)

    per_band = {}
    for b, name in enumerate(bands):
        x = flat[:, :, b]
        count = max(int(np.isfinite(x).sum()), 1)
        with np.errstate(all="ignore"):
            at_min = np.sum(x == np.nanmin(x, axis=1, keepdims=True)) if n else 0
        steps = [quantisation_step(x[k]) for k in range(n) if not constant[k]]
        steps = [s for s in steps if s is not None]
        quantised = [s for s in steps if s > 0]
        step = (
            float(np.median(quantised))
            if steps and len(quantised) >= QUANTISED_IMAGES * len(steps)
            else 0.0
        )
        at_min_fraction = float(at_min) / count
        widest = float(np.nanmax(spread[:, b])) if n and np.isfinite(spread[:, b]).any() else 0.0
        per_band[name] = {
            "step": step,
            "levels": int(round(widest / step)) + 1 if step > 0 else None,
            "at_minimum": round(at_min_fraction, 6),
            "zero": round(float(np.sum(x == 0)) / count, 6),
            "clipped": bool(at_min_fraction >= CLIPPED_FRACTION),
        }

    noise_free = np.zeros(n, bool)
    for k in np.flatnonzero(~constant):
        mask_k = None if masks is None else np.asarray(masks, bool)[k : k + 1]
        sigma = sky_sigma(images[k : k + 1], mask_k)
        noise_free[k] = not np.any(np.nan_to_num(sigma, nan=0.0) > 0)

    finder = DuplicateFinder()
    finder.add(images, ids)
    health = {
        "sample_cutouts": int(n),
        "bands": per_band,
        "constant": {"count": int(constant.sum()), "examples": _examples(ids, constant)},
        "noise_free": {"count": int(noise_free.sum()), "examples": _examples(ids, noise_free)},
        "normalised": _normalisation(flat[~constant]),
        "duplicates": finder.result(),
    }
    health["findings"] = findings(health)
    return health


def _examples(ids: np.ndarray, chosen: np.ndarray) -> list[int]:
    return [int(i) for i in ids[chosen][:EXAMPLES]]


def _normalisation(flat: np.ndarray) -> dict | None:
    """{"by": "max" or "sum", "value"} where every (non-constant) image's max or sum over all its
    pixels and bands is the same within float32 rounding; None otherwise or for under 2 images."""
    if len(flat) < 2:
        return None
    with np.errstate(all="ignore"):
        for by, values in (
            ("max", np.nanmax(flat, axis=(1, 2))),
            ("sum", np.nansum(flat.astype(np.float64), axis=(1, 2))),
        ):
            centre = float(np.median(values))
            tolerance = 1e-5 * max(abs(centre), 1e-30) * (1 if by == "max" else flat[0].size)
            if centre != 0 and np.all(np.abs(values - centre) <= tolerance):
                return {"by": by, "value": centre}
    return None


def findings(health: dict) -> list[str]:
    """One line per finding of a ``data_health`` record (none for a healthy sample)."""
    lines = []
    n = health["sample_cutouts"]
    for band, record in health["bands"].items():
        step = record["step"]
        if step > 0:
            levels = " (8-bit?)" if (record.get("levels") or 0) <= 256 else ""
            lines.append(f"health: band {band} quantised in steps of {step:.4g}{levels}")
        if record["clipped"]:
            where = "exactly 0" if record["zero"] >= record["at_minimum"] else "at the minimum"
            share = max(record["zero"], record["at_minimum"])
            lines.append(
                f"health: band {band}: {share:.0%} of pixels {where} (a clipped background)"
            )
    for key, what in (("constant", "constant images"), ("noise_free", "noise-free images")):
        if health[key]["count"]:
            lines.append(
                f"health: {health[key]['count']} of {n} sampled cutouts are {what} "
                f"(ids {_ids(health[key]['examples'])})"
            )
    norm = health.get("normalised")
    if norm:
        lines.append(
            f"health: every sampled image has {norm['by']} {norm['value']:.6g} "
            "(normalised per image)"
        )
    dup = health["duplicates"]
    if dup["ids"]:
        lines.append(f"health: {dup['ids']} duplicated object ids (ids {_ids(dup['id_examples'])})")
    if dup["identical"]:
        lines.append(
            f"health: {dup['identical']} duplicated cutouts ({dup['transformed']} identical up to "
            f"a flip or rotation; ids {_ids(dup['examples'])})"
        )
    return lines


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids) + (", ..." if len(ids) >= EXAMPLES else "")
