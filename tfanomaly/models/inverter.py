"""Latent inversion: find z with G(z) close to an image, by in-graph Adam from the encoder's guess.

The objective (Schlegl et al. 2017; Storey-Fisher et al. 2021) and its two terms are the scores.
"""

from __future__ import annotations

import tensorflow as tf

from tfanomaly.models.calibration import Calibration
from tfanomaly.models.noise_score import NoiseAwareScore
from tfanomaly.models.residual_shape import residual_shape
from tfanomaly.models.score_config import InversionConfig


def inversion_terms(images, reconstructions, critic, image_features=None):
    """Per-image L1 sums: pixel term sum|x - G(z)| and feature term sum|f(x) - f(G(z))|."""
    if image_features is None:
        image_features = critic(images, training=False)[1]
    reconstruction_features = critic(reconstructions, training=False)[1]
    pixel = tf.reduce_sum(tf.abs(images - reconstructions), axis=[1, 2, 3])
    feature = tf.reduce_sum(tf.abs(image_features - reconstruction_features), axis=1)
    return pixel, feature


class LatentInverter(tf.Module):
    """Batched, graph-compiled latent inversion with Adam written in the graph.

    z, Adam's m and v and the step count are ``tf.while_loop`` values, not variables: the module is
    stateless between calls, takes any batch size, uses only stock TF ops (exportable to a
    SavedModel for TF Serving) and gives the same result for the same input. Each image's loss
    depends on its own z only, so an image's scores do not depend on its batch neighbours.

    Args:
        generator: G, z -> image in [0, 1].
        critic: D, image -> (score, features).
        encoder: E, image -> z (the starting point).
        config: steps, Adam settings and lambda.
        calibration: the default score's calibration; without it only the paper's scores come out.

    Example (untrained cpu32 networks; a trained run's come from ``load_inverter``):
        >>> import numpy as np
        >>> from tfanomaly.models import Critic, Encoder, Generator
        >>> nets = [model.from_preset("cpu32") for model in (Generator, Critic, Encoder)]
        >>> inverter = LatentInverter(*nets, InversionConfig(steps=2))
        >>> images = np.full((2, 32, 32, 3), 0.5, np.float32)  # stretched, in [0, 1]
        >>> out = inverter(images)
        >>> out["anomaly_score"].shape, out["gen_score"].shape, out["disc_score"].shape
        (TensorShape([2]), TensorShape([2]), TensorShape([2]))

    With a calibration, ``inverter(stretched, raw_flux)`` also gives the default ``score``; with
    planes, ``inverter(batch["image"], flux, batch["variance"], batch["mask"])``.
    """

    def __init__(
        self,
        generator,
        critic,
        encoder,
        config: InversionConfig | None = None,
        calibration: Calibration | None = None,
    ):
        super().__init__(name="latent_inverter")
        self.generator, self.critic, self.encoder = generator, critic, encoder
        self.config = config or InversionConfig()
        self.calibration = calibration
        self.noise_score = NoiseAwareScore(calibration) if calibration is not None else None

    def objective(self, images, image_features, z):
        """(loss per image, pixel term, feature term, reconstruction) at z."""
        lam = self.config.lam
        reconstructions = self.generator(z, training=False)
        pixel, feature = inversion_terms(images, reconstructions, self.critic, image_features)
        return (1.0 - lam) * pixel + lam * feature, pixel, feature, reconstructions

    # No AutoGraph: the control flow is tf.while_loop and Python on static values, and AutoGraph's
    # conversion cache mixed up NoiseAwareScore's methods in a long process (a TypeError).
    @tf.function(autograph=False)
    def __call__(self, images, flux=None, variance=None, mask=None):
        """Invert a batch of stretched images (B, H, W, C) in [0, 1] (``flux``: the same cutouts
        before the stretch, which the default score's morphology term reads; ``variance`` and
        ``mask``: the data's planes in the stretched units and channel order, which the default
        score's residual terms use where the calibration was made with them); returns a dict of
        tensors:
        ``z``, ``features`` (the critic's f(x)), ``reconstruction``, ``residual`` (|x - G(z)|), the
        paper's ``gen_score`` (pixel term), ``disc_score`` (feature term), ``anomaly_score`` (their
        weighted sum), ``residual_shape`` (the residual's descriptors, for characterisation), and
        with a
        calibration the default ``score`` and its ``residual_score`` and ``feature_score``."""
        c = self.config
        images = tf.convert_to_tensor(images, tf.float32)
        image_features = self.critic(images, training=False)[1]
        z0 = tf.cast(self.encoder(images, training=False), tf.float32)

        def adam_step(t, z, m, v):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = tf.reduce_sum(self.objective(images, image_features, z)[0])
            grad = tape.gradient(loss, z)
            t = t + 1.0
            m = c.beta_1 * m + (1.0 - c.beta_1) * grad
            v = c.beta_2 * v + (1.0 - c.beta_2) * tf.square(grad)
            m_hat = m / (1.0 - tf.pow(c.beta_1, t))
            v_hat = v / (1.0 - tf.pow(c.beta_2, t))
            return t, z - c.learning_rate * m_hat / (tf.sqrt(v_hat) + c.epsilon), m, v

        zeros = tf.zeros_like(z0)
        _, z, _, _ = tf.while_loop(
            lambda t, z, m, v: t < c.steps,
            adam_step,
            (tf.constant(0.0), z0, zeros, zeros),
            maximum_iterations=c.steps,
        )
        loss, pixel, feature, reconstructions = self.objective(images, image_features, z)
        out = {
            "z": z,
            "features": image_features,
            "reconstruction": reconstructions,
            "residual": tf.abs(images - reconstructions),
            "gen_score": pixel,
            "disc_score": feature,
            "anomaly_score": loss,
        }
        if self.noise_score is not None:  # it computes the residual's shape for its own term
            out.update(
                self.noise_score(images, reconstructions, image_features, flux, variance, mask)
            )
        else:
            out["residual_shape"] = residual_shape(images, reconstructions)
        return out
