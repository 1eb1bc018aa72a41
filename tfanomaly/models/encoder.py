"""The encoder E: image -> z, and its training through the frozen generator and critic on the
inversion loss (the izi_f architecture of f-AnoGAN, Schlegl et al. 2019).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.critic import conv_stack
from tfanomaly.models.inverter import inversion_terms


def build_encoder(config: ModelConfig, name: str = "encoder") -> keras.Model:
    """E for ``config``: the critic's convolution stack, then Dense -> latent_dim (linear).

    Example:
        >>> build_encoder(get_preset("cpu32"))(images).shape
        (B, 64)
    """
    config.validate()
    image = keras.Input((config.image_size, config.image_size, config.channels), name="image")
    features = conv_stack(image, config, prefix="enc_")
    z = keras.layers.Dense(config.latent_dim, dtype="float32", name="z")(features)
    return keras.Model(image, z, name=name)


@keras.saving.register_keras_serializable(package="tfanomaly")
class EncoderTrainer(keras.Model):
    """Trains E so that G(E(x)) reconstructs x in pixels and in critic features (izi_f).

    The loss per image is the inversion objective ``(1 - lam) * sum|x - G(E(x))| + lam *
    sum|f(x) - f(G(E(x)))|``; G and the critic are frozen.

    Args:
        encoder: E, trained.
        generator: G, frozen.
        critic: D, frozen (only its features are used).
        lam: weight of the feature term (paper: 0.3).
    """

    def __init__(self, encoder, generator, critic, lam: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.generator = generator
        self.critic = critic
        self.generator.trainable = False
        self.critic.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.pixel_tracker = keras.metrics.Mean(name="pixel")
        self.feature_tracker = keras.metrics.Mean(name="feature")
        self.lam = lam
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.pixel_tracker, self.feature_tracker]

    def call(self, images, training=False):
        return self.generator(self.encoder(images, training=training), training=False)

    def train_step(self, images):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            reconstructions = self(images, training=True)
            pixel, feature = inversion_terms(images, reconstructions, self.critic)
            loss = tf.reduce_mean((1.0 - self.lam) * pixel + self.lam * feature)
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.encoder.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.pixel_tracker.update_state(tf.reduce_mean(pixel))
        self.feature_tracker.update_state(tf.reduce_mean(feature))
        return {m.name: m.result() for m in self.metrics}
