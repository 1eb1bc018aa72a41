"""Variance and mask planes in the data layer: bit names, the readers, the TFRecord schema, the
resize, the variance through the stretch and the sky noise behind ``--stretch auto``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorflow as tf
from astropy.io import fits
from conftest import make_cutouts

from tfanomaly.data.planes import (
    DEFAULT_MASK_BITS,
    HSC_MASK_BITS,
    as_mask,
    bitmask,
    flag_invalid,
    invalid_bit,
    mask_bits_from_header,
    selected_bits,
)
from tfanomaly.data.readers import open_source
from tfanomaly.data.resize import area_weights, resize, resized_shape
from tfanomaly.data.schema import parse_cutouts, serialize_cutout
from tfanomaly.data.stretch import LuptonStretch, auto_stretch, sky_sigma
from tfanomaly.errors import ConfigError, InputError

SHAPE = (8, 8, 3)


def test_mask_bits_from_header_and_selection():
    header = fits.Header({"MP_BAD": 0, "MP_SAT": 1, "MP_CR": 3, "MP_MYBIT": 20, "EXPTIME": 3})
    bits = mask_bits_from_header(header)
    assert bits == {"BAD": 0, "SAT": 1, "CR": 3, "MYBIT": 20}
    # The default set keeps the names the input defines; names a user gives must all exist.
    assert selected_bits(DEFAULT_MASK_BITS, bits, "x", explicit=False) == {
        "BAD": 0,
        "SAT": 1,
        "CR": 3,
    }
    assert selected_bits(("mybit",), bits, "x", explicit=True) == {"MYBIT": 20}
    with pytest.raises(InputError, match=r"^x: unknown mask bit\(s\) EDGE; this input defines "):
        selected_bits(("SAT", "EDGE"), bits, "x", explicit=True)
    assert bitmask({"BAD": 0, "CR": 3}) == 9
    assert bitmask({"TOP": 31}) == -(2**31)  # the int32 the TFRecords hold
    assert invalid_bit(HSC_MASK_BITS) == 31 and invalid_bit({"A": 31, "B": 30}) == 29


def test_as_mask_keeps_every_bit_and_refuses_floats():
    plane = np.array([[0, 1], [-(2**15), -1]], np.int16)  # the sign bit is bit 15
    np.testing.assert_array_equal(as_mask(plane, (2, 2), "f"), [[0, 1], [2**15, 2**16 - 1]])
    top = np.array([[2**31 + 5]], np.uint32)
    assert as_mask(top, (1, 1), "f").view(np.uint32)[0, 0] == 2**31 + 5
    with pytest.raises(InputError, match="^f: mask plane has dtype float32, expected integer"):
        as_mask(np.zeros((2, 2), np.float32), (2, 2), "f")
    with pytest.raises(InputError, match="bits above 31"):
        as_mask(np.array([[2**40]], np.int64), (1, 1), "f")


def test_flag_invalid_masks_nonpositive_variances_and_nan_flux():
    images = np.ones((1, 2, 2, 1), np.float32)
    images[0, 0, 0, 0] = np.nan
    variances = np.array([[[[1.0], [0.0]], [[-2.0], [np.inf]]]], np.float32)
    masks, bad = flag_invalid(images, variances, None, 31)
    assert bad == 3
    flagged = masks.view(np.uint32)[0, ..., 0] >> 31
    np.testing.assert_array_equal(flagged, [[1, 1], [1, 1]])
    np.testing.assert_array_equal(variances[0, ..., 0], [[1.0, 0.0], [0.0, 0.0]])


def write_hdf5_planes(path, images, variances, masks, **attrs):
    with h5py.File(path, "w") as f:
        f["images"], f["variances"], f["masks"] = images, variances, masks
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


def test_array_sources_read_the_planes(tmp_path):
    images = make_cutouts(5, size=8)
    variances = np.full(images.shape, 0.01, np.float32)
    masks = np.zeros(images.shape, np.uint16)
    masks[2, 3, 4, 1] = 1 << 3
    path = write_hdf5_planes(
        tmp_path / "p.h5", images, variances, masks, mask_bits='{"bad": 0, "cr": 3}'
    )
    source = open_source(path)
    assert source.has_variance and source.has_mask and source.mask_bits == {"BAD": 0, "CR": 3}
    batch = source.read(1, 4)
    assert batch.variances.dtype == np.float32 and batch.masks.dtype == np.int32
    np.testing.assert_array_equal(batch.masks, masks[1:4])
    np.savez(tmp_path / "p.npz", images=images, variances=variances, masks=masks)
    npz = open_source(tmp_path / "p.npz")
    assert npz.has_mask and npz.mask_bits == HSC_MASK_BITS  # no names: the HSC pipeline's
    np.testing.assert_array_equal(npz.read(0, 5).variances, variances)
    np.save(tmp_path / "plain.npy", images)
    plain = open_source(tmp_path / "plain.npy")
    assert not plain.has_variance and not plain.has_mask and plain.read(0, 1).masks is None


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("variances", np.ones((5, 4, 8, 3), np.float32), r"'variances' has shape \(5, 4, 8, 3\)"),
        ("masks", np.ones((5, 8, 8, 1), np.int32), r"'masks' has shape \(5, 8, 8, 1\)"),
        ("masks", np.ones((5, 8, 8, 3), np.float32), "'masks' has dtype float32, expected integer"),
    ],
)
def test_bad_array_planes(tmp_path, key, value, message):
    images = make_cutouts(5, size=8)
    planes = {"variances": np.ones(images.shape, np.float32), "masks": np.zeros(images.shape, "i4")}
    planes[key] = value
    path = write_hdf5_planes(tmp_path / "bad.h5", images, planes["variances"], planes["masks"])
    with pytest.raises(InputError, match=rf"^{tmp_path / 'bad.h5'}: {message}"):
        open_source(path)


def write_hsc_folder(
    folder,
    images,
    ids,
    variance=None,
    mask=None,
    mask_dtype=np.int32,
    bits=(("BAD", 0), ("SAT", 1), ("CR", 3), ("NO_DATA", 8)),
):
    """The HSC cutout service's per-band files: IMAGE, MASK (MP_* cards), VARIANCE."""
    folder.mkdir(exist_ok=True)
    for image, object_id in zip(images, ids, strict=True):
        for k, band in enumerate("gri"):
            plane = image[..., k]
            var = np.full(plane.shape, 0.0025, np.float32) if variance is None else variance
            msk = np.zeros(plane.shape, mask_dtype) if mask is None else mask
            mask_header = fits.Header()
            for name, bit in bits:  # long names as HIERARCH cards, as the HSC pipeline writes
                mask_header[f"HIERARCH MP_{name}" if len(name) > 5 else f"MP_{name}"] = bit
            fits.HDUList(
                [
                    fits.PrimaryHDU(),
                    fits.ImageHDU(plane, name="IMAGE"),
                    fits.ImageHDU(msk, header=mask_header, name="MASK"),
                    fits.ImageHDU(var, name="VARIANCE"),
                ]
            ).writeto(folder / f"{object_id}_{band}.fits")


def test_fits_folder_reads_variance_mask_and_bit_names(tmp_path):
    images = make_cutouts(2, size=8)
    mask = np.zeros((8, 8), np.int32)
    mask[1, 2] = 0b1010  # SAT | CR
    write_hsc_folder(tmp_path / "hsc", images, [7, 9], mask=mask)
    source = open_source(tmp_path / "hsc")
    assert source.has_variance and source.has_mask
    assert source.mask_bits == {"BAD": 0, "SAT": 1, "CR": 3, "NO_DATA": 8}
    batch = source.read(0, 2)
    assert batch.variances.shape == batch.masks.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(batch.variances, 0.0025)
    assert (batch.masks[:, 1, 2, :] == 0b1010).all() and batch.masks.sum() == 6 * 0b1010


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"variance": np.ones((4, 8), np.float32)},
            r"variance plane has shape \(4, 8\), the image",
        ),
        ({"mask_dtype": np.float32}, "mask plane has dtype float32, expected integer"),
    ],
)
def test_bad_fits_planes_name_file_and_object(tmp_path, kwargs, message):
    write_hsc_folder(tmp_path / "hsc", make_cutouts(1, size=8), [5], **kwargs)
    with pytest.raises(InputError, match=rf"^{tmp_path / 'hsc' / '5_g.fits'}: object 5: {message}"):
        open_source(tmp_path / "hsc")


def test_planes_round_trip_through_the_schema():
    rng = np.random.default_rng(0)
    image = rng.normal(size=SHAPE).astype(np.float32)
    variance = rng.uniform(0.1, 1, SHAPE).astype(np.float32)
    mask = rng.integers(-(2**31), 2**31, SHAPE, dtype=np.int64).astype(np.int32)
    record = serialize_cutout(image, 3, 1, 2.0, 3.0, 0, variance=variance, mask=mask)
    got = parse_cutouts(tf.constant([record]), SHAPE, ("variance", "mask"))
    np.testing.assert_array_equal(got["variance"][0], variance)
    np.testing.assert_array_equal(got["mask"][0], mask)
    assert got["mask"].dtype == tf.int32
    plain = parse_cutouts(tf.constant([record]), SHAPE)  # a reader that ignores the planes
    assert set(plain) == {"image", "object_id", "idx", "ra", "dec", "label"}


def test_crop_and_area_resize():
    images = np.arange(2 * 6 * 6 * 1, dtype=np.float32).reshape(2, 6, 6, 1)
    variances = np.ones_like(images)
    masks = np.zeros(images.shape, np.int32)
    masks[0, 0, 1, 0] = 4
    cropped, cvar, cmask = resize(images, variances, masks, 4, "crop")
    np.testing.assert_array_equal(cropped, images[:, 1:5, 1:5])
    assert cmask.sum() == 0 and cvar.shape == (2, 4, 4, 1)
    area, avar, amask = resize(images, variances, masks, 3, "area")  # factor 2: block means
    np.testing.assert_allclose(area, images.reshape(2, 3, 2, 3, 2, 1).mean(axis=(2, 4)))
    np.testing.assert_allclose(avar, 0.25)  # four independent pixels averaged
    assert amask[0, 0, 0, 0] == 4 and amask.sum() == 4
    # A non-integer factor: every output pixel is an area-weighted mean, rows sum to one, and
    # the mean surface brightness is kept.
    weights = area_weights(5, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights[0], [0.6, 0.4, 0, 0, 0])
    odd = np.random.default_rng(1).normal(size=(1, 5, 5, 2)).astype(np.float32)
    out, _, _ = resize(odd, None, None, 3, "area")
    assert out.mean() == pytest.approx(odd.mean(), abs=1e-6)
    assert resized_shape((20, 30, 3), 16, "crop") == (16, 16, 3)
    with pytest.raises(ConfigError, match="--size 24 --resize crop: the cutouts are only 20x30"):
        resized_shape((20, 30, 3), 24, "crop")


def finite_difference_variance(stretch, x, v, eps=1e-3):
    """Var(f_c) = sum_b (df_c/dx_b)^2 v_b by central differences in float64."""
    slope = 0.1 / np.arcsinh(0.1 * stretch.Q)
    soften = stretch.Q / stretch.stretch

    def smooth_map(flux):  # the odd, unclipped asinh map, channels reversed
        intensity = flux.mean(axis=-1, keepdims=True)
        safe = np.where(intensity == 0, 1.0, intensity)
        ratio = np.where(intensity == 0, slope * soften, slope * np.arcsinh(soften * safe) / safe)
        return (flux * ratio)[..., ::-1]

    total = np.zeros_like(x)
    for b in range(x.shape[-1]):
        step = np.zeros_like(x)
        step[..., b] = eps
        derivative = (smooth_map(x + step) - smooth_map(x - step)) / (2 * eps)
        total += derivative**2 * v[..., b : b + 1]
    return total


def test_variance_through_the_stretch_is_the_delta_method():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 0.05, (2, 6, 6, 3)) + rng.exponential(0.5, (2, 6, 6, 3)) * (
        rng.random((2, 6, 6, 3)) < 0.4
    )
    v = rng.uniform(1e-4, 4e-3, x.shape)
    stretch = LuptonStretch()
    got = stretch.variance(x.astype(np.float32), v.astype(np.float32)).numpy()
    expected = finite_difference_variance(stretch, x, v, eps=1e-5)
    bright = stretch._scaled(tf.constant(x[..., ::-1], tf.float32), 0.1 / np.arcsinh(1.5), 30.0)
    unsaturated = np.max(bright.numpy(), axis=-1, keepdims=True) <= 1
    np.testing.assert_allclose(got * unsaturated, expected * unsaturated, rtol=2e-3, atol=1e-9)
    # The sky: the variance is the slope at 0 squared times the flux variance.
    sky = stretch.variance(np.zeros((1, 1, 1, 1), np.float32), np.full((1, 1, 1, 1), 1e-4, "f4"))
    assert sky.numpy().item() == pytest.approx((0.1 / np.arcsinh(1.5) * 30.0) ** 2 * 1e-4, 1e-5)


def test_sky_sigma_reads_the_noise_where_a_galaxy_fills_the_cutout():
    # Tiles of a galaxy far larger than the tile: its light covers every pixel, the frame too.
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:32, :32]
    centres = rng.uniform(-30, 60, (40, 2))
    r = np.hypot(y[None] - centres[:, :1, None], x[None] - centres[:, 1:, None])
    light = 5.0 * np.exp(-r / 20.0)
    images = (light + rng.normal(0, 0.1, light.shape))[..., None]
    assert sky_sigma(images) == pytest.approx([0.1], rel=0.05)
    frame = images[:, np.pad(np.zeros((24, 24), bool), 4, constant_values=True), 0]
    assert 1.4826 * np.median(np.abs(frame - np.median(frame))) > 0.5  # what a frame would read


def test_sky_sigma_of_integer_counts():
    rng = np.random.default_rng(6)
    # A low integer sky: most faint pairs are two zeros; the differences of all pairs are used.
    low = rng.poisson(0.3, (40, 32, 32, 1)).astype(np.float32)
    assert sky_sigma(low) == pytest.approx([np.sqrt(0.3)], rel=0.1)
    # Counts on a sky of 100: the MAD of integer differences, within its quantisation.
    sky = rng.poisson(100.0, (40, 32, 32, 1)).astype(np.float32)
    assert sky_sigma(sky) == pytest.approx([10.0], rel=0.1)
    # Noise-free: nothing to measure.
    np.testing.assert_array_equal(sky_sigma(np.zeros((3, 8, 8, 2), np.float32)), [0.0, 0.0])


def test_sky_sigma_and_auto_stretch_follow_the_flux_unit():
    rng = np.random.default_rng(4)
    images = make_cutouts(30, size=32) + rng.normal(0, 0.05, (30, 32, 32, 3)).astype(np.float32)
    sigma = sky_sigma(images)
    assert np.all((sigma > 0.06) & (sigma < 0.08))  # 0.05 and 0.05 added: 0.071
    for scale in (0.01, 100.0):
        scaled = sky_sigma((images * np.float32(scale)).astype(np.float32))
        np.testing.assert_allclose(scaled, sigma * scale, rtol=1e-6)
        soften = auto_stretch(scaled).Q / auto_stretch(scaled).stretch
        assert soften * scale == pytest.approx(auto_stretch(sigma).Q / auto_stretch(sigma).stretch)
    # The simulator's HSC sky noise gives back the paper's stretch.
    hsc = auto_stretch([0.03653413, 0.05657988, 0.07936131])
    assert hsc.stretch == pytest.approx(0.5, rel=1e-6) and hsc.Q == 15
    masked = np.ones(images.shape, bool)
    assert np.isnan(sky_sigma(images, masked)).all()
    assert LuptonStretch.from_config(None) == LuptonStretch()
    assert LuptonStretch.from_config({"mode": "auto", "Q": 15, "stretch": 2.0}).stretch == 2.0
