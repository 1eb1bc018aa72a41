"""The CAE: the paper's architecture, counted by hand, its encoder half, its standardisation, and
that it learns (beats the mean image on a tiny set)."""

import keras
import numpy as np
import tensorflow as tf

from tfanomaly.models.cae import CAE, BandScale, cae_encoder
from tfanomaly.models.config import get_preset


def test_paper_cae_architecture():
    """hsc96: 4 convs 64..512 -> Dense 64 -> mirrored decoder, counted by hand."""
    cae = CAE(get_preset("hsc96"))
    convs = sum(5 * 5 * i * o + o for i, o in [(3, 64), (64, 128), (128, 256), (256, 512)])
    dense = 18432 * 64 + 64 + 64 * 18432 + 18432
    deconvs = sum(5 * 5 * i * o + o for i, o in [(512, 256), (256, 128), (128, 64), (64, 3)])
    assert cae.count_params() == convs + dense + deconvs == 10_990_403
    x = tf.random.uniform((2, 96, 96, 3))
    assert cae(x).shape == (2, 96, 96, 3) and cae_encoder(cae)(x).shape == (2, 64)


def test_cae_encoder_shares_the_weights_and_takes_other_latent_sizes():
    cae = CAE.from_preset("tiny16", latent_dim=4)
    assert cae.latent_dim == 4 and cae.get_config()["latent_dim"] == 4
    encoder = cae_encoder(cae)
    assert type(encoder) is not CAE and encoder.get_layer("latent") is cae.get_layer("latent")
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("f4")
    latent = keras.Model(cae.input, cae.get_layer("latent").output)(x)
    np.testing.assert_array_equal(encoder(x), latent)
    assert cae.get_layer("reconstruction").dtype_policy.name == "float32"


def test_standardisation_round_trips_and_old_caes_load_with_their_sigmoid():
    cae = CAE.from_preset("tiny16", band_offset=[0.1, 0.2, 0.3], band_scale=[2.0, 3.0, 4.0])
    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype("f4")
    standardised = cae.get_layer("cae_standardise")(x).numpy()
    np.testing.assert_allclose(standardised[..., 1], (x[..., 1] - 0.2) / 3.0, rtol=1e-6)
    back = cae.get_layer("cae_unstandardise")(standardised).numpy()
    np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-6)
    again = CAE.from_config(cae.get_config())
    assert again.band_scale == [2.0, 3.0, 4.0] and again.output_activation == "linear"
    # A config saved before the standardisation: no output entry, a sigmoid, no BandScale.
    old = {
        k: v
        for k, v in CAE.from_preset("tiny16").get_config().items()
        if k not in ("output", "band_offset", "band_scale")
    }
    legacy = CAE.from_config(old)
    assert legacy.output_activation == "sigmoid"
    assert not [layer for layer in legacy.layers if isinstance(layer, BandScale)]


def test_a_trained_cae_reconstructs_better_than_the_mean_image():
    """On a tiny set of blobs at random places, amplitudes and widths in [0, 0.1] (the range of
    residual images), 150 Adam steps bring the MSE far below the mean image's."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    centres = rng.uniform(3, 13, size=(64, 2))
    widths = rng.uniform(1.0, 3.0, size=64)
    blobs = np.exp(
        -((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2)
        / (2 * widths[:, None, None] ** 2)
    )
    images = (
        rng.uniform(0.02, 0.1, size=(64, 1, 1, 1)) * blobs[..., None] * np.array([0.5, 1.0, 0.8])
    ).astype("f4")
    flat = images.reshape(-1, 3)
    keras.utils.set_random_seed(0)
    cae = CAE.from_preset("tiny16", band_offset=flat.mean(0), band_scale=flat.std(0))
    cae.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    cae.fit(images, images, batch_size=16, epochs=38, verbose=0)
    mse = float(np.mean((cae.predict(images, verbose=0) - images) ** 2))
    mean_image = float(np.mean((images - images.mean(axis=0)) ** 2))
    assert mse < 0.5 * mean_image, (mse, mean_image)
