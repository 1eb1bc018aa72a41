"""The generator G: z -> image in [0, 1], the paper's DCGAN-style stack of transposed convolutions
(no batch norm, which would couple the samples of a batch and break the gradient penalty's premise).
"""

from __future__ import annotations

import keras

from tfanomaly.models.config import ModelConfig
from tfanomaly.models.preset_model import PresetModel


@keras.saving.register_keras_serializable(package="tfanomaly")
class Generator(PresetModel):
    """G for a ModelConfig: Dense -> base x base x filters[0] -> transposed convs -> sigmoid.

    Where ``base * 2**layers`` exceeds the image size (sizes such as 100), a centred Cropping2D
    (the layer ``crop``) cuts the drawn image to size; the fixed presets have none.

    Args:
        model_config: the architecture (``latent_dim``, ``generator_filters``, ``channels``...).
        dtype: dtype policy of the layers (None: the global one); the image is float32 always.
        name: the model's name.

    Example:
        >>> g = Generator.from_preset("cpu32")
        >>> tuple(g(keras.random.normal((2, 64))).shape)
        (2, 32, 32, 3)
    """

    def __init__(self, model_config: ModelConfig, *, dtype=None, name: str = "generator", **kwargs):
        model_config.validate()
        c = model_config
        base, first = c.base_size, c.generator_filters[0]

        # === Layers, called as they are made (the functional graph) ===
        z = keras.Input((c.latent_dim,), name="z")
        x = keras.layers.Dense(base * base * first, dtype=dtype, name="project")(z)
        x = keras.layers.Reshape((base, base, first), dtype=dtype, name="reshape")(x)
        x = keras.layers.ReLU(dtype=dtype, name="project_relu")(x)
        for k, filters in enumerate(c.generator_filters[1:]):
            x = keras.layers.Conv2DTranspose(
                filters, c.kernel_size, strides=2, padding="same", dtype=dtype, name=f"up{k}"
            )(x)
            x = keras.layers.ReLU(dtype=dtype, name=f"up{k}_relu")(x)
        x = keras.layers.Conv2DTranspose(
            c.channels, c.kernel_size, strides=2, padding="same", dtype=dtype, name="to_image"
        )(x)
        x = crop_to_size(x, c.drawn_size, c.image_size, dtype=dtype, name="crop")
        # float32 output even under a mixed-precision policy: images feed losses and the stretch.
        image = keras.layers.Activation("sigmoid", dtype="float32", name="image")(x)

        # === Functional model and config ===
        super().__init__(
            inputs=z, outputs=image, model_config=model_config, dtype=dtype, name=name, **kwargs
        )


def crop_to_size(x, drawn: int, size: int, *, dtype=None, name: str):
    """``x`` (drawn x drawn) cropped to size x size about its centre; ``x`` itself when equal."""
    if drawn == size:
        return x
    top = (drawn - size) // 2
    crop = (top, drawn - size - top)
    return keras.layers.Cropping2D((crop, crop), dtype=dtype, name=name)(x)
