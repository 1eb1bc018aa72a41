"""Networks of the derived architectures: every size and band count in, the same shape out, through
the generator, critic, encoder and CAE; the crop where a size is not base * 2**k; saving."""

import keras
import numpy as np
import pytest

from tfanomaly.models.cae import CAE, cae_encoder
from tfanomaly.models.config import derive_config
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.wgan_gp import WGANGP

SIZES = (24, 40, 64, 100, 128)
BANDS = (1, 3, 5)


@pytest.mark.parametrize("bands", BANDS)
@pytest.mark.parametrize("size", SIZES)
def test_every_network_takes_and_gives_the_cutouts_shape(size, bands):
    config = derive_config("tiny", size, bands)
    x = np.random.default_rng(0).random((2, size, size, bands), dtype=np.float32)
    images = Generator(config)(np.zeros((2, config.latent_dim), "float32"))
    assert images.shape == x.shape
    assert float(np.min(images)) >= 0 and float(np.max(images)) <= 1
    score, features = Critic(config)(x)
    assert score.shape == (2, 1) and features.shape == (2, config.feature_size)
    assert Encoder(config)(x).shape == (2, config.latent_dim)
    cae = CAE(config)
    assert cae(x).shape == x.shape and cae_encoder(cae)(x).shape == (2, 64)


@pytest.mark.parametrize(
    ("size", "crop"),
    [(24, None), (40, None), (64, None), (100, (6, 6)), (36, (2, 2)), (65, (7, 8))],
)
def test_crop_only_where_the_size_is_not_base_times_a_power_of_two(size, crop):
    config = derive_config("tiny", size, 3)
    generator, cae = Generator(config), CAE(config)
    names = [layer.name for layer in generator.layers]
    if crop is None:
        assert "crop" not in names and "cae_crop" not in [layer.name for layer in cae.layers]
        return
    assert names[-3:] == ["to_image", "crop", "image"]
    assert generator.get_layer("to_image").output.shape[1] == config.drawn_size
    assert generator.get_layer("crop").cropping == (crop, crop)
    assert cae.get_layer("cae_crop").output.shape[1:3] == (size, size)


# family, size -> generator / critic parameters for 3 bands (the README's table).
PARAMETERS = {
    ("cpu", 64): (1_701_219, 1_504_801),
    ("cpu", 100): (2_113_059, 1_511_137),
    ("hsc", 64): (5_362_819, 4_314_753),
    ("hsc", 96): (6_683_779, 4_324_993),  # the paper's, as hsc96
    ("hsc", 100): (7_542_403, 4_331_649),
    ("hsc", 128): (11_916_931, 10_868_865),
}


@pytest.mark.parametrize(("family", "size"), sorted(PARAMETERS), ids=lambda v: str(v))
def test_parameter_counts(family, size):
    config = derive_config(family, size, 3)
    widths, side = config.critic_filters, config.feature_side
    pairs = list(zip((3, *widths[:-1]), widths, strict=True))
    critic = sum(25 * i * o + o for i, o in pairs) + config.feature_size + 1
    dense = config.latent_dim * side * side * widths[-1] + side * side * widths[-1]
    generator = dense + sum(25 * i * o + o for o, i in pairs)
    assert (generator, critic) == PARAMETERS[family, size]
    assert Generator(config).count_params() == generator
    assert Critic(config).count_params() == critic


@pytest.mark.parametrize("cls", [Generator, Critic, Encoder, CAE, WGANGP], ids=lambda c: c.__name__)
def test_a_cropping_model_round_trips_through_keras_files(cls, tmp_path):
    config = derive_config("tiny", 100, 5)
    keras.utils.set_random_seed(0)
    model = cls.from_preset("tiny100", channels=5)
    networks = [model.generator, model.critic] if cls is WGANGP else [model]
    assert all(network.model_config == config for network in networks)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    assert type(loaded) is cls and loaded.get_config() == model.get_config()
    rng = np.random.default_rng(1)
    if cls in (Generator, WGANGP):
        x = rng.normal(size=(2, config.latent_dim)).astype("float32")
    else:
        x = rng.random((2, 100, 100, 5), dtype=np.float32)
    for ours, theirs in zip(
        keras.tree.flatten(loaded(x)), keras.tree.flatten(model(x)), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)


def test_cropping_generator_under_mixed_precision_gives_float32_images():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        generator = Generator.from_preset("tiny100", channels=1)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert generator.get_layer("crop").compute_dtype == "bfloat16"
    assert generator(np.zeros((1, 8), "float32")).dtype == "float32"
