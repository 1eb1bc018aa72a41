"""The critic: the paper's parameter count, (score, features) outputs of every preset."""

import keras
import pytest
import tensorflow as tf

from tfanomaly.models.config import PRESETS, get_preset
from tfanomaly.models.critic import Critic


def test_paper_preset_parameter_count():
    """hsc96 as in Storey-Fisher et al.: counted by hand from the layer sizes."""
    config = get_preset("hsc96")
    conv = sum(5 * 5 * i * o + o for i, o in [(3, 64), (64, 128), (128, 256), (256, 512)])
    assert Critic(config).count_params() == conv + 18_432 + 1 == 4_324_993
    assert Critic.from_preset("hsc96").count_params() == 4_324_993
    assert config.feature_size == 6 * 6 * 512


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_output_shapes_of_every_preset(name):
    config = get_preset(name)
    side = config.image_size
    images = tf.random.uniform((2, side, side, 3))
    score, features = Critic(config)(images)
    assert score.shape == (2, 1) and features.shape == (2, config.feature_size)


def test_float32_outputs_under_mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        critic = Critic.from_preset("tiny16")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert critic.get_layer("conv0").compute_dtype == "bfloat16"
    score, features = critic(tf.random.uniform((2, 16, 16, 3)))
    assert score.dtype == features.dtype == tf.float32
