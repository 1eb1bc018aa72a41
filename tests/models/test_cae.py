"""The CAE: the paper's architecture, counted by hand, and its encoder half."""

import keras
import numpy as np
import tensorflow as tf

from tfanomaly.models.cae import CAE, build_cae, cae_encoder
from tfanomaly.models.config import get_preset


def test_paper_cae_architecture():
    """hsc96: 4 convs 64..512 -> Dense 64 -> mirrored decoder, counted by hand."""
    cae = build_cae(get_preset("hsc96"))
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
