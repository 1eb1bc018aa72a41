"""The critic D: image -> (Wasserstein score, feature vector f(x)). The features (its last
convolutional map, flattened) drive the discriminator score of the anomaly search.
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.preset_model import PresetModel


def conv_stack(x, config: ModelConfig, prefix: str, dtype=None):
    """The critic's (and the encoder's and CAE's) 5x5 stride-2 convolutions with LeakyReLU 0.2, no
    normalisation (batch norm is incompatible with the per-sample gradient penalty), flattened."""
    for k, filters in enumerate(config.critic_filters):
        x = keras.layers.Conv2D(
            filters,
            config.kernel_size,
            strides=2,
            padding="same",
            dtype=dtype,
            name=f"{prefix}conv{k}",
        )(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype, name=f"{prefix}conv{k}_lrelu")(
            x
        )
    return keras.layers.Flatten(dtype=dtype, name=f"{prefix}flatten")(x)


@keras.saving.register_keras_serializable(package="tfanomaly")
class Critic(PresetModel):
    """D for a ModelConfig; calling it returns ``[score (B, 1), features (B, feature_size)]``.

    Both outputs are float32 under any policy: they feed the Wasserstein loss, the gradient
    penalty and the feature statistics of the score.

    Args:
        model_config: the architecture (``image_size``, ``channels``, ``critic_filters``...).
        dtype: dtype policy of the convolutions (None: the global one).
        name: the model's name.

    Example:
        >>> import numpy as np
        >>> images = np.zeros((2, 32, 32, 3), np.float32)  # stretched, in [0, 1]
        >>> score, features = Critic.from_preset("cpu32")(images)
        >>> tuple(score.shape), features.shape[0]
        ((2, 1), 2)
    """

    def __init__(self, model_config: ModelConfig, *, dtype=None, name: str = "critic", **kwargs):
        model_config.validate()
        c = model_config

        # === Layers, called as they are made (the functional graph) ===
        image = keras.Input((c.image_size, c.image_size, c.channels), name="image")
        features = conv_stack(image, c, prefix="", dtype=dtype)
        features = keras.layers.Activation("linear", dtype="float32", name="features")(features)
        score = keras.layers.Dense(1, dtype="float32", name="score")(features)

        # === Functional model and config ===
        super().__init__(
            inputs=image,
            outputs=[score, features],
            model_config=model_config,
            dtype=dtype,
            name=name,
            **kwargs,
        )
