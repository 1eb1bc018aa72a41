"""Differentiable augmentation of the critic's input during GAN training (DiffAugment, Zhao et al.
2020): the same random transform family is applied to real and generated images before every
critic call, in the critic and the generator steps and at the gradient penalty's points, so that
the critic cannot memorise a small training set while the generator still learns the untransformed
images.

Only transforms that leave a survey cutout a valid cutout of the same sky are offered:
``flip`` (one of the 8 flips and quarter turns of the square, the exact symmetries of a sky image)
and ``translation`` (a shift by up to 1/8 of the size with wrap-around, the cutout centre being
arbitrary to a few pixels). Colour, brightness and cutout erasing are left out on purpose: colour
and brightness are what several anomalies are, and an erased patch is what a masked artefact looks
like.
"""

from __future__ import annotations

import keras
import tensorflow as tf

TRANSLATION_FRACTION = 1.0 / 8.0


def _select(mask, transformed, images):
    """Per sample: ``transformed`` where ``mask`` (B,) is true, else ``images``."""
    return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), transformed, images)


def flip(images, seed_generator):
    """A random element of the square's symmetry group per sample (square cutouts)."""
    bits = keras.random.uniform((tf.shape(images)[0], 3), seed=seed_generator) < 0.5
    images = _select(bits[:, 0], tf.reverse(images, axis=[2]), images)
    images = _select(bits[:, 1], tf.reverse(images, axis=[1]), images)
    return _select(bits[:, 2], tf.transpose(images, [0, 2, 1, 3]), images)


def translation(images, seed_generator, fraction: float = TRANSLATION_FRACTION):
    """A random shift per sample of up to ``fraction`` of the size in each axis, wrapping round."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    limit = max(1, int(images.shape[1] * fraction))
    shifts = keras.random.randint((batch, 2), -limit, limit + 1, seed=seed_generator)
    rows = tf.math.floormod(tf.range(height)[None, :] + shifts[:, :1], height)
    cols = tf.math.floormod(tf.range(width)[None, :] + shifts[:, 1:], width)
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


# The transform of each name of ``models.config.AUGMENTATIONS`` (which ``parse_augment`` checks).
TRANSFORMS = {"flip": flip, "translation": translation}


def diff_augment(images, policy: tuple[str, ...], seed_generator):
    """``images`` through every transform of ``policy`` in order (an empty policy: unchanged)."""
    for name in policy:
        images = TRANSFORMS[name](images, seed_generator)
    return images
