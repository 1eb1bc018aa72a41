"""The encoder and its trainer: E's shapes, and training that moves E only."""

import keras
import numpy as np

from tfanomaly.models.config import get_preset
from tfanomaly.models.encoder import Encoder, EncoderTrainer, build_encoder
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer

TINY = get_preset("tiny16")


def test_encoder_maps_images_to_z():
    encoder = build_encoder(TINY)
    assert isinstance(encoder, Encoder) and encoder.name == "encoder"
    assert encoder(np.zeros((3, 16, 16, 3), "float32")).shape == (3, TINY.latent_dim)
    assert encoder.get_layer("z").dtype_policy.name == "float32"
    assert [layer.name for layer in encoder.layers][1:3] == ["enc_conv0", "enc_conv0_lrelu"]


def test_encoder_trainer_updates_only_the_encoder():
    keras.utils.set_random_seed(0)  # the networks' initial weights
    gan = WGANGP.from_preset(TINY, seed=0)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    trainer = EncoderTrainer(build_encoder(TINY), gan.generator, gan.critic, lam=0.3)
    trainer.compile(optimizer=paper_optimizer(1e-2))
    frozen = [w.numpy().copy() for w in gan.generator.weights + gan.critic.weights]
    encoder_before = [w.numpy().copy() for w in trainer.encoder.weights]
    images = np.random.default_rng(1).random((16, 16, 16, 3)).astype("f4")
    # A random tiny generator fits noise images only a little: the loss falls by ~0.1-0.3% over 8
    # epochs (seeds 0-5), not monotonically from one epoch to the next (2 epochs were flaky).
    history = trainer.fit(images, batch_size=8, epochs=8, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "pixel", "feature"} and losses[-1] < losses[0]
    for before, after in zip(frozen, gan.generator.weights + gan.critic.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(
        not np.array_equal(b, a.numpy())
        for b, a in zip(encoder_before, trainer.encoder.weights, strict=True)
    )
