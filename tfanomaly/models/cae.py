"""The convolutional autoencoder (CAE) that characterises anomalies: it compresses residual images
|stretched real - reconstruction| to a small latent vector for UMAP and clustering (the paper's
step that separates scientifically interesting objects from artifacts).
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.critic import conv_stack

CAE_LATENT_DIM = 64  # the paper's


def build_cae(config: ModelConfig, latent_dim: int = CAE_LATENT_DIM) -> keras.Model:
    """Autoencoder for ``config``'s image size: the critic's 5x5 stride-2 convolutions -> Dense
    latent (the layer named ``latent``) -> a mirrored decoder of transposed convolutions -> sigmoid
    (residuals of stretched images lie in [0, 1]). Trained with MSE.

    Example:
        >>> cae = build_cae(get_preset("hsc96"))      # 4 convs 64..512 -> Dense 64 -> mirror
        >>> encoder = cae_encoder(cae)               # image -> 64 latent values
    """
    config.validate()
    side = config.image_size // 2 ** len(config.critic_filters)
    image = keras.Input((config.image_size, config.image_size, config.channels), name="residual")
    x = conv_stack(image, config, prefix="cae_")
    latent = keras.layers.Dense(latent_dim, name="latent")(x)
    x = keras.layers.Dense(side * side * config.critic_filters[-1], name="cae_expand")(latent)
    x = keras.layers.Reshape((side, side, config.critic_filters[-1]), name="cae_reshape")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.2, name="cae_expand_lrelu")(x)
    for k, filters in enumerate(reversed(config.critic_filters[:-1])):
        x = keras.layers.Conv2DTranspose(
            filters, config.kernel_size, strides=2, padding="same", name=f"cae_up{k}"
        )(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"cae_up{k}_lrelu")(x)
    x = keras.layers.Conv2DTranspose(
        config.channels, config.kernel_size, strides=2, padding="same", name="cae_to_image"
    )(x)
    output = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model(image, output, name="cae")


def cae_encoder(cae: keras.Model) -> keras.Model:
    """The CAE's encoder half: image -> latent vector (shares the CAE's weights)."""
    return keras.Model(cae.input, cae.get_layer("latent").output, name="cae_encoder")
