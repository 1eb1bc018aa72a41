"""One harness for every model class and every preset: get_config/from_config, .keras saving and
from_preset (KerasHub's round-trip test). No training: a forward pass on a batch of 2."""

import keras
import numpy as np
import pytest

from tfanomaly.models.cae import CAE, cae_encoder
from tfanomaly.models.config import PRESETS, get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.wgan_gp import WGANGP

MODEL_CLASSES = [Generator, Critic, Encoder, CAE, WGANGP]
CASES = [
    pytest.param(cls, name, id=f"{cls.__name__}-{name}")
    for cls in MODEL_CLASSES
    for name in sorted(PRESETS)
]


def model_config_of(model):
    """The ModelConfig a model was built from (WGAN-GP: its networks', which must agree)."""
    if isinstance(model, WGANGP):
        assert model.generator.model_config == model.critic.model_config
        return model.generator.model_config
    return model.model_config


def example_input(model):
    """A batch of 2 of what the model takes: z for G and the WGAN-GP, images in [0, 1] else."""
    config = model_config_of(model)
    rng = np.random.default_rng(0)
    if isinstance(model, Generator | WGANGP):
        return rng.normal(size=(2, config.latent_dim)).astype("float32")
    side = config.image_size
    return rng.random((2, side, side, config.channels), dtype=np.float32)


def networks_of(model):
    """The functional networks inside a model (itself, or the WGAN-GP's G and D)."""
    return [model.generator, model.critic] if isinstance(model, WGANGP) else [model]


def outputs(model, x):
    """The model's outputs on x as a list of arrays (the critic has two)."""
    return [np.asarray(y) for y in keras.tree.flatten(model(x))]


@pytest.fixture(scope="module")
def models():
    """One model per (class, preset), built once for all three checks."""
    return {}


def built(models, cls, name):
    if (cls, name) not in models:
        keras.utils.set_random_seed(0)
        models[cls, name] = cls.from_preset(name)
    return models[cls, name]


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_from_preset_gives_the_presets_config(models, cls, name):
    model = built(models, cls, name)
    assert type(model) is cls
    assert model_config_of(model) == get_preset(name) == PRESETS[name]
    one_band = cls.from_preset(name, channels=1)
    assert model_config_of(one_band) == get_preset(name, channels=1)


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_get_config_from_config_round_trip(models, cls, name):
    model = built(models, cls, name)
    config = model.get_config()
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls and rebuilt.get_config() == config
    assert model_config_of(rebuilt) == model_config_of(model)
    assert rebuilt.count_params() == model.count_params()
    assert [(w.path, w.shape) for w in rebuilt.weights] == [
        (w.path, w.shape) for w in model.weights
    ]


@pytest.mark.parametrize(("cls", "name"), CASES)
def test_keras_file_round_trip(models, cls, name, tmp_path):
    model = built(models, cls, name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)  # as the pipelines load them
    assert type(loaded) is cls
    assert loaded.get_config() == model.get_config()
    assert model_config_of(loaded) == model_config_of(model)
    for ours, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    x = example_input(model)
    # Same weights, same graph, same machine, same batch: exactly the same numbers.
    for ours, theirs in zip(outputs(loaded, x), outputs(model, x), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda cls: cls.__name__)
def test_mixed_precision_survives_saving(cls, tmp_path):
    """Built under mixed_bfloat16, loaded under float32: the same layer policies (float32 outputs
    included) and the same numbers, as the plain functional files of earlier versions did."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = cls.from_preset("tiny16")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras", compile=False)
    assert loaded.get_config() == model.get_config()
    assert [(w.path, w.dtype) for w in loaded.weights] == [(w.path, w.dtype) for w in model.weights]
    for network, reloaded in zip(networks_of(model), networks_of(loaded), strict=True):
        names = [(layer.name, layer.dtype_policy.name) for layer in network.layers[1:]]
        assert names == [(layer.name, layer.dtype_policy.name) for layer in reloaded.layers[1:]]
        assert "mixed_bfloat16" in {policy for _, policy in names}
    x = example_input(model)
    for ours, theirs in zip(outputs(loaded, x), outputs(model, x), strict=True):
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("cls", [Generator, Critic, Encoder, CAE], ids=lambda cls: cls.__name__)
def test_plain_functional_files_of_earlier_versions_still_load(cls, tmp_path):
    """Before the classes, build_* returned plain functional models of the same layers: their
    .keras files load as such and compute the same (the CAE's encoder half included)."""
    model = cls.from_preset("tiny16")
    plain = keras.Model(model.input, model.outputs if len(model.outputs) > 1 else model.output)
    plain.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras", compile=False)
    assert type(loaded).__name__ == "Functional"
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    x = example_input(model)
    for ours, theirs in zip(outputs(loaded, x), outputs(model, x), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    if cls is CAE:
        np.testing.assert_array_equal(cae_encoder(loaded)(x), cae_encoder(model)(x))
