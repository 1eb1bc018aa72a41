"""Pictures of cutouts: the colours of one to four bands, tiling, and PNGs that a standard decoder
reads back exactly."""

import numpy as np
import tensorflow as tf

from tfanomaly.results.preview import encode_png, rgb, save_png, tile, to_uint8


def test_band_counts_become_rgb():
    one = np.full((2, 4, 4, 1), 0.5, np.float32)
    assert (rgb(one) == 0.5).all() and rgb(one).shape == (2, 4, 4, 3)
    two = rgb(np.ones((4, 4, 2), np.float32))
    assert (two[..., :2] == 1).all() and (two[..., 2] == 0).all()
    four = np.random.default_rng(0).random((4, 4, 4)).astype("f4")
    np.testing.assert_array_equal(rgb(four), four[..., :3])
    np.testing.assert_array_equal(
        to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])), [0, 0, 128, 255, 255]
    )


def test_png_decodes_to_the_same_pixels(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tf.io.decode_png(encode_png(pixels)).numpy(), pixels)
    grid = tile(np.random.default_rng(2).random((3, 4, 4, 3)).astype("f4"), columns=2)
    path = save_png(tmp_path / "grid.png", grid, scale=2)
    decoded = tf.io.decode_png(path.read_bytes()).numpy()
    expected = to_uint8(grid).repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(decoded, expected)
