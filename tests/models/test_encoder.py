"""The encoder and its trainer: E's shapes, and training that moves E only."""

import keras
import numpy as np
import pytest

from tfanomaly.models.config import get_preset
from tfanomaly.models.encoder import (
    LATENT_RADIUS,
    LATENT_WEIGHT,
    Encoder,
    EncoderTrainer,
    latent_excess,
)
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer

TINY = get_preset("tiny16")


def test_encoder_maps_images_to_z():
    encoder = Encoder(TINY)
    assert isinstance(encoder, Encoder) and encoder.name == "encoder"
    assert encoder(np.zeros((3, 16, 16, 3), "float32")).shape == (3, TINY.latent_dim)
    assert encoder.get_layer("z").dtype_policy.name == "float32"
    assert [layer.name for layer in encoder.layers][1:3] == ["enc_conv0", "enc_conv0_lrelu"]


def test_encoder_trainer_updates_only_the_encoder():
    keras.utils.set_random_seed(0)  # the networks' initial weights
    gan = WGANGP.from_preset(TINY, seed=0)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    trainer = EncoderTrainer(Encoder(TINY), gan.generator, gan.critic, lam=0.3)
    trainer.compile(optimizer=paper_optimizer(1e-2))
    frozen = [w.numpy().copy() for w in gan.generator.weights + gan.critic.weights]
    encoder_before = [w.numpy().copy() for w in trainer.encoder.weights]
    images = np.random.default_rng(1).random((16, 16, 16, 3)).astype("f4")
    # A random tiny generator fits noise images only a little: the loss falls by ~0.1-0.3% over 8
    # epochs (seeds 0-5), not monotonically from one epoch to the next (2 epochs were flaky).
    history = trainer.fit(images, batch_size=8, epochs=8, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "pixel", "feature", "latent"}
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, gan.generator.weights + gan.critic.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(
        not np.array_equal(b, a.numpy())
        for b, a in zip(encoder_before, trainer.encoder.weights, strict=True)
    )


def test_the_latent_hinge_is_zero_inside_the_prior_and_grows_outside():
    dim = TINY.latent_dim
    inside = np.full((1, dim), LATENT_RADIUS * 0.99, "f4")  # |z| / sqrt(dim) = 1.485
    outside = np.full((1, dim), 3.0, "f4")  # |z| / sqrt(dim) = 3
    assert latent_excess(inside).numpy().item() == 0.0
    expected = LATENT_WEIGHT * (3.0 - LATENT_RADIUS) ** 2
    assert latent_excess(outside).numpy().item() == pytest.approx(expected, rel=1e-6)


def test_an_encoder_thrown_far_out_of_the_prior_comes_back():
    # The failure the hinge is for: z far out, where G's sigmoid is saturated and the inversion
    # objective alone has (almost) no gradient; the hinge's gradient brings z back.
    keras.utils.set_random_seed(0)
    gan = WGANGP.from_preset(TINY, seed=0)
    encoder = Encoder(TINY)
    bias = encoder.get_layer("z").bias
    bias.assign(np.full(bias.shape, 6.0, "f4"))  # |z| / sqrt(dim) = 6
    trainer = EncoderTrainer(encoder, gan.generator, gan.critic, lam=0.3)
    trainer.compile(optimizer=paper_optimizer(1e-1))
    images = np.random.default_rng(1).random((16, 16, 16, 3)).astype("f4")

    def radius():
        return np.linalg.norm(encoder(images).numpy(), axis=1).mean() / np.sqrt(TINY.latent_dim)

    assert radius() > 5.5
    history = trainer.fit(images, batch_size=8, epochs=20, verbose=0, shuffle=False)
    assert history.history["latent"][0] > 100 and radius() < LATENT_RADIUS + 0.2
