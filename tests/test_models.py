"""Generator, critic and the WGAN-GP model: sizes, configs, saving, and what a train step does."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfanomaly.errors import ConfigError
from tfanomaly.models.config import PRESETS, ModelConfig, get_preset
from tfanomaly.models.critic import build_critic
from tfanomaly.models.generator import build_generator
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer

TINY = get_preset("tiny16")


def test_paper_preset_parameter_counts():
    """hsc96 as in Storey-Fisher et al.: counted by hand from the layer sizes."""
    config = get_preset("hsc96")
    dense = 128 * 6 * 6 * 512 + 6 * 6 * 512
    convt = sum(5 * 5 * i * o + o for i, o in [(512, 256), (256, 128), (128, 64), (64, 3)])
    conv = sum(5 * 5 * i * o + o for i, o in [(3, 64), (64, 128), (128, 256), (256, 512)])
    assert build_generator(config).count_params() == dense + convt == 6_683_779
    assert build_critic(config).count_params() == conv + 18_432 + 1 == 4_324_993
    assert config.feature_size == 6 * 6 * 512


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_output_shapes_of_every_preset(name):
    config = get_preset(name)
    z = tf.random.normal((2, config.latent_dim))
    images = build_generator(config)(z)
    side = config.image_size
    assert images.shape == (2, side, side, 3)
    assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 1
    score, features = build_critic(config)(images)
    assert score.shape == (2, 1) and features.shape == (2, config.feature_size)


def test_one_band_preset_and_bad_sizes():
    config = get_preset("cpu32", channels=1)
    assert build_generator(config)(tf.zeros((1, config.latent_dim))).shape == (1, 32, 32, 1)
    with pytest.raises(ConfigError, match="not a multiple of"):
        dataclasses.replace(TINY, image_size=18).validate()
    with pytest.raises(ConfigError, match="unknown preset 'big'"):
        get_preset("big")
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY


def tiny_gan(seed=0, **kwargs):
    gan = WGANGP.from_preset(TINY, seed=seed, **kwargs)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    return gan


def test_config_round_trip_and_keras_save_load(tmp_path):
    gan = tiny_gan(n_critic=3, gp_weight=5.0)
    clone = WGANGP.from_config(gan.get_config())
    assert (clone.latent_dim, clone.n_critic, clone.gp_weight) == (8, 3, 5.0)
    for model in (gan.generator, gan.critic):
        rebuilt = keras.Model.from_config(model.get_config())
        assert rebuilt.count_params() == model.count_params()
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert isinstance(loaded, WGANGP) and loaded.n_critic == 3
    z = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    np.testing.assert_array_equal(loaded.generator(z), gan.generator(z))
    images = gan.generator(z)
    np.testing.assert_array_equal(loaded.critic(images)[1], gan.critic(images)[1])
    assert isinstance(loaded.d_optimizer, keras.optimizers.Adam)
    assert loaded.d_optimizer.beta_1 == 0.5 and loaded.d_optimizer.beta_2 == 0.9


def test_gradient_penalty_of_a_known_critic():
    """For D(x) = w . x the input gradient is w everywhere: GP = (|w| - 1)^2 exactly."""
    gan = tiny_gan()
    inputs = keras.Input((16, 16, 3))
    flat = keras.layers.Flatten()(inputs)
    score = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(flat)
    gan.critic = keras.Model(inputs, [score, flat])
    real = tf.random.uniform((4, 16, 16, 3))
    fake = tf.random.uniform((4, 16, 16, 3))
    expected = (np.sqrt(16 * 16 * 3) - 1) ** 2
    np.testing.assert_allclose(float(gan.gradient_penalty(real, fake)), expected, rtol=1e-5)


def test_train_step_updates_critic_n_critic_times_per_generator_step():
    gan = tiny_gan(n_critic=5)
    data = tf.data.Dataset.from_tensor_slices(np.random.rand(5 * 8 * 3, 16, 16, 3).astype("f4"))
    before = [w.numpy().copy() for w in gan.generator.trainable_weights]
    history = gan.fit(data.batch(5 * 8, drop_remainder=True), epochs=1, verbose=0, shuffle=False)
    assert int(gan.g_optimizer.iterations) == 3 and int(gan.d_optimizer.iterations) == 15
    assert set(history.history) == {"d_loss", "g_loss", "wasserstein", "gp"}
    assert all(np.isfinite(v[0]) for v in history.history.values())
    after = gan.generator.trainable_weights
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(before, after, strict=True))


def test_seeded_training_is_reproducible():
    def run():
        keras.utils.set_random_seed(7)
        gan = tiny_gan(seed=3)
        images = np.random.default_rng(0).random((10, 16, 16, 3)).astype("f4")
        gan.fit(tf.data.Dataset.from_tensors(images), epochs=2, verbose=0, shuffle=False)
        return gan.generator(tf.ones((1, 8))).numpy()

    np.testing.assert_allclose(run(), run(), atol=1e-6)


def test_encoder_trainer_updates_only_the_encoder():
    from tfanomaly.models.encoder import EncoderTrainer, build_encoder

    gan = tiny_gan()
    trainer = EncoderTrainer(build_encoder(TINY), gan.generator, gan.critic, lam=0.3)
    trainer.compile(optimizer=paper_optimizer(1e-2))
    frozen = [w.numpy().copy() for w in gan.generator.weights + gan.critic.weights]
    encoder_before = [w.numpy().copy() for w in trainer.encoder.weights]
    images = np.random.default_rng(1).random((16, 16, 16, 3)).astype("f4")
    history = trainer.fit(images, batch_size=8, epochs=2, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert set(history.history) == {"loss", "pixel", "feature"} and losses[1] < losses[0]
    for before, after in zip(frozen, gan.generator.weights + gan.critic.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert any(
        not np.array_equal(b, a.numpy())
        for b, a in zip(encoder_before, trainer.encoder.weights, strict=True)
    )
