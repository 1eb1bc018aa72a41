"""Model presets and families: validation, names, band counts, the architecture each family derives
for a size, and the dict round trip of ModelConfig (run.json, old ones included)."""

import dataclasses

import pytest

from tfanomaly.errors import ConfigError
from tfanomaly.models.config import (
    FAMILIES,
    PRESETS,
    ModelConfig,
    check_preset_name,
    derive_config,
    get_preset,
    preset_for_data,
    preset_for_size,
    resolve_preset,
)

TINY = get_preset("tiny16")
SIZES = (24, 40, 64, 100, 128)


def test_one_band_preset_and_bad_sizes():
    assert get_preset("cpu32", channels=1).channels == 1
    with pytest.raises(ConfigError, match="too small for 2 generator layers"):
        dataclasses.replace(TINY, image_size=3).validate()
    with pytest.raises(ConfigError, match="unknown preset 'big'"):
        get_preset("big")
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY


def test_a_size_that_is_not_base_times_a_power_of_two_draws_more_and_crops():
    odd = dataclasses.replace(TINY, image_size=18)
    odd.validate()  # earlier versions refused it; the generator now crops 20 -> 18
    assert (odd.base_size, odd.drawn_size, odd.feature_side) == (5, 20, 5)


def test_paper_preset_feature_size():
    assert get_preset("hsc96").feature_size == 6 * 6 * 512


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_named_as_registered(name):
    config = get_preset(name)
    assert config.name == name and config == PRESETS[name]
    assert get_preset(preset_for_size(config.image_size)).image_size == config.image_size


def test_fixed_presets_are_their_families_at_their_sizes():
    """The fixed presets stay exactly as they were; each family gives them at their sizes."""
    assert PRESETS["hsc96"] == ModelConfig(
        name="hsc96",
        image_size=96,
        channels=3,
        latent_dim=128,
        generator_filters=(512, 256, 128, 64),
        critic_filters=(64, 128, 256, 512),
        kernel_size=5,
    )
    assert PRESETS["cpu32"].critic_filters == (32, 64, 128) and PRESETS["cpu32"].latent_dim == 64
    assert PRESETS["cpu48"].generator_filters == (192, 96, 48)
    assert PRESETS["tiny16"].critic_filters == (8, 16) and PRESETS["tiny16"].latent_dim == 8
    for name, config in PRESETS.items():
        assert derive_config(name.rstrip("0123456789"), config.image_size) == config
    assert derive_config("paper", 96) == PRESETS["hsc96"]
    assert derive_config("cpu", 32, channels=1) == get_preset("cpu32", channels=1)


# family, size -> critic widths (the generator's are the same, reversed), feature map side.
DERIVED = {
    ("cpu", 24): ((32, 64), 6),
    ("cpu", 40): ((40, 80, 160), 5),
    ("cpu", 64): ((48, 96, 192, 192), 4),
    ("cpu", 100): ((48, 96, 192, 192), 7),
    ("cpu", 128): ((48, 96, 192, 192, 192), 4),
    ("hsc", 24): ((64, 128), 6),
    ("hsc", 64): ((64, 128, 256, 512), 4),
    ("hsc", 100): ((64, 128, 256, 512), 7),
    ("hsc", 128): ((64, 128, 256, 512, 512), 4),
    ("tiny", 40): ((8, 16, 16), 5),
    ("tiny", 100): ((8, 16, 16, 16), 7),
}


@pytest.mark.parametrize(("family", "size"), sorted(DERIVED), ids=lambda v: str(v))
def test_derived_architecture(family, size):
    widths, side = DERIVED[family, size]
    config = derive_config(family, size, channels=5)
    assert config.name == f"{family}{size}" and config.channels == 5
    assert config.critic_filters == widths and config.generator_filters == widths[::-1]
    assert config.feature_side == config.base_size == side
    assert config.feature_size == side * side * widths[-1]
    assert config.latent_dim == FAMILIES[family].latent_dim
    # The drawn image is the next base * 2**layers at or above the size (less than 2**layers more).
    assert size <= config.drawn_size < size + 2 ** len(widths)
    assert get_preset(config.name, channels=5) == config


@pytest.mark.parametrize("size", SIZES)
def test_layers_bring_the_feature_map_to_four_to_seven_pixels(size):
    for family in FAMILIES:
        config = derive_config(family, size)
        assert 4 <= config.feature_side <= 7


def test_derived_configs_round_trip_through_run_json_dicts():
    for family in FAMILIES:
        for size in SIZES:
            for bands in (1, 3, 5):
                config = derive_config(family, size, bands)
                assert ModelConfig.from_dict(config.to_dict()) == config


def test_run_json_model_of_an_earlier_version_still_loads():
    """run.json of tfanomaly 0.1-0.3: the same seven keys, lists for the filters."""
    old = {
        "name": "cpu32",
        "image_size": 32,
        "channels": 1,
        "latent_dim": 64,
        "generator_filters": [128, 64, 32],
        "critic_filters": [32, 64, 128],
        "kernel_size": 5,
    }
    assert ModelConfig.from_dict(old) == get_preset("cpu32", channels=1)
    assert get_preset("cpu32").to_dict().keys() == old.keys()


def test_preset_for_size_picks_the_fixed_preset_else_the_cpu_family():
    assert [preset_for_size(s) for s in (32, 48, 96)] == ["cpu32", "cpu48", "hsc96"]
    assert preset_for_size(16) == "cpu16"  # tiny16 is for tests, never chosen by size
    assert preset_for_size(64) == "cpu64" and preset_for_size(100) == "cpu100"
    with pytest.raises(ConfigError, match="too small"):
        preset_for_size(6)


def test_preset_for_data_resolves_auto_families_and_checks_fixed_sizes():
    assert preset_for_data("auto", (64, 64, 1)) == derive_config("cpu", 64, 1)
    assert preset_for_data("auto", (32, 32, 5)) == get_preset("cpu32", channels=5)
    assert preset_for_data("paper", (100, 100, 3)) == derive_config("hsc", 100)
    assert preset_for_data("tiny", (40, 40, 5)).name == "tiny40"
    assert preset_for_data("tiny40", (40, 40, 2)).channels == 2
    with pytest.raises(ConfigError, match="preset cpu32 is for 32x32 cutouts but data holds 64x64"):
        preset_for_data("cpu32", (64, 64, 3), source="data")
    with pytest.raises(ConfigError, match="square"):
        preset_for_data("cpu", (64, 32, 3))


def test_check_preset_name():
    for name in ("auto", "cpu", "hsc", "paper", "tiny", "hsc96", "cpu64", "paper100"):
        check_preset_name(name)
    for name, message in [("big", "unknown preset"), ("cpu4", "too small"), ("gpu64", "unknown")]:
        with pytest.raises(ConfigError, match=message):
            check_preset_name(name)
    with pytest.raises(ConfigError, match="needs an image size"):
        get_preset("cpu")


def test_resolve_preset_takes_a_name_or_a_config():
    assert resolve_preset("tiny16") == TINY
    assert resolve_preset(TINY) is TINY
    assert resolve_preset(TINY, channels=1) == dataclasses.replace(TINY, channels=1)
    assert resolve_preset("tiny16", channels=1) == get_preset("tiny16", channels=1)
    assert resolve_preset("tiny64", channels=5) == derive_config("tiny", 64, 5)
    with pytest.raises(ConfigError, match="too small for 5 critic layers"):
        resolve_preset(dataclasses.replace(TINY, critic_filters=(8, 16, 32, 64, 128)))
    with pytest.raises(TypeError, match="a name or a ModelConfig"):
        resolve_preset(16)
