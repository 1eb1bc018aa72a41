"""The Lupton et al. (2004) asinh colour stretch in TensorFlow ops, so it can run in tf.data and
inside an exported SavedModel. Reference: ``astropy.visualization.make_lupton_rgb`` (float output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LuptonStretch:
    """Lupton asinh stretch of raw flux cutouts to [0, 1] (the paper: Q=15, stretch=0.5, minimum=0).

    Bands are stored blue to red (g, r, i); the stretched channels come out red to blue (i, r, g),
    so that a gri cutout becomes an RGB image with R=i, G=r, B=g as in the paper. Any band count
    works: the intensity is the mean over bands and the band order is reversed in the same way
    (a one-band survey gives a one-channel image, ``asinh`` of the flux).

    Args:
        Q: asinh softening parameter.
        stretch: linear stretch of the flux before the asinh.
        minimum: flux mapped to black (subtracted from every band).

    Example:
        >>> stretched = LuptonStretch()(raw_flux_batch)   # (B, H, W, C) -> (B, H, W, C) in [0, 1]
    """

    Q: float = 15.0
    stretch: float = 0.5
    minimum: float = 0.0

    def __call__(self, images):
        """Stretch a float tensor (..., H, W, C) of raw flux; returns float32 in [0, 1]."""
        import tensorflow as tf

        # The constants follow astropy's LuptonAsinhStretch exactly (frac = 0.1 sets the slope).
        q = 0.1 if abs(self.Q) < 2.0**-23 else min(self.Q, 1e10)
        slope = 0.1 / np.arcsinh(0.1 * q)
        soften = q / float(self.stretch)

        x = tf.convert_to_tensor(images, dtype=tf.float32) - self.minimum
        x = tf.reverse(x, axis=[-1])
        intensity = tf.reduce_mean(x, axis=-1, keepdims=True)
        positive = intensity > 0
        # Divide only where the intensity is positive, so neither values nor gradients turn NaN.
        safe = tf.where(positive, intensity, tf.ones_like(intensity))
        ratio = tf.where(positive, tf.asinh(safe * soften) * slope / safe, tf.zeros_like(safe))
        scaled = tf.maximum(x * ratio, 0.0)
        peak = tf.reduce_max(scaled, axis=-1, keepdims=True)
        return tf.where(peak > 1.0, scaled / tf.maximum(peak, 1.0), scaled)

    def get_config(self) -> dict:
        return {"Q": self.Q, "stretch": self.stretch, "minimum": self.minimum}


def lupton_stretch(images, Q: float = 15.0, stretch: float = 0.5, minimum: float = 0.0):
    """Functional form of :class:`LuptonStretch`."""
    return LuptonStretch(Q=Q, stretch=stretch, minimum=minimum)(images)
