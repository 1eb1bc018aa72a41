"""The checks at the end of every training stage: a network that puts out a constant, or does no
better than the mean image, stops the stage with an error that names the cause."""

import numpy as np
import pytest

from tfanomaly.pipelines.learning import (
    NetworkCollapsedError,
    check_reconstruction,
    check_samples,
    spread,
)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((20, 8, 8, 3)).astype("f4") * 0.1


def test_spread_is_zero_for_copies_of_one_image(images):
    assert spread(np.repeat(images[:1], 5, axis=0)) == 0.0
    assert spread(images) > 0.02


def test_a_good_reconstruction_passes_with_its_figures(images):
    noisy = images + np.random.default_rng(1).normal(0, 0.003, images.shape)
    figures = check_reconstruction("cae", images, noisy)
    assert figures["ratio"] < 0.05 and figures["mse"] < figures["mean_image_mse"]


def test_a_constant_output_is_a_collapse(images):
    zeros = np.zeros_like(images)  # the collapsed CAE: sigmoid saturated at 0
    with pytest.raises(NetworkCollapsedError, match="cae: the network has collapsed to a constant"):
        check_reconstruction("cae", images, zeros, advice="try more --steps")
    with pytest.raises(NetworkCollapsedError, match="try more --steps"):
        check_reconstruction(
            "cae",
            images,
            np.broadcast_to(images.mean(0), images.shape) + 1e-9,
            advice="try more --steps",
        )
    figures = check_reconstruction("cae", images, zeros, enforce=False)
    assert figures["output_spread"] == 0.0


def test_varying_outputs_no_better_than_the_mean_image_are_refused(images):
    shuffled = images[::-1]  # varies as much as the inputs, but reconstructs nothing
    with pytest.raises(NetworkCollapsedError, match="no better than their mean image"):
        check_reconstruction("cae", images, shuffled)


def test_samples_that_are_one_image_are_a_mode_collapse(images):
    one = np.repeat(images[:1], 20, axis=0) + 1e-6 * images
    with pytest.raises(NetworkCollapsedError, match="train gan: the network has collapsed"):
        check_samples("train gan", one, images)
    with pytest.raises(NetworkCollapsedError, match="NaN"):
        check_samples("train gan", np.full_like(images, np.nan), images)
    assert check_samples("train gan", images[::-1], images)["ratio"] == pytest.approx(1.0)
