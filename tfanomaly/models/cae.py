"""The convolutional autoencoder (CAE) that characterises anomalies: it compresses residual images
|stretched real - reconstruction| to a small latent vector for UMAP and clustering (the paper's
step that separates scientifically interesting objects from artifacts).
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.critic import conv_stack
from tfanomaly.models.generator import crop_to_size
from tfanomaly.models.preset_model import PresetModel

CAE_LATENT_DIM = 64  # the paper's


@keras.saving.register_keras_serializable(package="tfanomaly")
class CAE(PresetModel):
    """Autoencoder for a ModelConfig's image size: the critic's 5x5 stride-2 convolutions -> Dense
    latent (the layer named ``latent``) -> a mirrored decoder of transposed convolutions -> sigmoid
    (residuals of stretched images lie in [0, 1]). Trained with MSE. For sizes that are not
    ``side * 2**layers`` the decoder draws the next such size and crops it (``cae_crop``).

    Args:
        model_config: the architecture (``image_size``, ``channels``, ``critic_filters``...).
        latent_dim: size of the latent vector (paper: 64).
        dtype: dtype policy of the layers (None: the global one); the reconstruction is float32.
        name: the model's name.

    Example:
        >>> cae = CAE.from_preset("hsc96")        # 4 convs 64..512 -> Dense 64 -> mirror
        >>> encoder = cae_encoder(cae)            # image -> 64 latent values
    """

    def __init__(self, model_config: ModelConfig, latent_dim: int = CAE_LATENT_DIM, *, dtype=None,
                 name: str = "cae", **kwargs):  # fmt: skip
        model_config.validate()
        c = model_config
        side = c.feature_side
        deepest = c.critic_filters[-1]

        # === Layers, called as they are made (the functional graph) ===
        image = keras.Input((c.image_size, c.image_size, c.channels), name="residual")
        x = conv_stack(image, c, prefix="cae_", dtype=dtype)
        latent = keras.layers.Dense(latent_dim, dtype=dtype, name="latent")(x)
        x = keras.layers.Dense(side * side * deepest, dtype=dtype, name="cae_expand")(latent)
        x = keras.layers.Reshape((side, side, deepest), dtype=dtype, name="cae_reshape")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype, name="cae_expand_lrelu")(x)
        for k, filters in enumerate(reversed(c.critic_filters[:-1])):
            x = keras.layers.Conv2DTranspose(
                filters, c.kernel_size, strides=2, padding="same", dtype=dtype, name=f"cae_up{k}"
            )(x)
            x = keras.layers.LeakyReLU(negative_slope=0.2, dtype=dtype, name=f"cae_up{k}_lrelu")(x)
        x = keras.layers.Conv2DTranspose(
            c.channels, c.kernel_size, strides=2, padding="same", dtype=dtype, name="cae_to_image"
        )(x)
        x = crop_to_size(x, side * 2 ** len(c.critic_filters), c.image_size, dtype=dtype,
                         name="cae_crop")  # fmt: skip
        output = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)

        # === Functional model ===
        super().__init__(
            inputs=image,
            outputs=output,
            model_config=model_config,
            dtype=dtype,
            name=name,
            **kwargs,
        )

        # === Config ===
        self.latent_dim = latent_dim

    def get_config(self):
        config = super().get_config()
        config.update({"latent_dim": self.latent_dim})
        return config


def build_cae(config: ModelConfig, latent_dim: int = CAE_LATENT_DIM) -> CAE:
    """``CAE(config, latent_dim)``, kept for existing callers."""
    return CAE(config, latent_dim)


def cae_encoder(cae: keras.Model) -> keras.Model:
    """The CAE's encoder half: image -> latent vector (shares the CAE's weights). Takes a ``CAE``
    or a plain functional CAE loaded from a file saved before ``CAE`` existed."""
    return keras.Model(cae.input, cae.get_layer("latent").output, name="cae_encoder")
