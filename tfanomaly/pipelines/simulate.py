"""Simulated HSC Wide-like g, r, i cutouts of 20 < i < 20.5 galaxies with labelled injected anomalies.

The embedded default data set of the demo, tests and benchmarks, written in the paper's HDF5 layout.
Its galaxies have knots, spiral arms, dust lanes and blends, so that "normal" is not just "smooth".
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from tfanomaly.errors import ConfigError
from tfanomaly.fileio import atomic_path

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

GENERATOR = "tfanomaly.simulate"
WRITE_CHUNK = 256  # objects simulated and written per step: memory stays flat for any N
_HDF5_CHUNK_BYTES = 1 << 17  # one to a few cutouts per HDF5 chunk, cheap random access
_LAMBDA_NM = np.array([477.0, 623.0, 775.0])  # HSC g, r, i effective wavelengths
_EXP_HLR_OVER_R0 = 1.6783469900166605  # half-light radius of an exponential in scale lengths
_TABLE_X = np.concatenate([[0.0], np.geomspace(1e-3, 500.0, 2500)])
_SUBSTRUCTURE_FRACTIONS = ("knot_fraction", "spiral_fraction", "dust_fraction", "blend_fraction")
_SMOOTH = dict.fromkeys(_SUBSTRUCTURE_FRACTIONS + ("psf_e_max",), 0.0)  # the smooth simulator


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

    Example:
        >>> SurveyConfig(n_objects=64, size=32, anomaly_fraction=0.25).validate()
    """

    n_objects: int = 2000
    size: int = 96
    anomaly_fraction: float = 0.02
    kinds: tuple[str, ...] = ANOMALY_KINDS
    seed: int = 0
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
        if not any(name in values for name in _SMOOTH):
            values = _SMOOTH | values
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def smooth(self) -> SurveyConfig:
        """The same survey with smooth bulge + disc galaxies, no blends and round PSFs.

        Objects keep their galaxies, anomalies and noise exactly: this is the simulator before
        substructure, bit for bit, the variant that flatters pixel-space baselines.
        """
        return dataclasses.replace(self, **_SMOOTH)


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


def survey_labels(config: SurveyConfig) -> np.ndarray:
    """Label of every object (index into ``KIND_NAMES``), decided from the seed alone."""
    labels = _labels(
        config.n_objects, float(config.anomaly_fraction), tuple(config.kinds), config.seed
    )
    return labels.copy()


@functools.lru_cache(maxsize=8)
def _labels(n: int, fraction: float, kinds: tuple[str, ...], seed: int) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Rendering: every smooth profile is evaluated analytically in Fourier space on a padded grid,
# multiplied by the band's PSF and pixel transforms, and brought back with one inverse FFT per
# band. The radial transforms of the de Vaucouleurs bulge and the Moffat PSF are GalSim's own,
# tabulated once; this is ~10x faster than a GalSim drawImage per band and object.


_TABLES: dict[tuple[str, float], np.ndarray] = {}


def _radial_ft_table(profile: str, beta: float = 3.0) -> np.ndarray:
    key = (profile, float(beta) if profile == "moffat" else 0.0)
    if key not in _TABLES:
        import galsim  # here, not at the top: pool workers get the tables and never import it

        if profile == "dev":
            obj = galsim.DeVaucouleurs(half_light_radius=1.0)
        else:
            obj = galsim.Moffat(beta=beta, scale_radius=1.0)
        _TABLES[key] = np.array([obj.kValue(x, 0.0).real for x in _TABLE_X])
    return _TABLES[key]


def _install_tables(tables: dict[tuple[str, float], np.ndarray]) -> None:
    _TABLES.update(tables)


@dataclass(frozen=True)
class _Grid:
    size: int
    pad: int
    n: int
    kx: np.ndarray  # (1, M) rad / pixel
    ky: np.ndarray  # (N, 1)
    k: np.ndarray  # (N, M)
    k2: np.ndarray
    pixel: np.ndarray  # (N, M) transform of the square pixel response
    x: np.ndarray  # (1, N) real-space grid coordinates in stamp pixels
    y: np.ndarray  # (N, 1)
    dev: np.ndarray
    moffat: np.ndarray


@functools.lru_cache(maxsize=8)
def _grid(size: int, beta: float) -> _Grid:
    # Padding keeps the wings of big galaxies and off-stamp neighbours from wrapping around.
    pad = max(16, size // 4)
    n = size + 2 * pad
    kx = 2.0 * np.pi * np.fft.rfftfreq(n)[None, :]
    ky = 2.0 * np.pi * np.fft.fftfreq(n)[:, None]
    k2 = kx**2 + ky**2
    pixel = np.sinc(np.fft.fftfreq(n))[:, None] * np.sinc(np.fft.rfftfreq(n))[None, :]
    coords = np.arange(n, dtype=float) - pad
    return _Grid(
        size=size,
        pad=pad,
        n=n,
        kx=kx,
        ky=ky,
        k=np.sqrt(k2),
        k2=k2,
        pixel=pixel,
        x=coords[None, :],
        y=coords[:, None],
        dev=_radial_ft_table("dev"),
        moffat=_radial_ft_table("moffat", beta),
    )


def _shear_matrix(e: float, angle: float) -> np.ndarray:
    """The symmetric, area-preserving shear S of galsim.Shear(g=e, beta=angle): a profile f
    sheared by it is f(S^-1 x) in real space, F(S k) in Fourier space, stretched along
    ``angle`` to the axis ratio (1 - e) / (1 + e)."""
    g1, g2 = e * math.cos(2 * angle), e * math.sin(2 * angle)
    return np.array([[1 + g1, g2], [g2, 1 - g1]]) / math.sqrt(1.0 - e * e)


def _sheared_k2(g: _Grid, e: float, angle: float) -> np.ndarray:
    """|S k|^2 on the grid: the squared wavenumber at which a sheared profile's transform is read."""
    if e <= 0.0:
        return g.k2
    g1, g2 = e * math.cos(2 * angle), e * math.sin(2 * angle)
    s = 1.0 / math.sqrt(1.0 - e * e)
    kxs = s * ((1 + g1) * g.kx + g2 * g.ky)
    kys = s * (g2 * g.kx + (1 - g1) * g.ky)
    return kxs * kxs + kys * kys


@functools.cache
def _blas_threads():
    from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

    return ThreadpoolController()


def _one_blas_thread():
    """A context with single-threaded BLAS: the products here are small, and BLAS threads
    fighting for busy cores (or the other pool workers) make them ~50x slower."""
    return _blas_threads().limit(limits=1, user_api="blas")


class _Scene:
    """The sky of one cutout: analytic profiles, pre-PSF pixel maps and post-PSF additions.

    The PSF is a Moffat of the given FWHM per band, all three sheared by ``psf_e`` along
    ``psf_angle`` (the optics and guiding that elongate it act on every band alike).
    """

    def __init__(
        self,
        grid: _Grid,
        psf_fwhm_px: np.ndarray,
        beta: float,
        psf_e: float = 0.0,
        psf_angle: float = 0.0,
    ):
        self.grid = grid
        self.fwhm_px = psf_fwhm_px
        self.beta = beta
        self.alpha = psf_fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        self.psf_e = psf_e
        self.psf_angle = psf_angle
        m = grid.kx.shape[1]
        self.kspace = np.zeros((len(BANDS), grid.n, m), complex)
        self.maps: np.ndarray | None = None
        self.post = np.zeros((len(BANDS), grid.size, grid.size))

    def add_profile(
        self, profile: str, flux: np.ndarray, x: float, y: float, hlr: float = 0.0, e=0.0, angle=0.0
    ) -> None:
        """Add an 'exp', 'dev', 'gauss' (hlr = sigma) or 'point' profile at stamp pixel (x, y)."""
        g = self.grid
        k2 = _sheared_k2(g, e, angle)
        if profile == "exp":
            t = 1.0 + k2 * (hlr / _EXP_HLR_OVER_R0) ** 2
            ft = 1.0 / (t * np.sqrt(t))
        elif profile == "dev":
            ft = np.interp(np.sqrt(k2) * hlr, _TABLE_X, g.dev, right=0.0)
        elif profile == "gauss":
            ft = np.exp(-0.5 * k2 * hlr * hlr)
        else:
            ft = 1.0
        phase = np.exp(-1j * g.ky * (y + g.pad)) * np.exp(-1j * g.kx * (x + g.pad))
        self.kspace += np.asarray(flux, float)[:, None, None] * (ft * phase)

    def add_gaussians(self, flux: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: np.ndarray):
        """Add round Gaussians: fluxes (bands, n), centres and widths (n,) in stamp pixels.

        A round Gaussian's transform factorises in kx and ky, so all of them together are one
        (N, n) @ (n, M) product per band instead of n full-grid transforms (~10x faster for 40).
        """
        g = self.grid
        var = 0.5 * np.asarray(sigma, float) ** 2
        along_y = np.exp(-var * g.ky**2 - 1j * g.ky * (np.asarray(y) + g.pad))  # (N, n)
        along_x = np.exp(-var * g.kx.T**2 - 1j * g.kx.T * (np.asarray(x) + g.pad))  # (M, n)
        with _one_blas_thread():
            self.kspace += (np.asarray(flux, float)[:, None, :] * along_y[None]) @ along_x.T

    def add_map(self, maps: np.ndarray) -> None:
        """Add pre-PSF surface brightness (bands, N, N) sampled on the padded grid."""
        self.maps = maps if self.maps is None else self.maps + maps

    def render(self) -> np.ndarray:
        """The noise-free cutout (bands, size, size)."""
        g = self.grid
        kspace = self.kspace * g.pixel
        if self.maps is not None:
            kspace += np.fft.rfft2(self.maps)
        k = g.k if self.psf_e <= 0.0 else np.sqrt(_sheared_k2(g, self.psf_e, self.psf_angle))
        for b in range(len(BANDS)):
            kspace[b] *= np.interp(k * self.alpha[b], _TABLE_X, g.moffat, right=0.0)
        image = np.fft.irfft2(kspace, s=(g.n, g.n))
        return image[:, g.pad : g.pad + g.size, g.pad : g.pad + g.size] + self.post


def _band_fluxes(flux_i: float, g_r: float, r_i: float) -> np.ndarray:
    flux_r = flux_i * 10.0 ** (-0.4 * r_i)
    return np.array([flux_r * 10.0 ** (-0.4 * g_r), flux_r, flux_i])


@dataclass
class _Ctx:
    """What a kind's drawer needs besides the random generator."""

    config: SurveyConfig
    scene: _Scene
    sigma: np.ndarray
    x0: float
    y0: float
    flux_i: float
    # The object's substructure stream (knots, arms, dust, blend, PSF shape); None when the
    # config is smooth. Kept apart from the drawers' stream so that the galaxies, anomalies
    # and noise are the same with and without substructure.
    sub: np.random.Generator | None = None

    @property
    def size(self) -> int:
        return self.config.size

    def px(self, arcsec: float) -> float:
        return arcsec / self.config.pixel_scale


def _galaxy(rng, ctx: _Ctx, x, y, flux_i, compact=False, disky=False, max_hlr=None) -> dict:
    """A bulge (de Vaucouleurs) + disc (exponential) galaxy; returns its sizes in pixels.

    Its shape and colours come from ``rng``. With substructure on (``ctx.sub``), an extended
    disc galaxy (not compact, bulge-to-total < 0.6) then gets, from the substructure stream and
    each with its config fraction: spiral arms (``_spiral_arms``), star-forming knots
    (``_knots``) and, when inclined (e > 0.5), a dust lane (``_dust_lane``). Arms and knots
    move disc light, they add none. Anomaly hosts are drawn here too, so that smoothness
    never tells a normal galaxy from a host.
    """
    bulge_to_total = rng.beta(0.9, 1.3) * (0.3 if disky else 1.0)
    if compact:
        hlr_disc = ctx.px(math.exp(rng.uniform(math.log(0.1), math.log(0.3))))
        hlr_bulge = hlr_disc * rng.uniform(0.6, 1.0)
        e_disc = rng.uniform(0.0, 0.3)
    else:
        hlr_disc = ctx.px(float(np.clip(math.exp(rng.normal(0.0, 0.35)), 0.5, 2.5)))
        if max_hlr is not None:
            hlr_disc = min(hlr_disc, max_hlr)
        hlr_bulge = hlr_disc * rng.uniform(0.3, 0.6)
        e_disc = rng.uniform(0.0, 0.7)
    e_bulge = rng.uniform(0.0, 0.3)
    angle = rng.uniform(0.0, math.pi)
    bulge = _band_fluxes(bulge_to_total * flux_i, rng.uniform(1.0, 1.5), rng.uniform(0.4, 0.6))
    g_r, r_i = rng.uniform(0.3, 0.8), rng.uniform(0.1, 0.4)
    disc_flux = _band_fluxes((1 - bulge_to_total) * flux_i, g_r, r_i)
    disc = _Disc(x, y, hlr_disc, e_disc, angle, disc_flux, g_r, r_i)
    ctx.scene.add_profile("dev", bulge, x, y, hlr_bulge, e_bulge, angle)
    galaxy = {
        "hlr": bulge_to_total * hlr_bulge + (1 - bulge_to_total) * hlr_disc,
        "hlr_disc": hlr_disc,
        "angle": angle,
        "e": e_disc,
    }
    arms = lane = None
    if ctx.sub is not None:
        config = ctx.config
        draws = ctx.sub.random(3)
        extended = not compact and bulge_to_total < 0.6
        if extended and draws[0] < config.spiral_fraction:
            arms = _spiral_arms(ctx.sub, disc)
        if extended and draws[1] < config.knot_fraction:
            galaxy["knots"] = _knots(ctx.sub, ctx, disc, bulge + disc.total, arms)
        if extended and e_disc > 0.5 and draws[2] < config.dust_fraction:
            lane = _dust_lane(ctx.sub, disc)
        galaxy |= {"arms": arms, "lane": lane}
    _add_disc(ctx.scene, disc, arms, lane)
    return galaxy


def _normal(rng, ctx: _Ctx) -> None:
    """One bulge + disc galaxy (``_galaxy``), nearly unresolved for ``compact_fraction`` of them."""
    compact = rng.random() < ctx.config.compact_fraction
    _galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, compact=compact)


# --------------------------------------------------------------------------------------------
# The discs' substructure. Real discs are not smooth: a pixel-space baseline that learns smooth
# profiles as "normal" finds every star-forming spiral odd. All of it is drawn in the disc's
# own face-on frame and projected like the disc: a face-on point p lands at the stamp offset
# S p, S the disc's shear.


@dataclass
class _Disc:
    """An exponential disc at stamp pixel (x, y); ``flux`` is the light left in its smooth part."""

    x: float
    y: float
    hlr: float  # pixels
    e: float
    angle: float
    flux: np.ndarray  # (bands,)
    g_r: float
    r_i: float
    total: np.ndarray = dataclasses.field(init=False)  # the whole disc's light

    def __post_init__(self) -> None:
        self.total = self.flux.copy()

    @property
    def r0(self) -> float:
        return self.hlr / _EXP_HLR_OVER_R0

    def frame(self, grid: _Grid, oversample: int = 1):
        """Offsets (dx, dy) of the padded grid's pixels from the centre, and the same points in
        the face-on frame (u, v); oversample > 1 adds two axes of sub-pixel points."""
        if oversample == 1:
            dx, dy = grid.x - self.x, grid.y - self.y
        else:
            offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
            dx = grid.x[..., None, None] + offsets[None, :] - self.x  # (1, N, 1, s)
            dy = grid.y[..., None, None] + offsets[:, None] - self.y  # (N, 1, s, 1)
        inverse = _shear_matrix(self.e, self.angle + math.pi / 2)  # S^-1: the opposite shear
        u = inverse[0, 0] * dx + inverse[0, 1] * dy
        v = inverse[1, 0] * dx + inverse[1, 1] * dy
        return dx, dy, u, v

    def exponential(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.exp(-np.sqrt(u * u + v * v) / self.r0)


@dataclass
class _Arms:
    """m logarithmic spiral arms: ridges at theta = phase + winding ln(r / r0) + 2 pi j / m."""

    m: int
    winding: float  # +-1 / tan(pitch angle)
    phase: float
    sharpness: float
    r_in: float  # pixels; the arms fade in over ~r_in, out of the bulge
    flux: np.ndarray

    def pattern(self, disc: _Disc, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unnormalised face-on surface brightness of the arms at (u, v)."""
        r2 = u * u + v * v
        log_r = 0.5 * np.log(np.maximum(r2, 1e-6) / disc.r0**2)
        psi = np.arctan2(v, u) - self.phase - self.winding * log_r
        envelope = np.exp(-np.sqrt(r2) / disc.r0) * -np.expm1(-r2 / self.r_in**2)
        return envelope * (0.5 + 0.5 * np.cos(self.m * psi)) ** self.sharpness


def _spiral_arms(rng, disc: _Disc) -> _Arms:
    """Two (a quarter of the time three) logarithmic spiral arms, pitch angle 10-30 deg, winding
    either way, that take 20-50% of the disc's i light and are slightly bluer than it (g-r
    0.05-0.2, r-i 0-0.1 mag). The pattern ((1 + cos m psi) / 2)^w (w 2-5, psi the angle from
    an arm) lies on the disc's exponential, faded in over 0.5-1 scale lengths out of the bulge.
    """
    arms = _Arms(
        m=2 if rng.random() < 0.75 else 3,
        winding=rng.choice([-1.0, 1.0]) / math.tan(math.radians(rng.uniform(10.0, 30.0))),
        phase=rng.uniform(0.0, 2 * math.pi),
        sharpness=rng.uniform(2.0, 5.0),
        r_in=disc.r0 * rng.uniform(0.5, 1.0),
        flux=_band_fluxes(
            rng.uniform(0.2, 0.5) * disc.total[2],
            disc.g_r - rng.uniform(0.05, 0.2),
            disc.r_i - rng.uniform(0.0, 0.1),
        ),
    )
    disc.flux = disc.flux - arms.flux
    return arms


def _knots(rng, ctx: _Ctx, disc: _Disc, galaxy_flux: np.ndarray, arms: _Arms | None) -> np.ndarray:
    """5-40 star-forming knots (HII regions, like GalSim's RandomKnots): nearly unresolved
    Gaussians (sigma 0.05-0.15") at radii drawn from the disc's light (r = r0 Gamma(2, 1)),
    60% of them on the arms when there are arms. Together they take 5-30% of the disc's i light
    (log-normal shares); each is bluer than the disc (g-r 0.1-0.45, r-i 0-0.25) and at most 6% of
    the galaxy's flux in every band, well below a ``star_forming_clump`` (15-35%). Returns the
    fluxes (bands, n) of those on the padded grid (the others' light stays in the disc)."""
    n = int(rng.integers(5, 41))
    share = rng.uniform(0.05, 0.30)
    weights = rng.lognormal(0.0, 0.8, n)
    g_r = rng.uniform(0.1, min(0.45, disc.g_r - 0.1), n)
    r_i = rng.uniform(0.0, min(0.25, disc.r_i - 0.05), n)
    sigma = ctx.px(rng.uniform(0.05, 0.15, n))
    r = disc.r0 * rng.gamma(2.0, 1.0, n)
    theta = rng.uniform(0.0, 2 * math.pi, n)
    on_arm = rng.random(n) < 0.6
    arm = rng.integers(0, 6, n)  # 6: a whole number of turns for 2 or 3 arms
    scatter = rng.normal(0.0, 0.15, n)
    if arms is not None:
        ridge = arms.phase + arms.winding * np.log(r / disc.r0) + 2 * math.pi * arm / arms.m
        theta = np.where(on_arm, ridge + scatter, theta)
    shear = _shear_matrix(disc.e, disc.angle)
    u, v = r * np.cos(theta), r * np.sin(theta)
    x = disc.x + shear[0, 0] * u + shear[0, 1] * v
    y = disc.y + shear[1, 0] * u + shear[1, 1] * v
    flux = _band_fluxes(share * disc.total[2] * weights / weights.sum(), g_r, r_i)  # (bands, n)
    flux *= np.minimum(1.0, np.min(0.06 * galaxy_flux[:, None] / flux, axis=0))
    # Knots near the edge of the padded grid would wrap around onto the far side of the stamp.
    g = ctx.scene.grid
    low, high = -g.pad / 2, g.size - 1 + g.pad / 2
    keep = (x > low) & (x < high) & (y > low) & (y < high)
    if not keep.any():
        return flux[:, keep]
    flux = flux[:, keep]
    # Knots much bluer than a red disc could outshine its g light: keep 30% of it smooth.
    flux *= min(1.0, float(np.min(0.7 * disc.flux / flux.sum(axis=1))))
    disc.flux = disc.flux - flux.sum(axis=1)
    ctx.scene.add_gaussians(flux, x[keep], y[keep], sigma[keep])
    return flux


# Optical depth of dust in g, r, i relative to r (Milky-Way-like, A_lambda roughly ~ 1 / lambda).
_DUST_TAU_OVER_R = np.array([1.3, 1.0, 0.75])


@dataclass(frozen=True)
class _Lane:
    """A dust lane along the disc's major axis: optical depth in r, Gaussian width and offset
    across the lane (pixels)."""

    tau_r: float
    width: float
    offset: float


def _dust_lane(rng, disc: _Disc) -> _Lane:
    """A dust lane for an inclined disc: central optical depth tau_r 0.5-1.5 (g : r : i =
    1.3 : 1 : 0.75), a Gaussian 0.1-0.25 disc half-light radii wide across (at least half a
    pixel), 0.03-0.12 half-light radii off the centre to either side, fading along the major
    axis over two disc scale lengths."""
    return _Lane(
        tau_r=rng.uniform(0.5, 1.5),
        width=max(0.5, rng.uniform(0.1, 0.25) * disc.hlr),
        offset=rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.12) * disc.hlr,
    )


def _add_disc(scene: _Scene, disc: _Disc, arms: _Arms | None, lane: _Lane | None) -> None:
    """Add the smooth disc (the analytic exponential), its arms (a pre-PSF map) and its dust lane.

    The dusty disc is the disc times the transmission exp(-tau_band), drawn as the disc minus
    the light the lane absorbs: a pre-PSF map over the pixels near the lane only, 3x3 points per
    pixel (the lane can be narrower than a pixel). It keeps its drawn i flux (the survey selects
    on observed i magnitudes), so the lane reddens it: g loses most.
    """
    if arms is None and lane is None:
        scene.add_profile("exp", disc.flux, disc.x, disc.y, disc.hlr, disc.e, disc.angle)
        return
    g = scene.grid
    maps = np.zeros((len(BANDS), g.n, g.n))
    arms_total = 1.0
    if arms is not None:
        pattern = arms.pattern(disc, *disc.frame(g)[2:])
        arms_total = pattern.sum()
        maps += arms.flux[:, None, None] * (pattern / arms_total)[None]
    scale = 1.0
    if lane is not None:
        ca, sa = math.cos(disc.angle), math.sin(disc.angle)
        across = -sa * (g.x - disc.x) + ca * (g.y - disc.y)
        rows, cols = np.nonzero(np.abs(across - lane.offset) < 5.0 * lane.width + 1.0)
        offsets = (np.arange(3) + 0.5) / 3 - 0.5
        dx = (cols - g.pad)[:, None, None] + offsets[None, None, :] - disc.x  # (pixels, 1, 3)
        dy = (rows - g.pad)[:, None, None] + offsets[None, :, None] - disc.y  # (pixels, 3, 1)
        inverse = _shear_matrix(disc.e, disc.angle + math.pi / 2)
        u = inverse[0, 0] * dx + inverse[0, 1] * dy
        v = inverse[1, 0] * dx + inverse[1, 1] * dy
        # Surface brightness per pixel area: the analytic disc's, and the arms' as in ``maps``.
        light = disc.flux[:, None, None, None] * disc.exponential(u, v)[None]
        light /= 2 * math.pi * disc.r0**2
        if arms is not None:
            light += arms.flux[:, None, None, None] * (arms.pattern(disc, u, v) / arms_total)[None]
        r0_major = disc.r0 * math.sqrt((1 + disc.e) / (1 - disc.e))
        tau_r = (
            lane.tau_r
            * np.exp(-0.5 * ((-sa * dx + ca * dy - lane.offset) / lane.width) ** 2)
            * np.exp(-np.abs(ca * dx + sa * dy) / (2.0 * r0_major))
        )
        absorbed = (light * -np.expm1(-_DUST_TAU_OVER_R[:, None, None, None] * tau_r)).mean(
            (-2, -1)
        )
        maps[:, rows, cols] -= absorbed
        total_i = disc.flux[2] + (0.0 if arms is None else arms.flux[2])
        scale = total_i / (total_i - absorbed[2].sum())
    scene.add_profile("exp", scale * disc.flux, disc.x, disc.y, disc.hlr, disc.e, disc.angle)
    scene.add_map(scale * maps)


def _merger(rng, ctx: _Ctx) -> None:
    """Two overlapping galaxies of comparable brightness (flux ratio 1:1 to 1:3), 1-3 half-light
    radii apart (at least 1.2" so the pair is resolved), sometimes joined by a faint bridge."""
    primary = _galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, max_hlr=ctx.px(1.3))
    separation = float(
        np.clip(rng.uniform(1.0, 3.0) * primary["hlr"], ctx.px(1.2), 0.32 * ctx.size)
    )
    phi = rng.uniform(0.0, 2 * math.pi)
    x2 = ctx.x0 + separation * math.cos(phi)
    y2 = ctx.y0 + separation * math.sin(phi)
    _galaxy(rng, ctx, x2, y2, ctx.flux_i / rng.uniform(1.0, 3.0), max_hlr=ctx.px(1.3))
    if rng.random() < 0.5:
        bridge = _band_fluxes(ctx.flux_i * rng.uniform(0.05, 0.1), 0.7, 0.35)
        xm, ym = (ctx.x0 + x2) / 2, (ctx.y0 + y2) / 2
        ctx.scene.add_profile("exp", bridge, xm, ym, separation / 2, 0.75, phi)


def _tidal_feature(rng, ctx: _Ctx) -> None:
    """A host galaxy with low-surface-brightness tidal debris: one or two curved tails (an S-shape
    when two), or two to three concentric shells on alternating sides with sharp outer edges.
    The debris peaks at 5-12 sigma of the i-band sky per pixel before the PSF: faint, but clear after the asinh."""
    host = _galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, max_hlr=ctx.px(1.5))
    g = ctx.scene.grid
    r_max = 0.47 * ctx.size
    base = max(host["hlr"], ctx.px(0.4))
    sb = np.zeros((g.n, g.n))
    dx, dy = g.x - ctx.x0, g.y - ctx.y0
    if rng.random() < 0.6:
        phi0 = rng.uniform(0.0, 2 * math.pi)
        curl = rng.choice([-1.0, 1.0])
        for tail in range(1 if rng.random() < 0.5 else 2):
            t = np.linspace(0.0, 1.0, 96)
            r = base + (min(rng.uniform(3.5, 6.0) * base, r_max) - base) * t
            phi = phi0 + tail * math.pi + curl * rng.uniform(0.8, 1.8) * t
            px, py = r * np.cos(phi), r * np.sin(phi)
            d2 = (dx[..., None] - px) ** 2 + (dy[..., None] - py) ** 2
            nearest = np.argmin(d2, axis=-1)
            width = rng.uniform(1.2, 2.0) * (1.0 + 0.8 * t[nearest])
            amplitude = rng.uniform(6.0, 12.0) * (1.0 - 0.6 * t[nearest])
            sb += amplitude * np.exp(-0.5 * np.min(d2, axis=-1) / width**2)
    else:
        rr = np.hypot(dx, dy)
        phi = np.arctan2(dy, dx)
        side = rng.uniform(0.0, 2 * math.pi)
        radii = np.sort(rng.uniform(1.6, 4.5, size=rng.integers(2, 4))) * base
        for j, radius in enumerate(np.minimum(radii, r_max)):
            opening = rng.uniform(0.8, 1.3)
            taper = np.clip((np.cos(phi - side - j * math.pi) - math.cos(opening)), 0.0, None)
            taper = np.sqrt(taper / (1.0 - math.cos(opening)))
            inner = np.exp(-(radius - rr) / rng.uniform(1.5, 3.0))
            profile = np.where(rr <= radius, inner, np.exp(-0.5 * ((rr - radius) / 0.6) ** 2))
            sb += rng.uniform(5.0, 9.0) * taper * profile
    colour = _band_fluxes(1.0, rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.4))
    ctx.scene.add_map(colour[:, None, None] * (ctx.sigma[2] * sb)[None])


def _star_forming_clump(rng, ctx: _Ctx) -> None:
    """A disc galaxy with one or two blue, nearly unresolved star-forming knots (HII regions;
    g-r 0-0.2 from the young stars and emission lines) off the centre, each 15-35% of the
    galaxy's i flux, so they stand out most in g."""
    host = _galaxy(rng, ctx, ctx.x0, ctx.y0, ctx.flux_i, disky=True, max_hlr=ctx.px(1.5))
    for _ in range(1 if rng.random() < 0.7 else 2):
        radius = float(np.clip(rng.uniform(0.5, 1.5) * host["hlr_disc"], 3.0, 0.35 * ctx.size))
        phi = rng.uniform(0.0, 2 * math.pi)
        flux = _band_fluxes(ctx.flux_i * rng.uniform(0.15, 0.35), rng.uniform(0.0, 0.2), 0.0)
        flux[2] *= 10.0 ** (-0.4 * rng.uniform(-0.2, 0.1))  # r-i from Halpha/[OIII]
        xc, yc = ctx.x0 + radius * math.cos(phi), ctx.y0 + radius * math.sin(phi)
        ctx.scene.add_profile("gauss", flux, xc, yc, ctx.px(0.05))


def _lensed_arc(rng, ctx: _Ctx) -> None:
    """A red elliptical lens with a blue tangential arc or partial Einstein ring: a small
    exponential source ray-shot through a singular isothermal sphere with external shear,
    theta_E 1-2", then convolved with the PSF like any other sky light."""
    scale = ctx.config.pixel_scale
    lens = _band_fluxes(ctx.flux_i, rng.uniform(1.4, 1.8), rng.uniform(0.45, 0.6))
    hlr_lens = ctx.px(rng.uniform(0.5, 1.1))
    ctx.scene.add_profile(
        "dev", lens, ctx.x0, ctx.y0, hlr_lens, rng.uniform(0, 0.3), rng.uniform(0, 3.2)
    )
    theta_e = min(rng.uniform(1.0, 2.0), 0.36 * ctx.size * scale)
    gamma = rng.uniform(0.0, 0.08)
    gamma_angle = rng.uniform(0.0, math.pi)
    source_offset = rng.uniform(0.05, 0.35) * theta_e
    source_phi = rng.uniform(0.0, 2 * math.pi)
    bx0, by0 = source_offset * math.cos(source_phi), source_offset * math.sin(source_phi)
    r0 = rng.uniform(0.08, 0.2) / _EXP_HLR_OVER_R0
    q, source_angle = rng.uniform(0.5, 1.0), rng.uniform(0.0, math.pi)
    g = ctx.scene.grid
    # 3x3 sub-pixel rays per pixel: the arc is thinner than a pixel before the PSF.
    sub = (np.arange(3) - 1.0) / 3.0
    tx = ((g.x[..., None, None] + sub[None, :]) - ctx.x0) * scale  # (1, N, 1, 3)
    ty = ((g.y[..., None, None] + sub[:, None]) - ctx.y0) * scale  # (N, 1, 3, 1)
    tr = np.maximum(np.hypot(tx, ty), 1e-6)
    c, s = gamma * math.cos(2 * gamma_angle), gamma * math.sin(2 * gamma_angle)
    bx = tx - theta_e * tx / tr - (c * tx + s * ty) - bx0
    by = ty - theta_e * ty / tr - (s * tx - c * ty) - by0
    ca, sa = math.cos(source_angle), math.sin(source_angle)
    u, v = ca * bx + sa * by, (-sa * bx + ca * by) / q
    sb = np.exp(-np.hypot(u, v) / r0).mean(axis=(-2, -1))
    arc = _band_fluxes(
        10.0 ** (-0.4 * (rng.uniform(21.3, 22.5) - ctx.config.zeropoint)),
        rng.uniform(0.0, 0.4),
        rng.uniform(0.0, 0.3),
    )
    ctx.scene.add_map(arc[:, None, None] * (sb / sb.sum())[None])


def _diffraction_spikes(rng, ctx: _Ctx) -> None:
    """A bright star (i 13.5-16) in a corner of the cutout or just off it: Moffat core clipped
    flat where the coadd saturated, a broad scattered-light halo, and four diffraction spikes
    (HSC's spider vanes) in a cross, longer and wider in redder bands (diffraction goes as
    wavelength)."""
    _normal(rng, ctx)
    half = (ctx.size - 1) / 2
    distance = rng.uniform(0.45, 0.85) * ctx.size
    phi = rng.uniform(0.0, 2 * math.pi)
    xs, ys = half + distance * math.cos(phi), half + distance * math.sin(phi)
    flux = _band_fluxes(
        10.0 ** (-0.4 * (rng.uniform(13.5, 16.0) - ctx.config.zeropoint)),
        rng.uniform(0.4, 1.2),
        rng.uniform(0.1, 0.5),
    )
    spike_angle = rng.uniform(0.0, math.pi / 2)
    saturation = rng.uniform(300.0, 1000.0)
    coords = np.arange(ctx.size, dtype=float)
    dx, dy = coords[None, :] - xs, coords[:, None] - ys
    r2 = dx * dx + dy * dy
    beta = ctx.scene.beta
    for b in range(len(BANDS)):
        alpha = ctx.scene.alpha[b]
        core = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** -beta
        halo_alpha = 3.0 * alpha
        halo = 0.5 / (math.pi * halo_alpha**2) * (1 + r2 / halo_alpha**2) ** -1.5
        stretch = _LAMBDA_NM[b] / _LAMBDA_NM[2]
        spikes = np.zeros_like(r2)
        for j in range(4):
            ca, sa = (
                math.cos(spike_angle + j * math.pi / 2),
                math.sin(spike_angle + j * math.pi / 2),
            )
            along = dx * ca + dy * sa
            across = -dx * sa + dy * ca
            profile = (1 + np.maximum(along, 0.0) / (4.0 * stretch)) ** -1.6
            spikes += np.where(along > 0, profile, 0.0) * np.exp(
                -0.5 * (across / (0.6 * stretch)) ** 2
            )
        star = flux[b] * (0.94 * core + 0.05 * halo + 0.002 * stretch * spikes)
        ctx.scene.post[b] += np.minimum(star, saturation)


def _satellite_trail(rng, ctx: _Ctx) -> np.ndarray:
    """A straight streak across the whole cutout in one band only (the bands were exposed at
    different times), about a PSF wide (slightly defocused), through a random point."""
    band = rng.integers(len(BANDS))
    half = (ctx.size - 1) / 2
    xp, yp = half + rng.uniform(-0.3, 0.3) * ctx.size, half + rng.uniform(-0.3, 0.3) * ctx.size
    angle = rng.uniform(0.0, math.pi)
    sigma_px = ctx.scene.fwhm_px[band] * rng.uniform(1.0, 1.3) / 2.3548
    coords = np.arange(ctx.size, dtype=float)
    distance = (coords[None, :] - xp) * math.sin(angle) - (coords[:, None] - yp) * math.cos(angle)
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    peak = rng.uniform(3.0, 12.0) * ctx.sigma[band]
    artefact[band] = peak * np.exp(-0.5 * (distance / sigma_px) ** 2)
    return artefact


def _cosmic_rays(rng, ctx: _Ctx) -> np.ndarray:
    """Two to five residual cosmic-ray hits and short tracks, each in one band, sharp (never
    seen through the atmosphere, so not PSF-convolved): one to a few pixels wide, jagged."""
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    for _ in range(rng.integers(2, 6)):
        band = rng.integers(len(BANDS))
        x, y = rng.uniform(0, ctx.size - 1, size=2)
        length = rng.uniform(3.0, 12.0) if rng.random() < 0.6 else rng.uniform(0.0, 1.5)
        angle = rng.uniform(0.0, math.pi)
        t = np.linspace(0.0, 1.0, max(2, int(length * 4)))
        cols = np.rint(x + length * t * math.cos(angle)).astype(int)
        rows = np.rint(y + length * t * math.sin(angle)).astype(int)
        keep = (cols >= 0) & (cols < ctx.size) & (rows >= 0) & (rows < ctx.size)
        pixels = np.unique(rows[keep] * ctx.size + cols[keep])
        values = rng.uniform(15.0, 60.0) * ctx.sigma[band] * rng.uniform(0.5, 1.0, len(pixels))
        artefact[band].flat[pixels] += values
    return artefact


def _bad_column(rng, ctx: _Ctx) -> np.ndarray:
    """One to three adjacent columns with a strong offset (hot or cold) in one band, over the
    whole cutout or from a random row to an edge, as a bad CCD column left in a coadd."""
    band = rng.integers(len(BANDS))
    width = int(rng.choice([1, 1, 1, 2, 3]))
    column = int(rng.integers(ctx.size // 8, ctx.size - ctx.size // 8 - width))
    rows = slice(0, ctx.size)
    if rng.random() < 0.5:
        cut = int(rng.integers(ctx.size // 4, 3 * ctx.size // 4))
        rows = slice(cut, ctx.size) if rng.random() < 0.5 else slice(0, cut)
    artefact = np.zeros((len(BANDS), ctx.size, ctx.size))
    sign = 1.0 if rng.random() < 0.75 else -1.0
    artefact[band, rows, column : column + width] = sign * rng.uniform(6.0, 25.0) * ctx.sigma[band]
    return artefact


_SKY_DRAWERS = {
    "normal": _normal,
    "merger": _merger,
    "tidal_feature": _tidal_feature,
    "star_forming_clump": _star_forming_clump,
    "lensed_arc": _lensed_arc,
    "diffraction_spikes": _diffraction_spikes,
}
_ARTEFACT_DRAWERS = {
    "satellite_trail": _satellite_trail,
    "cosmic_rays": _cosmic_rays,
    "bad_column": _bad_column,
}


def _neighbours(rng, ctx: _Ctx) -> None:
    """One or two faint (21.5-25 mag) galaxies or stars anywhere around, partly off the stamp."""
    g = ctx.scene.grid
    half = (ctx.size - 1) / 2
    for _ in range(rng.integers(1, 3)):
        for _attempt in range(8):
            x, y = rng.uniform(-g.pad / 2, ctx.size + g.pad / 2, size=2)
            if math.hypot(x - half, y - half) > 0.2 * ctx.size:
                break
        flux_i = 10.0 ** (-0.4 * (rng.uniform(21.5, 25.0) - ctx.config.zeropoint))
        if rng.random() < 0.3:
            flux = _band_fluxes(flux_i, rng.uniform(0.3, 1.4), rng.uniform(0.1, 0.6))
            ctx.scene.add_profile("point", flux, x, y)
        else:
            flux = _band_fluxes(flux_i, rng.uniform(0.3, 1.6), rng.uniform(0.1, 0.7))
            hlr = ctx.px(math.exp(rng.uniform(math.log(0.2), math.log(0.8))))
            ctx.scene.add_profile("exp", flux, x, y, hlr, rng.uniform(0, 0.6), rng.uniform(0, 3.2))


def _blend(rng, ctx: _Ctx, separation: float, phi: float, fainter: float) -> None:
    """A second, unrelated galaxy (``_galaxy``, substructure and all) ``fainter`` (1.25-3) i mag
    below the target and ``separation`` (0.33-0.48) of the cutout side away from it: it overlaps
    the target only in the wings. A ``merger`` companion is brighter (at most 1.2 mag fainter)
    and closer (within 0.32 of the side)."""
    x = ctx.x0 + separation * ctx.size * math.cos(phi)
    y = ctx.y0 + separation * ctx.size * math.sin(phi)
    compact = rng.random() < ctx.config.compact_fraction
    flux_i = ctx.flux_i * 10.0 ** (-0.4 * fainter)
    _galaxy(rng, ctx, x, y, flux_i, compact=compact, max_hlr=ctx.px(1.5))


def _object_id(ra: float, dec: float, index: int, field: tuple[float, ...]) -> np.uint64:
    # HSC-like: tract << 42 | patch << 35 | serial (tracts ~1.7 deg, 9x9 patches). The serial is
    # the survey index, so ids are unique; tract >= 9000 puts every id above 2**55.
    tract_deg = 1.7
    ix, iy = (ra - field[0]) / tract_deg, (dec - field[2]) / tract_deg
    tract = 9000 + int(ix) + 16 * int(iy)
    patch = int((ix % 1.0) * 9) * 9 + int((iy % 1.0) * 9)
    return np.uint64((tract << 42) | (patch << 35) | index)


def _render_object(
    config: SurveyConfig, index: int, label: int, noise: bool = True
) -> tuple[np.ndarray, float, float]:
    """One cutout (size, size, bands) float32 with its RA, Dec, from (seed, index) alone.

    Three random streams per object: the main one (position, seeing, galaxies, anomaly,
    neighbours, noise), the substructure one (PSF ellipticity, blend, knots, arms, dust; not
    even created for a smooth config) and the instrument artefacts' one. So the same object can
    be rebuilt exactly without its artefact, or without its substructure (``config.smooth()``).
    ``noise=False`` leaves out the sky noise, the main stream's last draw (for tests).
    """
    rng = np.random.default_rng([config.seed, index])
    ra = rng.uniform(config.field[0], config.field[1])
    dec = rng.uniform(config.field[2], config.field[3])
    grid = _grid(config.size, float(config.psf_beta))
    fwhm_px = (
        np.asarray(config.psf_fwhm, float)
        / config.pixel_scale
        * np.exp(config.psf_jitter * rng.standard_normal(len(BANDS)))
    )
    sub = blend = None
    psf_e = psf_angle = 0.0
    if any(getattr(config, name) > 0 for name in _SMOOTH):
        sub = np.random.default_rng(np.random.SeedSequence([config.seed, index], spawn_key=(2,)))
        # The same draws whatever the fractions, so each can be switched alone.
        psf_e, psf_angle = config.psf_e_max * sub.random(), sub.uniform(0.0, math.pi)
        blended, separation, blend_phi, blend_dmag = sub.random(4)
        if blended < config.blend_fraction:
            blend = (0.33 + 0.15 * separation, 2 * math.pi * blend_phi, 1.25 + 1.75 * blend_dmag)
    scene = _Scene(grid, fwhm_px, float(config.psf_beta), psf_e, psf_angle)
    radius, phi = 0.7 * math.sqrt(rng.random()), rng.uniform(0.0, 2 * math.pi)
    half = (config.size - 1) / 2
    mag_i = rng.uniform(*config.mag_range)
    sigma = sky_sigma(config)
    ctx = _Ctx(
        config=config,
        scene=scene,
        sigma=sigma,
        x0=half + radius * math.cos(phi),
        y0=half + radius * math.sin(phi),
        flux_i=10.0 ** (-0.4 * (mag_i - config.zeropoint)),
        sub=sub,
    )
    kind = KIND_NAMES[label]
    _SKY_DRAWERS.get(kind, _normal)(rng, ctx)
    if blend is not None:
        _blend(sub, ctx, *blend)
    if rng.random() < config.neighbour_fraction:
        _neighbours(rng, ctx)
    image = scene.render()
    if noise:
        image += sigma[:, None, None] * rng.standard_normal(scene.post.shape)
    if kind in _ARTEFACT_DRAWERS:
        artefact_rng = np.random.default_rng(
            np.random.SeedSequence([config.seed, index], spawn_key=(1,))
        )
        image += _ARTEFACT_DRAWERS[kind](artefact_rng, ctx)
    return np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float32), ra, dec


def simulate_stamps(config: SurveyConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    """Objects ``start`` .. ``stop - 1`` of the survey, exactly as ``simulate_survey`` writes them.

    Returns ``images`` (n, H, W, 3) float32, ``object_ids`` uint64, ``idxs`` int64, ``ra`` and
    ``dec`` float64, ``labels`` uint8.

    Example:
        >>> stamps = simulate_stamps(SurveyConfig(n_objects=100, size=32), 0, 10)
    """
    config.validate()
    if not 0 <= start <= stop <= config.n_objects:
        raise ConfigError(
            f"simulate: need 0 <= start <= stop <= n_objects={config.n_objects}, "
            f"got start={start}, stop={stop}"
        )
    labels = _labels(
        config.n_objects, float(config.anomaly_fraction), tuple(config.kinds), config.seed
    )[start:stop]
    n, size = stop - start, config.size
    out = {
        "images": np.empty((n, size, size, len(BANDS)), np.float32),
        "object_ids": np.empty(n, np.uint64),
        "idxs": np.arange(start, stop, dtype=np.int64),
        "ra": np.empty(n, np.float64),
        "dec": np.empty(n, np.float64),
        "labels": labels.copy(),
    }
    for j, index in enumerate(range(start, stop)):
        image, ra, dec = _render_object(config, index, int(labels[j]))
        out["images"][j] = image
        out["ra"][j], out["dec"][j] = ra, dec
        out["object_ids"][j] = _object_id(ra, dec, index, config.field)
    return out


def _simulate_range(args: tuple[SurveyConfig, int, int]) -> dict[str, np.ndarray]:
    return simulate_stamps(*args)


def simulate_survey(
    path: str | os.PathLike,
    config: SurveyConfig,
    workers: int = 1,
    progress: bool = True,
    *,
    chunk_size: int = WRITE_CHUNK,
) -> dict:
    """Simulate the survey and write its HDF5 file at ``path`` atomically; return a summary.

    Args:
        path: output ``.h5`` file (paper layout plus ``labels``).
        config: what to simulate.
        workers: processes (1: in this process; 0: one per CPU). The output does not depend on it.
        progress: show a tqdm progress bar.
        chunk_size: objects simulated and written per step (does not change the output).

    Returns:
        ``n_objects``, ``n_anomalies``, ``counts`` (objects per kind name), ``seconds``,
        ``stamps_per_second``, ``path``.

    Example:
        >>> simulate_survey("survey.h5", SurveyConfig(n_objects=500, size=48), workers=0)
    """
    config.validate()
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"simulate: workers must be an integer >= 0, got {workers!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"simulate: chunk_size must be an integer >= 1, got {chunk_size!r}")
    workers = min(workers or os.cpu_count() or 1, config.n_objects)
    n, size, n_bands = config.n_objects, config.size, len(BANDS)
    if workers > 1:
        # Several chunks per worker keep them all busy to the end; the output does not change.
        chunk_size = min(chunk_size, max(16, -(-n // (4 * workers))))
    ranges = [(config, s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    workers = min(workers, len(ranges))
    per_chunk = max(1, min(n, 8, _HDF5_CHUNK_BYTES // (size * size * n_bands * 4)))
    started = time.perf_counter()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset(
                "images", (n, size, size, n_bands), np.float32, chunks=(per_chunk, size, size, 3)
            )
            columns = {
                key: f.create_dataset(key, (n,), dtype)
                for key, dtype in (
                    ("idxs", np.int64),
                    ("object_ids", np.uint64),
                    ("ra", np.float64),
                    ("dec", np.float64),
                    ("labels", np.uint8),
                )
            }
            f.attrs["bands"] = ",".join(BANDS)
            f.attrs["kind_names"] = json.dumps(list(KIND_NAMES))
            f.attrs["pixel_scale"] = config.pixel_scale
            f.attrs["zeropoint"] = config.zeropoint
            f.attrs["seed"] = config.seed
            f.attrs["config"] = config.to_json()
            f.attrs["generator"] = GENERATOR
            f.attrs["sky_sigma"] = sky_sigma(config)
            with tqdm(total=n, unit="stamp", desc="simulate", disable=not progress) as bar:
                if workers == 1:
                    chunks = map(_simulate_range, ranges)
                    _write_chunks(chunks, ranges, images, columns, bar)
                else:
                    # spawn, not fork: the parent may hold TensorFlow's threads (the demo does).
                    context = multiprocessing.get_context("spawn")
                    _grid(size, float(config.psf_beta))  # tables built once, shipped to workers
                    with context.Pool(workers, _install_tables, (dict(_TABLES),)) as pool:
                        chunks = pool.imap(_simulate_range, ranges)
                        _write_chunks(chunks, ranges, images, columns, bar)
    seconds = time.perf_counter() - started
    labels = survey_labels(config)
    counts = np.bincount(labels, minlength=len(KIND_NAMES))
    return {
        "n_objects": n,
        "n_anomalies": int(np.count_nonzero(labels)),
        "counts": {name: int(c) for name, c in zip(KIND_NAMES, counts, strict=True)},
        "seconds": seconds,
        "stamps_per_second": n / seconds if seconds > 0 else float("inf"),
        "path": str(Path(path)),
    }


def _write_chunks(chunks, ranges, images, columns, bar) -> None:
    for (_, start, stop), chunk in zip(ranges, chunks, strict=True):
        images[start:stop] = chunk["images"]
        for key, dataset in columns.items():
            dataset[start:stop] = chunk[key]
        bar.update(stop - start)
