"""Morphology speed: the parameters (``tfanomaly.models.morphology``) per cutout in a graph, with
their definitions of now and of before (``invariant=False``), the parts that cost most, and the
morphology term's k-NN distance to the reference set; wall time and CPU time on one thread (on
a machine shared with other work, the CPU time is the steadier figure).

Usage: python benchmarks/bench_morphology.py [--batch 256] [--seconds 5] (cutouts of 32x32x3,
the k-NN term against the default's 4500 references: 5000 calibration cutouts less the 10%
trimmed)
"""

from __future__ import annotations

import argparse
import time

import _common
import numpy as np
import tensorflow as tf
from bench_score import synthetic_calibration

from tfanomaly.models import morphology as morph
from tfanomaly.models.noise_score import NoiseAwareScore


def galaxies(batch: int, size: int, bands: int) -> np.ndarray:
    """Noisy exponential discs of random size, centred, in ``bands`` bands."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2.0
    radius = rng.uniform(1.5, 5.0, (batch, 1, 1, 1))
    images = np.exp(-np.hypot(x, y)[None, ..., None] / radius) * np.ones(bands)
    return (images + rng.normal(0, 0.05, (batch, size, size, bands))).astype("f4")


def cpu_timed(fn, seconds: float) -> float:
    """CPU seconds per call (every thread of the process), after one warm-up call."""
    fn()
    runs, started, wall = 0, time.process_time(), time.perf_counter()
    while runs < 3 or time.perf_counter() - wall < seconds:
        fn()
        runs += 1
    return (time.process_time() - started) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print(_common.machine())
    size, bands = 32, 3
    images = galaxies(args.batch, size, bands)
    light = tf.reduce_sum(images, axis=-1)
    boxcar = tf.nn.avg_pool2d(light[..., None], 3, 1, "SAME")[..., 0]
    noise = tf.norm(morph.stamp_noise(images), axis=1)
    # The default score's numbers of the right shapes (cpu32: 32 px, 3 bands, 4500 references).
    scorer = NoiseAwareScore(synthetic_calibration("cpu32"))
    parameters = morph.morphology(images)
    # The inputs as arguments: captured as constants, the graph would fold them away.
    cases = {
        "morphology (now)": (tf.function(morph.morphology), images),
        "morphology (invariant=False)": (
            tf.function(lambda a: morph.morphology(a, invariant=False)),
            images,
        ),
        "  stamp noise (now)": (tf.function(morph.stamp_noise), images),
        "  stamp noise (invariant=False)": (
            tf.function(lambda a: morph.stamp_noise(a, invariant=False)),
            images,
        ),
        "  shape asymmetry's mask": (
            tf.function(lambda a: morph._shape_mask(a, noise, size)),
            boxcar,
        ),
        "k-NN term": (
            tf.function(lambda a, p: scorer.morphology_score(a, p)),
            (images, parameters),
        ),
    }
    print(f"{args.batch} cutouts of {size}x{size}x{bands}, one thread")
    for name, (fn, data) in cases.items():
        inputs = data if isinstance(data, tuple) else (data,)
        call = lambda fn=fn, inputs=inputs: np.asarray(fn(*inputs))  # noqa: E731
        seconds, wall = cpu_timed(call, args.seconds), _common.timed(call, args.seconds)
        print(
            f"{name:32s} CPU {seconds / args.batch * 1e6:6.0f} us/cutout, "
            f"wall {wall / args.batch * 1e6:6.0f} us/cutout"
        )


if __name__ == "__main__":
    main()
