"""The generator: the paper's parameter count and output shapes and range of every preset."""

import pytest
import tensorflow as tf

from tfanomaly.models.config import PRESETS, get_preset
from tfanomaly.models.generator import Generator


def test_paper_preset_parameter_count():
    """hsc96 as in Storey-Fisher et al.: counted by hand from the layer sizes."""
    config = get_preset("hsc96")
    dense = 128 * 6 * 6 * 512 + 6 * 6 * 512
    convt = sum(5 * 5 * i * o + o for i, o in [(512, 256), (256, 128), (128, 64), (64, 3)])
    assert Generator(config).count_params() == dense + convt == 6_683_779
    assert Generator.from_preset("hsc96").count_params() == 6_683_779


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_output_shapes_of_every_preset(name):
    config = get_preset(name)
    z = tf.random.normal((2, config.latent_dim))
    images = Generator(config)(z)
    side = config.image_size
    assert images.shape == (2, side, side, 3) and images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 1


def test_one_band_preset():
    config = get_preset("cpu32", channels=1)
    assert Generator(config)(tf.zeros((1, config.latent_dim))).shape == (1, 32, 32, 1)
    assert Generator.from_preset("cpu32", channels=1).model_config == config


def test_layer_names_and_build_wrapper():
    generator = Generator(get_preset("tiny16"), name="g")
    assert isinstance(generator, Generator) and generator.name == "g"
    assert [layer.name for layer in generator.layers] == [
        "z",
        "project",
        "reshape",
        "project_relu",
        "up0",
        "up0_relu",
        "to_image",
        "image",
    ]
    assert generator.get_layer("image").dtype_policy.name == "float32"
