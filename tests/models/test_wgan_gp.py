"""The WGAN-GP model: configs and saving, the gradient penalty, and what a train step does."""

import keras
import numpy as np
import tensorflow as tf

from tfanomaly.models.config import get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.generator import Generator
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer

TINY = get_preset("tiny16")


def tiny_gan(seed=0, **kwargs):
    gan = WGANGP.from_preset(TINY, seed=seed, **kwargs)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    return gan


def test_config_round_trip_and_keras_save_load(tmp_path):
    gan = tiny_gan(n_critic=3, gp_weight=5.0)
    clone = WGANGP.from_config(gan.get_config())
    assert (clone.latent_dim, clone.n_critic, clone.gp_weight) == (8, 3, 5.0)
    for model in (gan.generator, gan.critic):
        # Their own classes rebuild them (a functional config no longer describes them).
        rebuilt = type(model).from_config(model.get_config())
        assert rebuilt.count_params() == model.count_params()
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert isinstance(loaded, WGANGP) and loaded.n_critic == 3
    assert isinstance(loaded.generator, Generator) and isinstance(loaded.critic, Critic)
    z = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    np.testing.assert_array_equal(loaded.generator(z), gan.generator(z))
    images = gan.generator(z)
    np.testing.assert_array_equal(loaded.critic(images)[1], gan.critic(images)[1])
    assert isinstance(loaded.d_optimizer, keras.optimizers.Adam)
    assert loaded.d_optimizer.beta_1 == 0.5 and loaded.d_optimizer.beta_2 == 0.9


def test_from_preset_takes_a_name_or_a_config_and_saves_uncompiled(tmp_path):
    by_name = WGANGP.from_preset("tiny16", channels=1, n_critic=2)
    assert by_name.generator.model_config == by_name.critic.model_config
    assert by_name.generator.model_config == get_preset("tiny16", channels=1)
    assert by_name.n_critic == 2 and by_name.latent_dim == TINY.latent_dim
    by_config = WGANGP.from_preset(TINY)
    assert by_config.generator.model_config is TINY
    by_config.save(tmp_path / "gan.keras")  # before compile(): nothing to restore but the nets
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert not loaded.compiled and loaded.get_config() == by_config.get_config()


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


def test_averaged_generator_is_a_generator_with_the_average():
    gan = tiny_gan(ema_decay=0.9)
    images = np.random.default_rng(0).random((10, 16, 16, 3)).astype("f4")
    gan.fit(tf.data.Dataset.from_tensors(images), epochs=1, verbose=0, shuffle=False)
    averaged = gan.averaged_generator()
    assert type(averaged) is Generator and averaged is not gan.generator
    assert averaged.model_config == gan.generator.model_config
    for copy, average in zip(averaged.weights, gan.ema_weights, strict=True):
        np.testing.assert_array_equal(copy.numpy(), average.numpy())
    plain = tiny_gan()  # no average: the generator itself
    assert plain.averaged_generator() is plain.generator


def test_the_contrastive_term_trains_the_critic_and_its_head_and_is_saved(tmp_path):
    gan = tiny_gan(n_critic=2, contrastive=1.0)
    head = [w.numpy().copy() for w in gan.projection.trainable_weights]
    real = tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 1))
    # InfoNCE over 8 images starts near log(8) (the views cannot yet tell the images apart).
    assert 0.5 * np.log(8) < float(gan.contrastive_loss(real)) < 2.0 * np.log(8)
    images = np.random.default_rng(0).random((2 * 8, 16, 16, 3)).astype("f4")
    history = gan.fit(
        tf.data.Dataset.from_tensors(images).repeat(2), epochs=1, verbose=0, shuffle=False
    )
    assert all(np.isfinite(v[0]) for v in history.history.values())
    assert int(gan.d_optimizer.iterations) == 4
    moved = [w.numpy() for w in gan.projection.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(head, moved, strict=True))
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert loaded.contrastive == 1.0 and loaded.projection is not None
    assert tiny_gan().projection is None  # off by default: the paper's critic loss
