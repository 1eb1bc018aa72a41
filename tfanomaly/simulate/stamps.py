"""Whole cutouts from (seed, index): position, seeing, galaxy, anomaly, neighbours and noise.

``simulate_stamps`` returns any range of a survey's objects exactly as its file holds them.
"""

from __future__ import annotations

import math

import numpy as np

from tfanomaly.data.planes import HSC_MASK_BITS
from tfanomaly.errors import ConfigError
from tfanomaly.simulate.anomalies import ARTEFACT_DRAWERS, SKY_DRAWERS
from tfanomaly.simulate.config import (
    BANDS,
    KIND_NAMES,
    SMOOTH,
    SurveyConfig,
    gain,
    labels,
    sky_sigma,
)
from tfanomaly.simulate.galaxies import blend, neighbours, normal
from tfanomaly.simulate.render import Ctx, Scene, grid


def _object_id(ra: float, dec: float, index: int, field: tuple[float, ...]) -> np.uint64:
    # HSC-like: tract << 42 | patch << 35 | serial (tracts ~1.7 deg, 9x9 patches). The serial is
    # the survey index, so ids are unique; tract >= 9000 puts every id above 2**55.
    tract_deg = 1.7
    ix, iy = (ra - field[0]) / tract_deg, (dec - field[2]) / tract_deg
    tract = 9000 + int(ix) + 16 * int(iy)
    patch = int((ix % 1.0) * 9) * 9 + int((iy % 1.0) * 9)
    return np.uint64((tract << 42) | (patch << 35) | index)


# The artefacts a pipeline flags, and the bit it flags them with.
_FLAGGED = {"cosmic_rays": "CR", "bad_column": "BAD"}
DETECTION_SIGMA = 3.0  # the DETECTED bit: the noise-free sky above this many sky sigma


def _render_object(
    config: SurveyConfig, index: int, label: int, noise: bool = True
) -> tuple[np.ndarray, float, float]:
    """One cutout (size, size, bands) float32 with its RA, Dec (see :func:`_render`)."""
    image, ra, dec, _ = _render(config, index, label, noise)
    return image, ra, dec


def _bit(name: str) -> np.int32:
    return np.int32(1 << HSC_MASK_BITS[name])


def _render(
    config: SurveyConfig, index: int, label: int, noise: bool = True
) -> tuple[np.ndarray, float, float, dict]:
    """One cutout (size, size, bands) float32 with its RA, Dec, from (seed, index) alone, and its
    planes (``variance`` float32 and ``mask`` int32, as the image) when ``config.planes``.

    Three random streams per object: the main one (position, seeing, galaxies, anomaly,
    neighbours, noise), the substructure one (PSF ellipticity, blend, knots, arms, dust; not
    even created for a smooth config) and the instrument artefacts' one. So the same object can
    be rebuilt exactly without its artefact, or without its substructure (``config.smooth()``).
    ``noise=False`` leaves out the sky noise, the main stream's last draw (for tests). The
    sources' Poisson noise of ``config.planes`` comes from a fourth stream, so the sky noise and
    everything else stay as without planes.
    """
    rng = np.random.default_rng([config.seed, index])
    ra = rng.uniform(config.field[0], config.field[1])
    dec = rng.uniform(config.field[2], config.field[3])
    g = grid(config.size, float(config.psf_beta))
    fwhm_px = (
        np.asarray(config.psf_fwhm, float)
        / config.pixel_scale
        * np.exp(config.psf_jitter * rng.standard_normal(len(BANDS)))
    )
    sub = blend_args = None
    psf_e = psf_angle = 0.0
    if any(getattr(config, name) > 0 for name in SMOOTH):
        sub = np.random.default_rng(np.random.SeedSequence([config.seed, index], spawn_key=(2,)))
        # The same draws whatever the fractions, so each can be switched alone.
        psf_e, psf_angle = config.psf_e_max * sub.random(), sub.uniform(0.0, math.pi)
        blended, separation, blend_phi, blend_dmag = sub.random(4)
        if blended < config.blend_fraction:
            blend_args = (
                0.33 + 0.15 * separation,
                2 * math.pi * blend_phi,
                1.25 + 1.75 * blend_dmag,
            )
    scene = Scene(g, fwhm_px, float(config.psf_beta), psf_e, psf_angle)
    radius, phi = 0.7 * math.sqrt(rng.random()), rng.uniform(0.0, 2 * math.pi)
    half = (config.size - 1) / 2
    mag_i = rng.uniform(*config.mag_range)
    sigma = sky_sigma(config)
    ctx = Ctx(
        config=config,
        scene=scene,
        sigma=sigma,
        x0=half + radius * math.cos(phi),
        y0=half + radius * math.sin(phi),
        flux_i=10.0 ** (-0.4 * (mag_i - config.zeropoint)),
        sub=sub,
    )
    kind = KIND_NAMES[label]
    SKY_DRAWERS.get(kind, normal)(rng, ctx)
    if blend_args is not None:
        blend(sub, ctx, *blend_args)
    if rng.random() < config.neighbour_fraction:
        neighbours(rng, ctx)
    image = scene.render()
    model = image.copy() if config.planes else None
    if noise:
        image += sigma[:, None, None] * rng.standard_normal(scene.post.shape)
    artefact = None
    if kind in ARTEFACT_DRAWERS:
        artefact_rng = np.random.default_rng(
            np.random.SeedSequence([config.seed, index], spawn_key=(1,))
        )
        artefact = ARTEFACT_DRAWERS[kind](artefact_rng, ctx)
        image += artefact
    planes = {}
    if config.planes:
        # Poisson noise of the sources (Gaussian, variance F / gain), sky noise already drawn.
        source_variance = np.maximum(model, 0.0) / gain(config)[:, None, None]
        if noise:
            poisson = np.random.default_rng(
                np.random.SeedSequence([config.seed, index], spawn_key=(3,))
            )
            image += np.sqrt(source_variance) * poisson.standard_normal(image.shape)
        variance = sigma[:, None, None] ** 2 + source_variance
        mask = np.where(model > DETECTION_SIGMA * sigma[:, None, None], _bit("DETECTED"), 0)
        mask = mask.astype(np.int32)
        if ctx.saturated is not None:
            mask[ctx.saturated] |= _bit("SAT")
        if kind in _FLAGGED:
            mask[artefact != 0] |= _bit(_FLAGGED[kind])
        planes = {
            "variance": np.ascontiguousarray(variance.transpose(1, 2, 0), dtype=np.float32),
            "mask": np.ascontiguousarray(mask.transpose(1, 2, 0)),
        }
    return np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float32), ra, dec, planes


def simulate_stamps(config: SurveyConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    """Objects ``start`` .. ``stop - 1`` of the survey, exactly as ``simulate_survey`` writes them.

    Returns ``images`` (n, H, W, 3) float32, ``object_ids`` uint64, ``idxs`` int64, ``ra`` and
    ``dec`` float64, ``labels`` uint8; with ``config.planes`` also ``variances`` (n, H, W, 3)
    float32 and ``masks`` (n, H, W, 3) int32 (bits of ``HSC_MASK_BITS``).

    Example:
        >>> stamps = simulate_stamps(SurveyConfig(n_objects=100, size=32), 0, 10)
    """
    config.validate()
    if not 0 <= start <= stop <= config.n_objects:
        raise ConfigError(
            f"simulate: need 0 <= start <= stop <= n_objects={config.n_objects}, "
            f"got start={start}, stop={stop}"
        )
    chunk_labels = labels(
        config.n_objects, float(config.anomaly_fraction), tuple(config.kinds), config.seed
    )[start:stop]
    n, size = stop - start, config.size
    out = {
        "images": np.empty((n, size, size, len(BANDS)), np.float32),
        "object_ids": np.empty(n, np.uint64),
        "idxs": np.arange(start, stop, dtype=np.int64),
        "ra": np.empty(n, np.float64),
        "dec": np.empty(n, np.float64),
        "labels": chunk_labels.copy(),
    }
    if config.planes:
        out["variances"] = np.empty_like(out["images"])
        out["masks"] = np.empty(out["images"].shape, np.int32)
    for j, index in enumerate(range(start, stop)):
        image, ra, dec, planes = _render(config, index, int(chunk_labels[j]))
        out["images"][j] = image
        if planes:
            out["variances"][j], out["masks"][j] = planes["variance"], planes["mask"]
        out["ra"][j], out["dec"][j] = ra, dec
        out["object_ids"][j] = _object_id(ra, dec, index, config.field)
    return out
