"""Survey noise that is not white Gaussian, laid over simulated cutouts (``--noise survey``):
correlated pixels (resampled coadds), a varying sky background, quantisation (compressed files)
and flux in other units: what real pipelines hand to an anomaly search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SurveyNoise:
    """How the noise departs from white Gaussian sky.

    Args:
        correlation: fraction of the noise variance that is correlated over neighbouring pixels
            (white noise convolved with a 3x3 Lanczos-like kernel, as warping into a coadd does).
        background: scatter in sky sigmas of a residual background level and gradient per cutout.
        quantise: quantisation step in sky sigmas (fpack's default q = 4: sigma / 4); 0 = none.
        flux_scale: multiply every flux by this (another zero point or unit).
    """

    correlation: float = 0.5
    background: float = 0.5
    quantise: float = 0.25
    flux_scale: float = 1.0


# Separable 1-D taps of a warping kernel's footprint, scaled so that the 2-D kernel's squares sum
# to 1 (unit variance out of unit-variance white noise).
_TAPS = np.array([0.25, 0.5, 0.25]) / np.sqrt(np.sum(np.array([0.25, 0.5, 0.25]) ** 2))


def _correlated(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise correlated over a 3x3 footprint, (N, H, W, C)."""
    n, h, w, c = shape
    white = rng.standard_normal((n, h + 2, w + 2, c))
    rows = sum(_TAPS[k] * white[:, :, k : k + w] for k in range(3))
    return sum(_TAPS[k] * rows[:, k : k + h] for k in range(3))


def apply_survey_noise(
    images: np.ndarray, sigma: np.ndarray, noise: SurveyNoise, rng: np.random.Generator
) -> np.ndarray:
    """(N, H, W, C) cutouts with white sky noise ``sigma`` (per band) -> the same scene with the
    noise of ``noise``: part of the white noise's variance replaced by correlated noise (the total
    per-pixel variance is unchanged), a background offset and gradient, quantisation, rescaling."""
    images = np.asarray(images, np.float64)
    sigma = np.asarray(sigma, np.float64).reshape(1, 1, 1, -1)
    n, h, w, c = images.shape
    # Adding correlated noise of variance rho s^2 after scaling the existing image's noise is not
    # possible (signal and noise are mixed); add it on top and count it in the total instead.
    out = images + np.sqrt(noise.correlation) * sigma * _correlated(images.shape, rng)
    if noise.background > 0:
        y, x = np.mgrid[:h, :w] / max(h, w) - 0.5
        level = rng.normal(0.0, noise.background, (n, 1, 1, c))
        slope = rng.normal(0.0, noise.background, (n, 2, 1, 1, c))
        out += sigma * (level + slope[:, 0] * x[None, ..., None] + slope[:, 1] * y[None, ..., None])
    if noise.quantise > 0:
        step = noise.quantise * sigma * np.sqrt(1.0 + noise.correlation)
        # Subtractive dithering, as fpack does, keeps the quantised mean unbiased.
        dither = rng.uniform(-0.5, 0.5, out.shape)
        out = (np.round(out / step + dither) - dither) * step
    return (out * noise.flux_scale).astype(np.float32)
