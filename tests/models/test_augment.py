"""DiffAugment of the critic's input: each transform is an exact symmetry of the cutout (a flip or
quarter turn, a wrapped shift), gradients pass through it, and the WGAN-GP applies it to real,
generated and penalty images alike, saved with the model; bad policies are one clear error."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tfanomaly.cli import main
from tfanomaly.errors import ConfigError
from tfanomaly.models.augment import TRANSFORMS, diff_augment, flip, translation
from tfanomaly.models.config import AUGMENTATIONS, get_preset, parse_augment
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer
from tfanomaly.pipelines.config import GanTrainConfig


def square_symmetries(image: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        turned = np.rot90(image, k, axes=(0, 1))
        out += [turned, turned[:, ::-1]]
    return out


def test_flip_gives_each_sample_one_of_the_eight_symmetries_and_all_of_them_occur():
    images = tf.random.stateless_normal((256, 12, 12, 2), seed=(1, 2))
    flipped = flip(images, keras.random.SeedGenerator(0)).numpy()
    seen = set()
    for original, out in zip(images.numpy(), flipped, strict=True):
        matches = [k for k, s in enumerate(square_symmetries(original)) if np.array_equal(out, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))


def test_translation_is_a_wrapped_shift_of_at_most_an_eighth_of_the_size():
    images = tf.random.stateless_normal((128, 32, 32, 3), seed=(3, 4))
    shifted = translation(images, keras.random.SeedGenerator(1)).numpy()
    shifts = set()
    for original, out in zip(images.numpy(), shifted, strict=True):
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if np.array_equal(out, np.roll(original, (-dy, -dx), axis=(0, 1)))
        ]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) > 30 and max(max(abs(a), abs(b)) for a, b in shifts) == 4


def test_gradients_flow_back_through_the_permutation():
    images = tf.random.stateless_normal((8, 16, 16, 3), seed=(5, 6))
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(
            diff_augment(images, ("flip", "translation"), keras.random.SeedGenerator(2)) ** 3
        )
    # A permutation of the pixels: the gradient of sum(x^3) is 3 x^2 at every pixel.
    np.testing.assert_allclose(tape.gradient(total, images), 3 * images**2, rtol=1e-6)


def test_the_gan_trains_with_augmentation_and_keeps_it_when_saved(tmp_path):
    gan = WGANGP.from_preset(get_preset("tiny16"), seed=0, n_critic=2, augment="flip,translation")
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    images = np.random.default_rng(0).random((2 * 8, 16, 16, 3)).astype("f4")
    history = gan.fit(
        tf.data.Dataset.from_tensors(images).repeat(2), epochs=1, verbose=0, shuffle=False
    )
    assert int(gan.d_optimizer.iterations) == 4 and int(gan.g_optimizer.iterations) == 2
    assert all(np.isfinite(v[0]) for v in history.history.values())
    gan.save(tmp_path / "gan.keras")
    assert keras.models.load_model(tmp_path / "gan.keras").augment == ("flip", "translation")
    # Off by default: the critic sees the images as they are (the paper's training).
    plain = WGANGP.from_preset(get_preset("tiny16"), seed=0)
    x = tf.constant(images[:4])
    np.testing.assert_array_equal(plain.critic_score(x), plain.critic(x, training=True)[0])


def test_policies_are_checked():
    assert tuple(TRANSFORMS) == AUGMENTATIONS  # every name parse_augment accepts has a transform
    assert parse_augment("translation, flip") == ("translation", "flip")
    assert parse_augment("none") == parse_augment("") == parse_augment(None) == ()
    for bad in ("rotate", "flip,flip", "colour,flip"):
        with pytest.raises(ConfigError, match="choose from flip, translation"):
            parse_augment(bad)
    with pytest.raises(ConfigError, match="augment 'cutout'"):
        GanTrainConfig(augment=("cutout",)).validate()
    with pytest.raises(ConfigError, match="contrastive weight must be 0 .off. or positive"):
        GanTrainConfig(contrastive=-1.0).validate()


def test_the_command_line_names_a_bad_policy_in_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["train", "gan", str(tmp_path), "--out", str(tmp_path / "r"), "--augment", "colour"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: augment 'colour': choose from flip, translation (each once) or none"
    ]
