"""The simulated survey's settings: anomaly kinds, bands, ``SurveyConfig``, sky noise and labels.

Everything here follows from the config and its seed alone; nothing is rendered.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

import numpy as np

from tfanomaly.errors import ConfigError

ANOMALY_KINDS: tuple[str, ...] = (
    "merger",
    "tidal_feature",
    "star_forming_clump",
    "lensed_arc",
    "satellite_trail",
    "diffraction_spikes",
    "cosmic_rays",
    "bad_column",
)
KIND_NAMES: tuple[str, ...] = ("normal",) + ANOMALY_KINDS
BANDS: tuple[str, ...] = ("g", "r", "i")

# Detector and satellite artefacts are laid over an otherwise normal scene from their own random
# stream, so the same object without the artefact can be rebuilt exactly (tests rely on it).
INSTRUMENT_KINDS = ("satellite_trail", "cosmic_rays", "bad_column")

_SUBSTRUCTURE_FRACTIONS = ("knot_fraction", "spiral_fraction", "dust_fraction", "blend_fraction")
SMOOTH = dict.fromkeys(_SUBSTRUCTURE_FRACTIONS + ("psf_e_max",), 0.0)  # the smooth simulator


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"all"`` or ``"merger,lensed_arc"`` (as the command line spells them) -> the kinds."""
    return ANOMALY_KINDS if text == "all" else tuple(k.strip() for k in text.split(","))


@dataclass(frozen=True)
class SurveyConfig:
    """What to simulate: survey size, anomaly mix and the HSC Wide observing conditions.

    Args:
        n_objects: number of cutouts.
        size: cutout side in pixels (the paper: 96; CPU presets 32 or 48).
        anomaly_fraction: fraction of cutouts with an injected anomaly (rounded to a count).
        kinds: anomaly kinds to inject, a subset of ``ANOMALY_KINDS``.
        seed: master seed; every object draws from its own generator seeded by (seed, index).
        pixel_scale: arcsec per pixel (HSC: 0.168).
        zeropoint: AB zero point of the flux unit (HSC coadds: 27).
        mag_range: total i magnitude range of the target galaxies.
        psf_fwhm: median seeing FWHM per band (g, r, i) in arcsec (HSC Wide medians).
        psf_jitter: log-normal scatter of the per-object seeing.
        psf_beta: Moffat beta of the PSF.
        depth_5sigma: 5-sigma point-source depths per band (HSC Wide: 26.5, 26.1, 25.9).
        compact_fraction: fraction of nearly unresolved galaxies.
        neighbour_fraction: fraction of cutouts with one or two faint neighbours.
        field: RA min, RA max, Dec min, Dec max in degrees (inside the HSC Wide GAMA09H field).
        knot_fraction: fraction of extended disc galaxies with 5-40 blue star-forming knots
            (together 5-30% of the disc light, none above 6% of the galaxy's).
        spiral_fraction: fraction of extended disc galaxies with 2-3 logarithmic spiral arms
            (20-50% of the disc light).
        dust_fraction: fraction of inclined extended discs (e > 0.5) with a dust lane.
        blend_fraction: fraction of cutouts with a 1.25-3 mag fainter galaxy 0.33-0.48 of the
            cutout side from the target.
        psf_e_max: largest per-object PSF ellipticity (shear |g|, as ``e`` of the galaxies).
        planes: also simulate what a survey pipeline delivers beside the flux: a variance plane
            (sky + the sources' Poisson noise, which the images then carry too, from a stream of
            their own) and an HSC-like mask plane (SAT on saturated star cores, CR on cosmic
            rays, BAD on bad columns, DETECTED above 3 sky sigma). Off: the survey of before,
            bit for bit.
        sky_brightness: dark-sky surface brightness per band (g, r, i) in mag/arcsec^2; with the
            sky noise it sets the gain (electrons per flux unit) of the Poisson noise.

    Example:
        >>> SurveyConfig(n_objects=64, size=32, anomaly_fraction=0.25).validate()
    """

    n_objects: int = dataclasses.field(
        default=2000, metadata={"help": "Cutouts to simulate.", "flag": ("-n", "--n-objects")}
    )
    size: int = dataclasses.field(
        default=96,
        metadata={"help": "Cutout side in pixels (96 = the paper's; 32 or 48 for CPU presets)."},
    )
    anomaly_fraction: float = dataclasses.field(
        default=0.02, metadata={"help": "Fraction of injected anomalies."}
    )
    kinds: tuple[str, ...] = dataclasses.field(
        default=ANOMALY_KINDS,
        metadata={
            "help": "Comma-separated anomaly kinds to inject (see the list below), or 'all'.",
            "cli_default": "all",
            "parse": parse_kinds,
        },
    )
    seed: int = dataclasses.field(
        default=0, metadata={"help": "Random seed: same seed, same bits."}
    )
    pixel_scale: float = 0.168
    zeropoint: float = 27.0
    mag_range: tuple[float, float] = (20.0, 20.5)
    psf_fwhm: tuple[float, float, float] = (0.75, 0.70, 0.60)
    psf_jitter: float = 0.10
    psf_beta: float = 3.0
    depth_5sigma: tuple[float, float, float] = (26.5, 26.1, 25.9)
    compact_fraction: float = 0.3
    neighbour_fraction: float = 0.3
    field: tuple[float, float, float, float] = (130.0, 140.0, -1.0, 4.0)
    knot_fraction: float = 0.6
    spiral_fraction: float = 0.35
    dust_fraction: float = 0.4
    blend_fraction: float = 0.15
    psf_e_max: float = 0.06
    planes: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Also write `variances` (sky + the sources' Poisson noise, which the "
            "images then carry) and `masks` (HSC bits: SAT star cores, CR cosmic "
            "rays, BAD columns, DETECTED).",
            "is_flag": True,
        },
    )
    sky_brightness: tuple[float, float, float] = (22.0, 21.2, 20.3)

    def validate(self) -> None:
        """Raise ConfigError with a clear message for any value that makes no sense."""

        def fail(message: str) -> None:
            raise ConfigError(f"simulate: {message}")

        if not isinstance(self.n_objects, int | np.integer) or self.n_objects < 1:
            fail(f"n_objects must be an integer >= 1, got {self.n_objects!r}")
        if not isinstance(self.size, int | np.integer) or not 16 <= self.size <= 1024:
            fail(f"size must be an integer in [16, 1024] pixels, got {self.size!r}")
        if not 0.0 <= float(self.anomaly_fraction) <= 1.0:
            fail(f"anomaly_fraction must be in [0, 1], got {self.anomaly_fraction!r}")
        if isinstance(self.kinds, str):
            fail(f"kinds must be a tuple of kind names, not the string {self.kinds!r}")
        unknown = [kind for kind in self.kinds if kind not in ANOMALY_KINDS]
        if unknown:
            fail(f"unknown anomaly kind(s) {unknown}; choose from {list(ANOMALY_KINDS)}")
        if len(set(self.kinds)) != len(self.kinds):
            fail(f"kinds has duplicates: {list(self.kinds)}")
        if not self.kinds and self.anomaly_fraction > 0:
            fail("kinds is empty but anomaly_fraction > 0")
        if not isinstance(self.seed, int | np.integer) or self.seed < 0:
            fail(f"seed must be a non-negative integer, got {self.seed!r}")
        if not self.pixel_scale > 0:
            fail(f"pixel_scale must be > 0 arcsec, got {self.pixel_scale!r}")
        if not math.isfinite(self.zeropoint):
            fail(f"zeropoint must be finite, got {self.zeropoint!r}")
        lo, hi = self.mag_range
        if not lo < hi:
            fail(f"mag_range must be (bright, faint) with bright < faint, got {self.mag_range!r}")
        if len(self.psf_fwhm) != len(BANDS) or min(self.psf_fwhm) <= 0:
            fail(f"psf_fwhm needs {len(BANDS)} positive values (g, r, i), got {self.psf_fwhm!r}")
        if len(self.depth_5sigma) != len(BANDS):
            fail(f"depth_5sigma needs {len(BANDS)} values (g, r, i), got {self.depth_5sigma!r}")
        if not 0.0 <= self.psf_jitter < 1.0:
            fail(f"psf_jitter must be in [0, 1), got {self.psf_jitter!r}")
        if not self.psf_beta > 1.5:
            fail(f"psf_beta must be > 1.5 (finite PSF noise area), got {self.psf_beta!r}")
        for name in ("compact_fraction", "neighbour_fraction") + _SUBSTRUCTURE_FRACTIONS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.psf_e_max <= 0.3:
            fail(f"psf_e_max must be in [0, 0.3] (a shear |g|), got {self.psf_e_max!r}")
        if len(self.sky_brightness) != len(BANDS):
            fail(f"sky_brightness needs {len(BANDS)} values (g, r, i), got {self.sky_brightness!r}")
        ra_min, ra_max, dec_min, dec_max = self.field
        if not (ra_min < ra_max and -90.0 <= dec_min < dec_max <= 90.0):
            fail(f"field must be (ra_min, ra_max, dec_min, dec_max), got {self.field!r}")

    def to_json(self) -> str:
        """The config as JSON (stored in the survey file's ``config`` attribute)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SurveyConfig:
        """Rebuild a config from ``to_json`` output (lists become tuples again).

        A config written before the galaxies had substructure loads as ``smooth()``: the
        simulator that wrote it.
        """
        values = json.loads(text)
        if not any(name in values for name in SMOOTH):
            values = SMOOTH | values
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def smooth(self) -> SurveyConfig:
        """The same survey with smooth bulge + disc galaxies, no blends and round PSFs.

        Objects keep their galaxies, anomalies and noise exactly: this is the simulator before
        substructure, bit for bit, the variant that flatters pixel-space baselines.
        """
        return dataclasses.replace(self, **SMOOTH)


def sky_sigma(config: SurveyConfig) -> np.ndarray:
    """Per-pixel Gaussian sky noise (g, r, i) in flux units implied by the 5-sigma depths.

    A PSF-fitted point source on white noise of sigma per pixel has S/N = F / (sigma sqrt(NEA)),
    NEA = 1 / integral(PSF^2) the noise-equivalent area (4 pi s^2 for a Gaussian of width s). For a
    Moffat of width alpha and index beta, NEA = pi alpha^2 (2 beta - 1) / (beta - 1)^2. So
    sigma = F_5 / (5 sqrt(NEA)), F_5 = 10^(-0.4 (m_5 - ZP)), at the median seeing of each band.
    """
    beta = config.psf_beta
    fwhm_px = np.asarray(config.psf_fwhm, float) / config.pixel_scale
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    nea = math.pi * alpha**2 * (2.0 * beta - 1.0) / (beta - 1.0) ** 2
    flux_5 = 10.0 ** (-0.4 * (np.asarray(config.depth_5sigma, float) - config.zeropoint))
    return flux_5 / 5.0 / np.sqrt(nea)


def gain(config: SurveyConfig) -> np.ndarray:
    """Electrons per flux unit (g, r, i) of the coadd: the sky level per pixel over the sky
    variance, so that the sky alone gives exactly ``sky_sigma``; a source of flux F per pixel adds
    a variance F / gain (Poisson)."""
    sky_per_pixel = 10.0 ** (
        -0.4 * (np.asarray(config.sky_brightness, float) - config.zeropoint)
    ) * (config.pixel_scale**2)
    return sky_per_pixel / sky_sigma(config) ** 2


def survey_labels(config: SurveyConfig) -> np.ndarray:
    """Label of every object (index into ``KIND_NAMES``), decided from the seed alone."""
    return labels(
        config.n_objects, float(config.anomaly_fraction), tuple(config.kinds), config.seed
    ).copy()


@functools.lru_cache(maxsize=8)
def labels(n: int, fraction: float, kinds: tuple[str, ...], seed: int) -> np.ndarray:
    n_anomalies = int(math.floor(fraction * n + 0.5))
    labels = np.zeros(n, np.uint8)
    if n_anomalies == 0:
        return labels
    # Canonical kind order: the same set of kinds gives the same survey whatever order it came in.
    values = np.array(sorted(KIND_NAMES.index(kind) for kind in kinds), np.uint8)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x1ABE1,)))
    counts = np.full(len(values), n_anomalies // len(values))
    counts[rng.permutation(len(values))[: n_anomalies % len(values)]] += 1
    positions = rng.choice(n, size=n_anomalies, replace=False)
    labels[positions] = np.repeat(values, counts)
    labels.flags.writeable = False
    return labels
