"""The residual's shape descriptors: what each one reads on residuals of known shape, one image at a
time (batch-independent), against a float64 NumPy reference of the same definitions."""

import numpy as np
import pytest

from tfanomaly.models.residual_shape import NAMES, feature_names, residual_shape

SIZE = 32


def noise(n, seed=0):
    return np.random.default_rng(seed).normal(0, 0.01, (n, SIZE, SIZE, 3)).astype("f4")


def describe(residuals) -> dict:
    out = residual_shape(residuals, np.zeros_like(residuals)).numpy()
    return {name: out[:, k] for k, name in enumerate(feature_names(residuals.shape[-1]))}


def test_names_and_shape():
    out = residual_shape(noise(2), np.zeros((2, SIZE, SIZE, 3), "f4"))
    assert out.shape == (2, len(NAMES) + 3) == (2, len(feature_names(3)))


def test_what_the_descriptors_read():
    cosmic, column, trail = noise(3)
    cosmic[20, 9, 1] += 1.0  # one hot pixel in one band, off-centre
    column[:, 5, :] += 0.2  # a bad column in every band
    for k in range(SIZE):  # a diagonal trail through the centre
        trail[k, k, :] += 0.2
    d = describe(np.stack([cosmic, column, trail]))
    assert d["peak_1"][0] > 0.9 and d["top_band_purity"][0] > 0.9 and d["band_share_1"][0] > 0.9
    assert d["centroid_offset"][0] == pytest.approx(np.hypot(20 - 15.5, 9 - 15.5) / SIZE, abs=0.02)
    assert d["column_fraction"][1] > 0.9 and d["elongation"][1] > 0.8
    assert d["grid_alignment"][1] > 0.9 and d["diagonal_alignment"][1] < 0.1
    assert d["elongation"][2] > 0.8 and d["diagonal_alignment"][2] > 0.9
    assert d["centroid_offset"][2] < 0.02 and d["peak_1"][2] < 0.1


def test_each_image_is_described_on_its_own():
    residuals = noise(6, seed=3)
    residuals[2, 10:14, 10:14] += 0.3
    alone = residual_shape(residuals[2:3], np.zeros_like(residuals[2:3])).numpy()
    together = residual_shape(residuals, np.zeros_like(residuals)).numpy()
    np.testing.assert_allclose(together[2], alone[0], rtol=1e-5, atol=1e-6)


def reference(residuals: np.ndarray) -> np.ndarray:
    """The same definitions in float64 NumPy."""
    r = residuals.astype(np.float64)
    n, h, w, c = r.shape
    flat = r.reshape(n, -1, c)
    med = np.median(flat, axis=1)
    mad = 1.4826 * np.median(np.abs(flat - med[:, None]), axis=1) + 1e-6
    z = (r - med[:, None, None]) / mad[:, None, None]
    e = np.clip((z**2).sum(-1) - 2 * c, 0, None)
    total = e.sum((1, 2))
    p = e / (total[:, None, None] + 1e-9)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    my, mx = (p * yy).sum((1, 2)), (p * xx).sum((1, 2))
    dy, dx = yy - my[:, None, None], xx - mx[:, None, None]
    vy, vx, cxy = (p * dy * dy).sum((1, 2)), (p * dx * dx).sum((1, 2)), (p * dx * dy).sum((1, 2))
    tr = vx + vy
    root = np.sqrt(np.maximum((vx - vy) ** 2 / 4 + cxy**2, 0))
    major, minor = tr / 2 + root, np.maximum(tr / 2 - root, 0)
    top = np.sort(p.reshape(n, -1), axis=1)[:, ::-1][:, :16]
    rad = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    brightest = p.reshape(n, -1).argmax(1)
    top_energy = z.reshape(n, -1, c)[np.arange(n), brightest] ** 2
    band = np.clip(z**2 - 1, 0, None).sum((1, 2))
    columns = [
        np.log1p(total),
        top[:, 0],
        top[:, :4].sum(1),
        top.sum(1),
        p.sum(1).max(1),
        p.sum(2).max(1),
        (p * (rad < h / 8)).sum((1, 2)),
        (p * ((rad >= h / 8) & (rad < h / 4))).sum((1, 2)),
        np.hypot(my - (h - 1) / 2, mx - (w - 1) / 2) / h,
        1 - np.sqrt(minor / (major + 1e-9)),
        np.sqrt(tr) / h,
        np.abs(vx - vy) / (tr + 1e-9),
        np.abs(2 * cxy) / (tr + 1e-9),
        np.clip(z, 0, None).sum((1, 2, 3)) / (np.abs(z).sum((1, 2, 3)) + 1e-9),
        top_energy.max(1) / (top_energy.sum(1) + 1e-9),
    ]
    shares = band / (band.sum(1, keepdims=True) + 1e-9)
    return np.concatenate([np.stack(columns, axis=1), shares], axis=1)


def test_against_a_float64_reference():
    residuals = noise(8, seed=5)
    residuals[1, 3:6, 20] += 0.5
    residuals[4, 16, :, 0] += 0.1
    got = residual_shape(residuals, np.zeros_like(residuals)).numpy()
    # Fractions of sums over 1,024 float32 pixels: a few float32 roundings (2**-24) per term.
    np.testing.assert_allclose(got, reference(residuals), rtol=1e-4, atol=1e-5)
