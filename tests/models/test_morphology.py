"""The morphology parameters against their analytic values on Gaussian light profiles, and their
stability under float32 rounding and batching."""

import numpy as np
import pytest
import tensorflow as tf

from tfanomaly.models.morphology import _shape_mask, feature_names, morphology, stamp_noise


def gaussian(size=32, sigma=2.0, q=1.0, flux=100.0, centre=(0.0, 0.0), colours=(1.0,)):
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    x, y = x - centre[0], y - centre[1]
    profile = np.exp(-0.5 * (x**2 + (y / q) ** 2) / sigma**2)
    profile *= flux / profile.sum()
    return np.stack([profile * c for c in colours], axis=-1).astype("f4")


def params(images):
    values = morphology(np.asarray(images, "f4")).numpy()
    bands = np.asarray(images).shape[-1]
    return [dict(zip(feature_names(bands), row, strict=True)) for row in values]


@pytest.mark.parametrize("sigma", [1.5, 2.0, 3.0])
def test_round_gaussian_sizes_and_concentration(sigma):
    """r50 of a 2-D Gaussian is sigma sqrt(2 ln 2); r20 and r80 give C = 5 log10(r80/r20) =
    2.145; a symmetric profile has no asymmetry, ellipticity or centroid offset."""
    noise = np.random.default_rng(0).normal(0, 1e-3, (1, 32, 32, 1)).astype("f4")
    (p,) = params(gaussian(sigma=sigma)[None] + noise)
    assert p["r50"] == pytest.approx(sigma * np.sqrt(2 * np.log(2)), rel=0.03)
    assert p["concentration"] == pytest.approx(
        5 * np.log10(np.sqrt(np.log(5) / np.log(1.25))), abs=0.08
    )
    assert p["asymmetry"] < 0.01 and p["ellipticity"] < 0.01 and p["centroid_offset"] < 0.01
    assert np.exp(p["log_flux"]) == pytest.approx(100.0, rel=0.01)


def test_ellipticity_offset_asymmetry_and_colours():
    (p,) = params(gaussian(sigma=3.0, q=0.5, colours=(4.0, 2.0, 1.0))[None])
    assert p["ellipticity"] == pytest.approx((1 - 0.25) / (1 + 0.25), abs=0.03)
    # -2.5 log10 of the flux ratio of neighbouring bands.
    assert p["colour_0_1"] == pytest.approx(-2.5 * np.log10(2.0), abs=1e-3)
    assert p["colour_1_2"] == pytest.approx(-2.5 * np.log10(2.0), abs=1e-3)
    (shifted,) = params(gaussian(centre=(3.0, -4.0))[None])
    assert shifted["centroid_offset"] == pytest.approx(5.0, abs=0.05)
    assert shifted["asymmetry"] > 0.5  # asymmetric about the cutout's centre
    pair = gaussian(centre=(5.0, 0.0)) + gaussian(centre=(-5.0, 0.0))
    (double,) = params(pair[None])
    assert double["asymmetry"] < 0.01 and double["r50"] > 4.5  # a symmetric double nucleus


def test_stamp_noise_measures_the_sky_under_a_galaxy():
    rng = np.random.default_rng(1)
    images = gaussian(sigma=2.0, flux=25.0, colours=(1.0, 1.0))[None] + rng.normal(
        0, [0.05, 0.2], (4, 32, 32, 2)
    ).astype("f4")
    # Within 25% under a galaxy peaking at 20 sigma (its gradients widen the differences), from
    # the ~250 differences the estimate reads.
    np.testing.assert_allclose(stamp_noise(images).numpy(), [[0.05, 0.2]] * 4, rtol=0.25)
    sky = rng.normal(0, [0.05, 0.2], (4, 32, 32, 2)).astype("f4")
    np.testing.assert_allclose(
        stamp_noise(sky).numpy(), [[0.05, 0.2]] * 4, rtol=0.2
    )  # a MAD of ~250 values


def test_parameters_do_not_depend_on_the_batch_and_move_smoothly():
    rng = np.random.default_rng(2)
    images = (
        gaussian(sigma=2.5, colours=(1.0, 0.8, 0.6))[None] + rng.normal(0, 0.02, (16, 32, 32, 3))
    ).astype("f4")
    whole = morphology(images).numpy()
    np.testing.assert_allclose(morphology(images[5:9]).numpy(), whole[5:9], rtol=1e-5, atol=1e-6)
    # A float32-sized change of the pixels changes the parameters by as little (no thresholds).
    nudged = morphology(images * np.float32(1 + 1e-6)).numpy()
    changed = np.abs(nudged - whole)[:, 1:]  # log_flux moves by log(1 + 1e-6) itself
    assert changed.max() < 1e-3


def test_new_parameters_follow_the_columns_before():
    """r20, r80, M20, the shape asymmetry and the segment Gini come after the colours, in the
    order they were added; the columns before are the same numbers (up to the noise estimate's
    sample) whichever definitions are asked for."""
    names = feature_names(3)
    assert names[: len(names) - 5] == (*names[:10], "colour_0_1", "colour_1_2")
    assert names[-5:] == ("r20", "r80", "m20", "shape_asymmetry", "segment_gini")
    rng = np.random.default_rng(4)
    images = gaussian(sigma=2.5, colours=(1.0, 0.8, 0.6))[None] + rng.normal(
        0, 0.02, (4, 32, 32, 3)
    )
    now, before = (
        morphology(images.astype("f4")).numpy(),
        morphology(images.astype("f4"), invariant=False).numpy(),
    )
    np.testing.assert_allclose(now, before, rtol=0.1, atol=0.05)


def test_r20_r80_m20_and_shape_asymmetry_of_gaussians():
    """A round Gaussian: r20 and r80 are sigma sqrt(2 ln 1.25) and sigma sqrt(2 ln 5), M20 the
    log10 of the moment of its brightest 20% over the whole one within the Petrosian radius, and
    its mask is symmetric (up to the noise at its edge); an off-centre source's is not."""
    noise = np.random.default_rng(0).normal(0, 1e-3, (1, 32, 32, 1)).astype("f4")
    sigma = 3.0
    (p,) = params(gaussian(sigma=sigma)[None] + noise)
    assert p["r20"] == pytest.approx(sigma * np.sqrt(2 * np.log(1.25)), rel=0.03)
    assert p["r80"] == pytest.approx(sigma * np.sqrt(2 * np.log(5.0)), rel=0.03)
    # Light within radius r of a Gaussian: 1 - exp(-u), u = r^2 / 2 sigma^2; its moment
    # 2 sigma^2 (1 - (1 + u) exp(-u)). The Petrosian radius: u exp(-u) / (1 - exp(-u)) = 0.2,
    # u_p = 2.6604; the brightest 20% of the light within it is the disc 1 - exp(-u) = 0.2 L.
    # Within 0.05: the segment's ramp and 3x3 boxcar reach a little beyond u_p (-0.03 measured).
    u_p = 2.660399058463685
    u = -np.log(1 - 0.2 * (1 - np.exp(-u_p)))
    moment = (1 - (1 + u) * np.exp(-u)) / (1 - (1 + u_p) * np.exp(-u_p))
    assert p["m20"] == pytest.approx(np.log10(moment), abs=0.05)
    assert p["shape_asymmetry"] < 0.05
    (shifted,) = params(gaussian(sigma=sigma, centre=(5.0, -4.0))[None] + noise)
    assert shifted["shape_asymmetry"] > 0.5


def test_segment_gini_is_statmorphs_gini_over_the_aperture_pixels():
    """Without noise every pixel with light is in the aperture at full weight: the segment Gini
    is statmorph's sum (2i - n - 1) x_i / (mean(x) n (n - 1)) over those pixels, whatever the
    stamp around them; the stamp's Gini counts the empty pixels too. Light spread evenly: 0;
    one pixel holding most of it: near 1. With noise, pixels on the aperture's ramp count in
    part, and the value moves continuously with the light."""
    rng = np.random.default_rng(3)
    values = rng.uniform(0.1, 5.0, 40).astype("f4")
    for size in (16, 32):
        image = np.zeros((1, size, size, 1), "f4")
        image[0, 3, 3 : 3 + 8, 0] = values[:8]
        image[0, 6:10, 5:13, 0] = values[8:].reshape(4, 8)
        (p,) = params(image)
        x = np.sort(values.astype(np.float64))
        n = len(x)
        expected = ((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (x.mean() * n * (n - 1))
        assert p["segment_gini"] == pytest.approx(expected, abs=1e-5)
    assert p["gini"] > p["segment_gini"] + 0.5  # 984 empty pixels count as the faintest
    flat = np.zeros((1, 16, 16, 1), "f4")
    flat[0, 4:12, 4:12, 0] = 1.0
    assert params(flat)[0]["segment_gini"] == pytest.approx(0.0, abs=1e-6)
    flat[0, 8, 8, 0] = 1000.0
    assert params(flat)[0]["segment_gini"] > 0.9
    noisy = gaussian(sigma=2.5)[None] + rng.normal(0, 0.02, (1, 32, 32, 1))
    nudged = noisy.copy()
    nudged[0, 15:18, 15:26] += 1e-4  # the light a little higher along a cut through its edge
    a, b = (params(x.astype("f4"))[0]["segment_gini"] for x in (noisy, nudged))
    assert 0.3 < a < 0.9 and 0 < abs(a - b) < 1e-3


def one_step_shape_mask(smoothed, noise):
    """The shape mask's growth written plainly (NumPy): one 3x3 dilation capped by the mask per
    step, until nothing changes or ``size`` steps."""
    size = smoothed.shape[1]
    mask = np.clip(2.0 * smoothed / (noise[:, None, None] + 1e-30) - 1.0, 0.0, 1.0)
    region = np.zeros_like(mask)
    for b in range(len(mask)):
        y, x = np.unravel_index(np.argmax(smoothed[b]), (size, size))
        region[b, y, x] = mask[b, y, x]
    for _ in range(size):
        padded = np.pad(region, [(0, 0), (1, 1), (1, 1)])
        grown = np.max(
            [padded[:, i : i + size, j : j + size] for i in range(3) for j in range(3)], axis=0
        )
        grown = np.minimum(grown, mask)
        if np.array_equal(grown, region):
            break
        region = grown
    return region


@pytest.mark.parametrize("size", [3, 9, 13, 16])
def test_shape_mask_grows_as_one_dilation_per_step(size):
    """The batched growth (four dilations per check, the batch as channels) gives the one-step
    loop's mask exactly: soft ramps, a source that fills the stamp, and a spiral corridor longer
    than ``size`` steps, which both stop growing at the cap."""
    rng = np.random.default_rng(size)
    blobs = rng.uniform(0.0, 3.0, (3, size, size)).astype("f4")
    spiral = np.zeros((size, size), "f4")
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:  # a one-pixel corridor winding inwards
        spiral[top, left : right + 1] = 1.0
        spiral[top : bottom + 1, right] = 1.0
        spiral[bottom, left : right + 1] = 1.0
        spiral[top + 2 : bottom + 1, left] = 1.0
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    spiral[0, 0] = 5.0  # the brightest pixel: the growth starts at the corridor's end
    smoothed = np.concatenate([blobs, spiral[None], np.full((1, size, size), 4.0, "f4")])
    noise = np.array([1.0, 2.0, 4.0, 0.5, 1.0], "f4")
    got = _shape_mask(tf.constant(smoothed), tf.constant(noise), size).numpy()
    np.testing.assert_array_equal(got, one_step_shape_mask(smoothed, noise))
