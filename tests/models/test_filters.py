"""The filters' median and MAD-sigma against NumPy's."""

import numpy as np
import pytest

from tfanomaly.models.filters import band_mad_sigma, median


@pytest.mark.parametrize("length", [1, 2, 4, 7, 512, 513])
def test_median_is_numpys_over_the_last_axis(length):
    """Odd and even lengths, ties and negative values, any leading axes: the same value as
    np.median, to the bit (the middle values are selected, not computed)."""
    rng = np.random.default_rng(length)
    values = rng.normal(size=(4, 3, length)).astype("f4")
    values[0, 0] = np.round(values[0, 0])  # ties
    np.testing.assert_array_equal(median(values).numpy(), np.median(values, axis=-1))


def test_median_of_an_even_length_with_its_middle_values_tied_or_apart():
    """The lower middle value is read off the upper one's selection: tied with it, below it, and
    every value the same."""
    values = np.array([[1, 2, 2, 3], [1, 1, 2, 2], [3, 3, 3, 3], [4, -1, 0, 9]], "f4")
    np.testing.assert_array_equal(median(values).numpy(), [2.0, 1.5, 3.0, 2.0])


def test_band_mad_sigma_is_the_scaled_median_absolute_value_per_band():
    values = np.random.default_rng(0).normal(0, [1.0, 2.0, 0.5], (5, 8, 6, 3)).astype("f4")
    expected = 1.4826 * np.median(np.abs(values).transpose(0, 3, 1, 2).reshape(5, 3, -1), axis=-1)
    np.testing.assert_allclose(band_mad_sigma(values).numpy(), expected, rtol=1e-6)
