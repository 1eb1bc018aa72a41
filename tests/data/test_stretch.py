import numpy as np
import pytest
from astropy.visualization import make_lupton_rgb

from tfanomaly.data.stretch import LuptonStretch, lupton_stretch


def astropy_reference(gri: np.ndarray, **kwargs) -> np.ndarray:
    return make_lupton_rgb(gri[..., 2], gri[..., 1], gri[..., 0], output_dtype=np.float64, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_astropy_on_real_valued_flux(seed):
    rng = np.random.default_rng(seed)
    # Sky noise (negative values too), faint extended flux and bright saturating cores.
    gri = rng.normal(0, 0.08, (4, 24, 24, 3)) + rng.exponential(1.0, (4, 24, 24, 3)) * (
        rng.random((4, 24, 24, 3)) < 0.3
    ) * rng.choice([0.1, 1, 100], size=(4, 1, 1, 3))
    gri = gri.astype(np.float32)
    ours = lupton_stretch(gri).numpy()
    for k in range(len(gri)):
        ref = astropy_reference(gri[k], Q=15, stretch=0.5, minimum=0)
        np.testing.assert_allclose(ours[k], ref, atol=2e-6)
    assert ours.min() >= 0 and ours.max() <= 1
    assert (ours == 1).any()  # the bright cores saturate, as in astropy


def test_other_parameters_and_minimum():
    rng = np.random.default_rng(5)
    gri = rng.normal(1, 2, (16, 16, 3)).astype(np.float32)
    ours = LuptonStretch(Q=8, stretch=5, minimum=-0.5)(gri[None]).numpy()[0]
    ref = astropy_reference(gri, Q=8, stretch=5, minimum=-0.5)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_channel_order_is_red_to_blue():
    gri = np.zeros((1, 4, 4, 3), np.float32)
    gri[..., 2] = 5.0  # only the i band has flux
    out = lupton_stretch(gri).numpy()
    assert (out[..., 0] > 0).all() and (out[..., 1:] == 0).all()  # i -> R


def test_one_band_equals_grey_astropy_image():
    rng = np.random.default_rng(3)
    flux = rng.normal(0.5, 1.0, (12, 12)).astype(np.float32)
    ours = lupton_stretch(flux[None, :, :, None]).numpy()[0, :, :, 0]
    ref = make_lupton_rgb(flux, flux, flux, Q=15, stretch=0.5, minimum=0, output_dtype=np.float64)
    np.testing.assert_allclose(ours, ref[..., 0], atol=2e-6)


def test_gradient_is_finite_at_zero_and_negative_flux():
    import tensorflow as tf

    x = tf.constant([[[[0.0, 0.0, 0.0], [-1.0, -2.0, -0.5], [1.0, 2.0, 3.0]]]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(lupton_stretch(x))
    grad = tape.gradient(y, x).numpy()
    assert np.isfinite(grad).all()
