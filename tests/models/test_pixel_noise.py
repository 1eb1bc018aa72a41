"""The chi^2 of a smoothed residual from per-pixel variance and mask (tfanomaly.models.pixel_noise),
against a NumPy/SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tfanomaly.models.filters import gaussian_kernel
from tfanomaly.models.pixel_noise import smoothed_chi2


def reference(residuals, variances, masks, sigma):
    taps = gaussian_kernel(sigma).astype(np.float64)
    kernel = np.outer(taps, taps)
    chi2 = np.zeros_like(residuals)
    for i in range(residuals.shape[0]):
        for c in range(residuals.shape[-1]):
            kept = (~masks[i, ..., c]).astype(np.float64)

            def conv(plane, k):
                return ndimage.convolve(plane, k, mode="constant", cval=0.0)

            weight = conv(kept, kernel)
            with np.errstate(invalid="ignore", divide="ignore"):  # holes: 0/0, kept out below
                smoothed = conv(residuals[i, ..., c] * kept, kernel) / weight
                variance = conv(variances[i, ..., c] * kept, kernel**2) / weight**2
                chi2[i, ..., c] = np.where(kept > 0, smoothed**2 / variance, 0.0)
    return chi2


@pytest.mark.parametrize("sigma", [1.0, 1.7])
def test_matches_the_scipy_reference(sigma):
    rng = np.random.default_rng(0)
    shape = (3, 20, 24, 2)
    variances = rng.uniform(0.5, 2.0, shape)
    residuals = rng.normal(size=shape) * np.sqrt(variances)
    masks = rng.random(shape) < 0.15
    masks[1, 5:12, 5:12, 0] = True  # a saturated core: a hole wider than the kernel
    out = smoothed_chi2(residuals.astype(np.float32), variances.astype(np.float32), masks, sigma)
    expected = reference(residuals, variances, masks, sigma)
    np.testing.assert_allclose(out["chi2"].numpy(), expected, rtol=2e-4, atol=1e-6)
    assert (out["chi2"].numpy()[masks] == 0).all()
    np.testing.assert_array_equal(out["n_masked"].numpy(), masks.sum(axis=(1, 2, 3)))
    assert out["n_masked"].dtype.name == "int32"


def test_pure_noise_gives_unit_chi2_and_without_mask():
    rng = np.random.default_rng(1)
    variances = rng.uniform(0.2, 5.0, (256, 24, 24, 1))
    residuals = rng.normal(size=variances.shape) * np.sqrt(variances)
    out = smoothed_chi2(residuals.astype(np.float32), variances.astype(np.float32), None, 1.5)
    # Each smoothed pixel is a unit normal whatever the variance map: chi^2 averages to 1 (the
    # smoothed pixels are correlated: ~5000 independent ones, a scatter of 0.02 on the mean).
    assert out["chi2"].numpy().mean() == pytest.approx(1.0, abs=0.06)
    assert (out["n_masked"].numpy() == 0).all()
    # A mask with nothing set is the same as none.
    none = smoothed_chi2(
        residuals.astype(np.float32),
        variances.astype(np.float32),
        np.zeros(variances.shape, bool),
        1.5,
    )
    np.testing.assert_array_equal(none["chi2"].numpy(), out["chi2"].numpy())


def test_fully_masked_image_and_zero_variance_give_zero_not_nan():
    masks = np.ones((1, 8, 8, 1), bool)
    out = smoothed_chi2(
        np.ones((1, 8, 8, 1), np.float32), np.ones((1, 8, 8, 1), np.float32), masks, 1.0
    )
    assert (out["chi2"].numpy() == 0).all() and int(out["n_masked"][0]) == 64
    zero = smoothed_chi2(
        np.ones((1, 8, 8, 1), np.float32), np.zeros((1, 8, 8, 1), np.float32), None, 1.0
    )
    assert np.isfinite(zero["chi2"].numpy()).all() and (zero["chi2"].numpy() == 0).all()
