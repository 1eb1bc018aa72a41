"""Model presets: validation, names, band counts and the dict round trip of ModelConfig."""

import dataclasses

import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.models.config import (
    PRESETS,
    ModelConfig,
    get_preset,
    preset_for_size,
    resolve_preset,
)

TINY = get_preset("tiny16")


def test_one_band_preset_and_bad_sizes():
    assert get_preset("cpu32", channels=1).channels == 1
    with pytest.raises(ConfigError, match="not a multiple of"):
        dataclasses.replace(TINY, image_size=18).validate()
    with pytest.raises(ConfigError, match="unknown preset 'big'"):
        get_preset("big")
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY


def test_paper_preset_feature_size():
    assert get_preset("hsc96").feature_size == 6 * 6 * 512


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_named_as_registered(name):
    config = get_preset(name)
    assert config.name == name and config == PRESETS[name]
    assert preset_for_size(config.image_size) in PRESETS


def test_resolve_preset_takes_a_name_or_a_config():
    assert resolve_preset("tiny16") == TINY
    assert resolve_preset(TINY) is TINY
    assert resolve_preset(TINY, channels=1) == dataclasses.replace(TINY, channels=1)
    assert resolve_preset("tiny16", channels=1) == get_preset("tiny16", channels=1)
    with pytest.raises(ConfigError, match="not divisible by"):
        resolve_preset(dataclasses.replace(TINY, critic_filters=(8, 16, 32, 64, 128)))
    with pytest.raises(TypeError, match="a name or a ModelConfig"):
        resolve_preset(16)
