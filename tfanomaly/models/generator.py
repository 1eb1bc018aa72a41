"""The generator G: z -> image in [0, 1], the paper's DCGAN-style stack of transposed convolutions
(no batch norm, which would couple the samples of a batch and break the gradient penalty's premise).
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig


def build_generator(config: ModelConfig, name: str = "generator") -> keras.Model:
    """Build G for ``config``: Dense -> base x base x filters[0] -> transposed convs -> sigmoid.

    Example:
        >>> g = build_generator(get_preset("cpu32"))
        >>> g(keras.random.normal((2, 64))).shape
        (2, 32, 32, 3)
    """
    config.validate()
    z = keras.Input((config.latent_dim,), name="z")
    base, first = config.base_size, config.generator_filters[0]
    x = keras.layers.Dense(base * base * first, name="project")(z)
    x = keras.layers.Reshape((base, base, first), name="reshape")(x)
    x = keras.layers.ReLU(name="project_relu")(x)
    for k, filters in enumerate(config.generator_filters[1:]):
        x = keras.layers.Conv2DTranspose(
            filters, config.kernel_size, strides=2, padding="same", name=f"up{k}"
        )(x)
        x = keras.layers.ReLU(name=f"up{k}_relu")(x)
    x = keras.layers.Conv2DTranspose(
        config.channels, config.kernel_size, strides=2, padding="same", name="to_image"
    )(x)
    # float32 output even under a mixed-precision policy: images feed losses and the stretch.
    image = keras.layers.Activation("sigmoid", dtype="float32", name="image")(x)
    return keras.Model(z, image, name=name)
