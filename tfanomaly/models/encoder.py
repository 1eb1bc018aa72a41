"""The encoder E: image -> z, and its training through the frozen generator and critic on the
inversion loss (the izi_f architecture of f-AnoGAN, Schlegl et al. 2019).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.critic import conv_stack
from tfanomaly.models.inverter import inversion_terms
from tfanomaly.models.preset_model import PresetModel


@keras.saving.register_keras_serializable(package="tfanomaly")
class Encoder(PresetModel):
    """E for a ModelConfig: the critic's convolution stack, then Dense -> latent_dim (linear).

    Args:
        model_config: the architecture (``image_size``, ``critic_filters``, ``latent_dim``...).
        dtype: dtype policy of the convolutions (None: the global one); z is float32 always.
        name: the model's name.

    Example:
        >>> import numpy as np
        >>> tuple(Encoder.from_preset("cpu32")(np.zeros((2, 32, 32, 3), np.float32)).shape)
        (2, 64)
    """

    def __init__(self, model_config: ModelConfig, *, dtype=None, name: str = "encoder", **kwargs):
        model_config.validate()
        c = model_config

        # === Layers, called as they are made (the functional graph) ===
        image = keras.Input((c.image_size, c.image_size, c.channels), name="image")
        features = conv_stack(image, c, prefix="enc_", dtype=dtype)
        z = keras.layers.Dense(c.latent_dim, dtype="float32", name="z")(features)

        # === Functional model and config ===
        super().__init__(
            inputs=image, outputs=z, model_config=model_config, dtype=dtype, name=name, **kwargs
        )


def latent_excess(z):
    """The latent hinge per image: LATENT_WEIGHT x max(0, |z| / sqrt(dim) - LATENT_RADIUS)^2."""
    z = tf.cast(z, tf.float32)
    radius = tf.norm(z, axis=-1) / tf.sqrt(tf.cast(tf.shape(z)[-1], tf.float32))
    return LATENT_WEIGHT * tf.square(tf.nn.relu(radius - LATENT_RADIUS))


# The latent hinge of EncoderTrainer: z beyond LATENT_RADIUS x sqrt(latent_dim) (the N(0, I)
# prior's typical radius) is pulled back, with a weight on the scale of the inversion loss.
LATENT_RADIUS = 1.5
LATENT_WEIGHT = 10.0


@keras.saving.register_keras_serializable(package="tfanomaly")
class EncoderTrainer(keras.Model):
    """Trains E so that G(E(x)) reconstructs x in pixels and in critic features (izi_f).

    The loss per image is the inversion objective ``(1 - lam) * sum|x - G(E(x))| + lam *
    sum|f(x) - f(G(E(x)))|``; G and the critic are frozen. A hinge keeps z where G was trained:
    ``LATENT_WEIGHT * max(0, |z| / sqrt(latent_dim) - LATENT_RADIUS)^2`` (0 within 1.5x the
    prior's typical radius). Without it Adam's first steps can throw z far out, where G's sigmoid
    is saturated and the inversion objective has no gradient left: the encoder then never learns
    (seen on a real-frame set: z at 4.6x the prior's radius, G(E(x)) = 0 for every image, the
    loss flat at 290 for all 600 steps, against 28 for the same networks trained from 1.1x).

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
        self.latent_tracker = keras.metrics.Mean(name="latent")
        self.lam = lam
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.pixel_tracker, self.feature_tracker, self.latent_tracker]

    def call(self, images, training=False):
        return self.generator(self.encoder(images, training=training), training=False)

    def train_step(self, images):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            z = self.encoder(images, training=True)
            reconstructions = self.generator(z, training=False)
            pixel, feature = inversion_terms(images, reconstructions, self.critic)
            latent = latent_excess(z)
            loss = tf.reduce_mean((1.0 - self.lam) * pixel + self.lam * feature + latent)
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.encoder.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.pixel_tracker.update_state(tf.reduce_mean(pixel))
        self.feature_tracker.update_state(tf.reduce_mean(feature))
        self.latent_tracker.update_state(tf.reduce_mean(latent))
        return {m.name: m.result() for m in self.metrics}
