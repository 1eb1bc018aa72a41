"""Rendering of one cutout: analytic profiles in Fourier space, the PSF and pixel transforms.

Holds the padded grid, the scene a cutout is drawn into, and the context every drawer gets.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tfanomaly.simulate.config import BANDS, SurveyConfig

# Every smooth profile is evaluated analytically in Fourier space on a padded grid,
# multiplied by the band's PSF and pixel transforms, and brought back with one inverse FFT per
# band. The radial transforms of the de Vaucouleurs bulge and the Moffat PSF are GalSim's own,
# tabulated once; this is ~10x faster than a GalSim drawImage per band and object.

LAMBDA_NM = np.array([477.0, 623.0, 775.0])  # HSC g, r, i effective wavelengths
EXP_HLR_OVER_R0 = 1.6783469900166605  # half-light radius of an exponential in scale lengths
_TABLE_X = np.concatenate([[0.0], np.geomspace(1e-3, 500.0, 2500)])

TABLES: dict[tuple[str, float], np.ndarray] = {}


def _radial_ft_table(profile: str, beta: float = 3.0) -> np.ndarray:
    key = (profile, float(beta) if profile == "moffat" else 0.0)
    if key not in TABLES:
        import galsim  # here, not at the top: pool workers get the tables and never import it

        if profile == "dev":
            obj = galsim.DeVaucouleurs(half_light_radius=1.0)
        else:
            obj = galsim.Moffat(beta=beta, scale_radius=1.0)
        TABLES[key] = np.array([obj.kValue(x, 0.0).real for x in _TABLE_X])
    return TABLES[key]


def install_tables(tables: dict[tuple[str, float], np.ndarray]) -> None:
    TABLES.update(tables)


@dataclass(frozen=True)
class Grid:
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
def grid(size: int, beta: float) -> Grid:
    # Padding keeps the wings of big galaxies and off-stamp neighbours from wrapping around.
    pad = max(16, size // 4)
    n = size + 2 * pad
    kx = 2.0 * np.pi * np.fft.rfftfreq(n)[None, :]
    ky = 2.0 * np.pi * np.fft.fftfreq(n)[:, None]
    k2 = kx**2 + ky**2
    pixel = np.sinc(np.fft.fftfreq(n))[:, None] * np.sinc(np.fft.rfftfreq(n))[None, :]
    coords = np.arange(n, dtype=float) - pad
    return Grid(
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


def shear_matrix(e: float, angle: float) -> np.ndarray:
    """The symmetric, area-preserving shear S of galsim.Shear(g=e, beta=angle): a profile f
    sheared by it is f(S^-1 x) in real space, F(S k) in Fourier space, stretched along
    ``angle`` to the axis ratio (1 - e) / (1 + e)."""
    g1, g2 = e * math.cos(2 * angle), e * math.sin(2 * angle)
    return np.array([[1 + g1, g2], [g2, 1 - g1]]) / math.sqrt(1.0 - e * e)


def _sheared_k2(g: Grid, e: float, angle: float) -> np.ndarray:
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


class Scene:
    """The sky of one cutout: analytic profiles, pre-PSF pixel maps and post-PSF additions.

    The PSF is a Moffat of the given FWHM per band, all three sheared by ``psf_e`` along
    ``psf_angle`` (the optics and guiding that elongate it act on every band alike).
    """

    def __init__(
        self,
        grid: Grid,
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
            t = 1.0 + k2 * (hlr / EXP_HLR_OVER_R0) ** 2
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


def band_fluxes(flux_i: float, g_r: float, r_i: float) -> np.ndarray:
    flux_r = flux_i * 10.0 ** (-0.4 * r_i)
    return np.array([flux_r * 10.0 ** (-0.4 * g_r), flux_r, flux_i])


@dataclass
class Ctx:
    """What a kind's drawer needs besides the random generator."""

    config: SurveyConfig
    scene: Scene
    sigma: np.ndarray
    x0: float
    y0: float
    flux_i: float
    # The object's substructure stream (knots, arms, dust, blend, PSF shape); None when the
    # config is smooth. Kept apart from the drawers' stream so that the galaxies, anomalies
    # and noise are the same with and without substructure.
    sub: np.random.Generator | None = None
    # Pixels (bands, size, size) a drawer clipped at the detector's saturation (the SAT mask bit).
    saturated: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.config.size

    def px(self, arcsec: float) -> float:
        return arcsec / self.config.pixel_scale
