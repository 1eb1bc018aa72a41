"""The critic D: image -> (Wasserstein score, feature vector f(x)). The features (its last
convolutional map, flattened) drive the discriminator score of the anomaly search.
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig


def conv_stack(x, config: ModelConfig, prefix: str):
    """The critic's (and encoder's) 5x5 stride-2 convolutions with LeakyReLU 0.2, no normalisation
    (batch norm is incompatible with the per-sample gradient penalty)."""
    for k, filters in enumerate(config.critic_filters):
        x = keras.layers.Conv2D(
            filters, config.kernel_size, strides=2, padding="same", name=f"{prefix}conv{k}"
        )(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"{prefix}conv{k}_lrelu")(x)
    return keras.layers.Flatten(name=f"{prefix}flatten")(x)


def build_critic(config: ModelConfig, name: str = "critic") -> keras.Model:
    """Build D for ``config``; calling it returns ``(score (B, 1), features (B, feature_size))``.

    Example:
        >>> score, features = build_critic(get_preset("cpu32"))(images)
    """
    config.validate()
    image = keras.Input((config.image_size, config.image_size, config.channels), name="image")
    features = conv_stack(image, config, prefix="")
    features = keras.layers.Activation("linear", dtype="float32", name="features")(features)
    score = keras.layers.Dense(1, dtype="float32", name="score")(features)
    return keras.Model(image, [score, features], name=name)
