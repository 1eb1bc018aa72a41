"""The convolutional autoencoder (CAE) that characterises anomalies: it compresses residual images
|stretched real - reconstruction| (or the stretched images) to a small latent vector.
"""

from __future__ import annotations

import keras
from keras import ops

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.critic import conv_stack
from tfanomaly.models.generator import crop_to_size
from tfanomaly.models.preset_model import PresetModel

CAE_LATENT_DIM = 64  # the paper's
OUTPUTS = ("linear", "sigmoid")


@keras.saving.register_keras_serializable(package="tfanomaly")
class BandScale(keras.layers.Layer):
    """Per-band affine map ``(x - offset) / scale`` (or its inverse): the CAE sees its images in
    units of their own spread, whatever the range of the cubes it is trained on.

    Args:
        offset: one value per band (None: 0).
        scale: one positive value per band (None: 1).
        inverse: ``x * scale + offset`` instead.
    """

    def __init__(self, offset=None, scale=None, inverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.offset = None if offset is None else [float(v) for v in offset]
        self.scale = None if scale is None else [float(v) for v in scale]
        self.inverse = inverse

    def call(self, x):
        offset = ops.convert_to_tensor(self.offset or 0.0, dtype=x.dtype)
        scale = ops.convert_to_tensor(self.scale or 1.0, dtype=x.dtype)
        return x * scale + offset if self.inverse else (x - offset) / scale

    def get_config(self):
        config = super().get_config()
        config.update({"offset": self.offset, "scale": self.scale, "inverse": self.inverse})
        return config


@keras.saving.register_keras_serializable(package="tfanomaly")
class CAE(PresetModel):
    """Autoencoder for a ModelConfig's image size: per-band standardisation -> the critic's 5x5
    stride-2 convolutions -> Dense latent (the layer named ``latent``) -> a mirrored decoder of
    transposed convolutions -> a linear output in standardised units -> the bands' own units.
    Trained with MSE. For sizes that are not ``side * 2**layers`` the decoder draws the next such
    size and crops it (``cae_crop``).

    The standardisation (``band_offset``, ``band_scale``: the training cubes' per-band mean and
    standard deviation) and the linear output are what keep it alive: residual images lie in
    [0, ~0.1], and the paper's sigmoid output on raw residuals starts at 0.5, is driven to
    pre-activations of -10^3 in the first hundred Adam steps and stays saturated at 0 (a constant
    output; CAEs saved that way still load, with ``output="sigmoid"`` and no standardisation).

    Args:
        model_config: the architecture (``image_size``, ``channels``, ``critic_filters``...).
        latent_dim: size of the latent vector (paper: 64).
        band_offset: per-band value subtracted before the encoder and added back at the output
            (None: 0).
        band_scale: per-band divisor (None: 1).
        output: ``linear`` (standardised units) or ``sigmoid`` (CAEs saved before the fix).
        dtype: dtype policy of the layers (None: the global one); the reconstruction is float32.
        name: the model's name.

    Example:
        >>> cae = CAE.from_preset("hsc96", band_scale=[0.02, 0.02, 0.02])
        >>> encoder = cae_encoder(cae)            # image -> 64 latent values
    """

    def __init__(
        self,
        model_config: ModelConfig,
        latent_dim: int = CAE_LATENT_DIM,
        *,
        band_offset=None,
        band_scale=None,
        output: str = "linear",
        dtype=None,
        name: str = "cae",
        **kwargs,
    ):
        model_config.validate()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        c = model_config
        side = c.feature_side
        deepest = c.critic_filters[-1]
        standardised = band_offset is not None or band_scale is not None

        # === Layers, called as they are made (the functional graph) ===
        image = keras.Input((c.image_size, c.image_size, c.channels), name="residual")
        x = image
        if standardised:
            x = BandScale(band_offset, band_scale, dtype=dtype, name="cae_standardise")(x)
        x = conv_stack(x, c, prefix="cae_", dtype=dtype)
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
        x = crop_to_size(
            x, side * 2 ** len(c.critic_filters), c.image_size, dtype=dtype, name="cae_crop"
        )
        if standardised:
            x = BandScale(
                band_offset, band_scale, inverse=True, dtype="float32", name="cae_unstandardise"
            )(x)
        reconstruction = keras.layers.Activation(output, dtype="float32", name="reconstruction")(x)

        # === Functional model ===
        super().__init__(
            inputs=image,
            outputs=reconstruction,
            model_config=model_config,
            dtype=dtype,
            name=name,
            **kwargs,
        )

        # === Config ===
        self.latent_dim = latent_dim
        self.band_offset = None if band_offset is None else [float(v) for v in band_offset]
        self.band_scale = None if band_scale is None else [float(v) for v in band_scale]
        self.output_activation = output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "band_offset": self.band_offset,
                "band_scale": self.band_scale,
                "output": self.output_activation,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # CAEs saved before the standardisation had a sigmoid output and no "output" entry.
        return super().from_config({"output": "sigmoid", **config})


def cae_encoder(cae: keras.Model) -> keras.Model:
    """The CAE's encoder half: image -> latent vector (shares the CAE's weights, standardisation
    included). Takes a ``CAE`` or a plain functional CAE loaded from a file saved before ``CAE``
    existed."""
    return keras.Model(cae.input, cae.get_layer("latent").output, name="cae_encoder")
