"""The per-pixel planes a survey ships beside its flux: variance and mask bits. Bit names, the
checks of bad planes, and the NumPy side of what ingest does with them.
"""

from __future__ import annotations

import numpy as np

from tfanomaly.errors import InputError

# The HSC pipeline's mask planes (hscPipe / LSST afw), the numbers a cutout without MP_* header
# cards is assumed to use. A file's own MP_<NAME> = bit cards always take precedence.
HSC_MASK_BITS: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "BRIGHT_OBJECT": 9,
    "CROSSTALK": 10,
    "NOT_DEBLENDED": 11,
    "UNMASKEDNAN": 12,
    "REJECTED": 13,
    "CLIPPED": 14,
    "SENSOR_EDGE": 15,
    "INEXACT_PSF": 16,
}
# Pixels left out of the residual and filled for the networks unless --mask-bits says otherwise.
DEFAULT_MASK_BITS: tuple[str, ...] = ("BAD", "SAT", "INTRP", "CR", "EDGE", "NO_DATA")
# tfanomaly's own bit, set by ingest on pixels whose flux was not finite or whose variance was not
# a positive finite number; always masked. It takes bit 31 unless the input uses it.
INVALID = "TFA_INVALID"
MASK_DTYPE = np.int32  # how masks travel in the TFRecords (HSC masks are 32-bit)


def mask_bits_from_header(header) -> dict[str, int]:
    """The ``MP_<NAME> = bit`` cards of a FITS header as {NAME: bit} (empty when there are none)."""
    bits = {}
    for key in header:
        if str(key).startswith("MP_"):
            try:
                bits[str(key)[3:]] = int(header[key])
            except (TypeError, ValueError):
                continue
    return bits


def invalid_bit(bits: dict[str, int]) -> int:
    """The bit ingest uses for invalid pixels: 31, or the highest one the input leaves free."""
    used = set(bits.values())
    return next(b for b in range(31, -1, -1) if b not in used)


def selected_bits(names, bits: dict[str, int], where: str, explicit: bool) -> dict[str, int]:
    """The {name: bit} of the mask bits to leave out. Names the user gave (``explicit``) must all
    exist in ``bits``; the default set keeps those the input defines."""
    names = tuple(n.strip().upper() for n in names if n.strip())
    unknown = [n for n in names if n not in bits]
    if unknown and explicit:
        raise InputError(
            f"{where}: unknown mask bit(s) {','.join(unknown)}; this input defines "
            f"{','.join(sorted(bits, key=bits.get)) or 'none'}"
        )
    return {n: bits[n] for n in names if n in bits}


def bitmask(bits: dict[str, int]) -> int:
    """The int32 value with the given bits set (bit 31 comes out negative, as in the TFRecords)."""
    value = 0
    for bit in bits.values():
        value |= 1 << bit
    return int(np.array(value, dtype=np.uint32).view(np.int32))


def as_mask(mask: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    """A mask plane (..., H, W[, C]) as int32 bits; refuse a non-integer one or one of another shape
    than the image."""
    mask = np.asarray(mask)
    if mask.dtype.kind not in "iub":
        raise InputError(
            f"{where}: mask plane has dtype {mask.dtype.name}, expected integer bit planes "
            "(int16/int32/uint32 as the survey pipeline wrote them)"
        )
    if tuple(mask.shape) != tuple(shape):
        raise InputError(
            f"{where}: mask plane has shape {tuple(mask.shape)}, the image {tuple(shape)}"
        )
    if mask.dtype.kind == "b":
        return mask.astype(MASK_DTYPE)
    mask = mask.astype(mask.dtype.newbyteorder("="))  # FITS planes are big-endian
    if mask.dtype.itemsize > 4:
        if (mask < -(2**31)).any() or (mask >= 2**32).any():
            raise InputError(f"{where}: mask plane uses bits above 31 (values up to {mask.max()})")
        return mask.astype(np.int64).astype(np.uint32).view(MASK_DTYPE)
    if mask.dtype.kind == "i":  # a signed plane: its sign bit is the plane's top bit
        mask = mask.view(f"u{mask.dtype.itemsize}")
    return mask.astype(np.uint32).view(MASK_DTYPE)


def as_variance(variance: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    """A variance plane as float32; refuse a non-numeric one or one of another shape."""
    variance = np.asarray(variance)
    if variance.dtype.kind not in "fiu":
        raise InputError(f"{where}: variance plane has non-numeric dtype {variance.dtype.name}")
    if tuple(variance.shape) != tuple(shape):
        raise InputError(
            f"{where}: variance plane has shape {tuple(variance.shape)}, the image "
            f"{tuple(shape)}; they must match pixel for pixel"
        )
    return np.array(variance, dtype=np.float32)  # a copy: ingest zeroes bad values in it


def flag_invalid(images, variances, masks, invalid: int) -> tuple[np.ndarray, int]:
    """Set the ``invalid`` bit where the flux is not finite or the variance is not a positive
    finite number, and zero such variances (the policy: those pixels are masked, not an error).
    Works in place on the (n, H, W, C) arrays; returns the masks and the count of bad variances."""
    bad_flux = ~np.isfinite(images)
    bad_variance = np.zeros_like(bad_flux)
    if variances is not None:
        bad_variance = ~(np.isfinite(variances) & (variances > 0))
        variances[bad_variance] = 0.0
    if masks is None:
        masks = np.zeros(images.shape, MASK_DTYPE)
    flag = np.array(np.uint32(1) << np.uint32(invalid)).view(MASK_DTYPE)
    masks[bad_flux | bad_variance] |= flag
    return masks, int(bad_variance.sum())


__all__ = [
    "DEFAULT_MASK_BITS",
    "HSC_MASK_BITS",
    "INVALID",
    "as_mask",
    "as_variance",
    "bitmask",
    "flag_invalid",
    "invalid_bit",
    "mask_bits_from_header",
    "selected_bits",
]
