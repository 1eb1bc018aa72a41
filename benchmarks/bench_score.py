"""Scoring speed and memory: images/s of the in-graph inversion (10 steps) and of encoder-only
scoring per preset, with and without the default score, FLOPs per image and the fraction of the
measured peak, the same inversion written the naive way (eager loop, Keras Adam on a
tf.Variable), and peak memory while scoring data sets 10x and 40x larger than the batch.

Usage: python benchmarks/bench_score.py [--presets cpu32,cpu48,hsc96] [--seconds 10]
       python benchmarks/bench_score.py --presets cpu32 --default-only --seconds 60 --pairs 12
(the default score's ratio alone, timed in more turns: its run-to-run spread is +-0.1 in three)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import _common
import keras
import numpy as np
import tensorflow as tf

from tfanomaly.models.calibration import (
    Calibration,
    FeatureGaussian,
    KnnReference,
    LinearModel,
    ResidualTerm,
    Standardisation,
)
from tfanomaly.models.config import get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.morphology import feature_names, term_columns
from tfanomaly.models.residual_shape import feature_names as shape_names
from tfanomaly.models.score_config import InversionConfig, ScoreSettings


def synthetic_calibration(preset: str, settings: ScoreSettings | None = None) -> Calibration:
    """A calibration of the right shapes (the default score costs the same whatever its numbers);
    the linear (and extended), morphology and residual-shape parts only where ``settings.terms``
    has them."""
    config, settings = get_preset(preset), settings or ScoreSettings()
    dims, rng = config.feature_size, np.random.default_rng(0)
    axes = np.linalg.qr(rng.normal(size=(dims, settings.n_components)))[0].T
    edges = np.tile(np.linspace(0, 1, settings.n_bins - 1, dtype="f4"), (config.channels, 1))
    variances = np.ones((config.channels, settings.n_bins), "f4")
    pixels = config.image_size**2 * config.channels
    # The columns the term reads (``--morphology-parameters``) of the parameters computed.
    channels = config.channels
    n_morph = len(term_columns(settings.morphology_parameters, len(feature_names(channels))))
    residuals = {"residual": ResidualTerm.fitted(settings, "residual", edges, variances)}
    parts = {}
    if "linear" in settings.terms or "extended" in settings.terms:
        count = settings.linear_components_for(config.image_size, config.image_size)
        basis = np.linalg.qr(rng.normal(size=(pixels, count)))[0]
        parts["linear"] = LinearModel(np.zeros(pixels, "f4"), basis.T.astype("f4"))
        for term in ("linear", "extended"):
            residuals[term] = ResidualTerm.fitted(settings, term, edges, variances)
    # A calibration set of reference_size distinct cutouts, less the trimmed ones.
    count = round(settings.reference_size * (1.0 - settings.reference_trim))
    for term, width in (("morphology", n_morph), ("residual_shape", len(shape_names(channels)))):
        if term in settings.terms:
            reference = rng.normal(size=(count, width)).astype("f4")
            parts[term] = KnnReference(np.zeros(width, "f4"), np.ones(width, "f4"), reference)
    features = FeatureGaussian(
        np.zeros(dims, "f4"), axes.astype("f4"), np.ones(settings.n_components, "f4"), 1.0
    )
    standard = Standardisation.neutral(len(settings.terms))
    return Calibration(settings, residuals, features, standard, info={}, **parts)


def inverter_for(
    preset: str, steps: int, default_score: bool = False, settings: ScoreSettings | None = None
) -> LatentInverter:
    config = get_preset(preset)
    keras.utils.set_random_seed(0)
    settings = settings or ScoreSettings()
    calibration = synthetic_calibration(preset, settings) if default_score else None
    return LatentInverter(
        Generator(config),
        Critic(config),
        Encoder(config),
        InversionConfig(steps=steps),
        calibration,
    )


def flops_per_call(inverter: LatentInverter, images) -> float:
    """FLOPs of one call as the profiler sees it (the while_loop's body is not included)."""
    spec = tf.TensorSpec(images.shape, tf.float32)
    return _common.graph_flops(inverter.__call__.get_concrete_function(spec))


def gradient_flops(inverter: LatentInverter, images) -> float:
    """FLOPs of one gradient of the inversion objective with respect to z (one Adam step),
    without the critic features of the images, which a call computes once for all steps."""

    def gradient(images, z):
        features = inverter.critic(images)[1]
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_sum(inverter.objective(images, features, z)[0])
        return tape.gradient(loss, z)

    image_spec = tf.TensorSpec(images.shape, tf.float32)
    z_spec = tf.TensorSpec((images.shape[0], inverter.generator.input_shape[-1]), tf.float32)
    total = _common.graph_flops(tf.function(gradient).get_concrete_function(image_spec, z_spec))
    features = tf.function(lambda x: inverter.critic(x)[1]).get_concrete_function(image_spec)
    return total - _common.graph_flops(features)


def naive_inversion(inverter: LatentInverter, images, steps: int) -> None:
    """What one writes first: eager loop, a tf.Variable z and a Keras Adam optimizer."""
    c = inverter.config
    features = inverter.critic(images)[1]
    z = tf.Variable(inverter.encoder(images))
    optimizer = keras.optimizers.Adam(c.learning_rate, beta_1=c.beta_1, beta_2=c.beta_2)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(inverter.objective(images, features, z)[0])
        optimizer.apply_gradients([(tape.gradient(loss, z), z)])
    inverter.objective(images, features, z)


def peak_rss_scoring(n_objects: int, batch: int) -> tuple[float, float]:
    """Peak resident memory (MB) of a fresh process before and after scoring a survey of
    ``n_objects`` 32-px cutouts (cpu32, batch ``batch``, image cubes stored)."""
    script = f"""
import os, resource, tempfile
from pathlib import Path
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.simulate.config import SurveyConfig
from tfanomaly.pipelines.config import EncoderTrainConfig, GanTrainConfig, IngestConfig, ScoreConfig
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.train import train_gan, train_encoder
from tfanomaly.pipelines.score import score
from tfanomaly.models.score_config import InversionConfig
tmp = Path(tempfile.mkdtemp())
simulate_survey(tmp / "s.h5", SurveyConfig(n_objects={n_objects}, size=32), progress=False)
ingest(tmp / "s.h5", tmp / "ds", IngestConfig(shard_size=512), progress=False)
q = lambda *a: None
# One step each (the memory of scoring does not depend on training): no collapse check.
train_gan(tmp / "ds", tmp / "run", GanTrainConfig(preset="cpu32", steps=1, checkpoint_every=1,
          batch_size=8, check=False), progress=False, echo=q)
train_encoder(tmp / "run", EncoderTrainConfig(steps=1, checkpoint_every=1, batch_size=8,
              check=False), progress=False, echo=q)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
score(tmp / "run", tmp / "ds", tmp / "out", ScoreConfig(batch_size={batch}, part_batches=2,
      store_images=True, inversion=InversionConfig(steps=10)), progress=False, echo=q)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before / 1024, after / 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after = (float(v) for v in out.stdout.split()[-2:])
    return before, after


def bench_preset(
    preset: str, seconds: float, peak: float, default_only: bool = False, pairs: int = 3
) -> None:
    size = get_preset(preset).image_size
    batch = 32 if preset == "hsc96" else 128
    images = tf.random.uniform((batch, size, size, 3))
    for steps in () if default_only else (10, 0):
        inverter = inverter_for(preset, steps)
        per_call = _common.timed(lambda inv=inverter: inv(images)["anomaly_score"].numpy(), seconds)
        # The profiler does not look inside the while_loop's body function: add one gradient
        # evaluation of the objective (an Adam step's cost) per step.
        flops = (
            flops_per_call(inverter, images) + steps * gradient_flops(inverter, images)
        ) / batch
        rate = batch / per_call
        label = f"{steps}-step inversion" if steps else "encoder only"
        print(
            f"{preset} {label:>17s}: {rate:8,.0f} images/s (batch {batch}), "
            f"{flops / 1e6:8,.1f} MFLOP/image, {rate * flops / 1e9 / peak:.0%} of peak"
        )
    # The default score on top of encoder-only scoring: smoothing, binned chi^2, top-k, one matmul.
    paper_only = inverter_for(preset, 0)
    plain = lambda: paper_only(images)["anomaly_score"].numpy()  # noqa: E731
    default = ScoreSettings()
    variants = [
        ScoreSettings(terms=terms)
        for terms in (
            ("residual", "feature"),
            ("residual", "feature", "linear"),
            ("residual", "feature", "morphology"),
            ("feature", "linear", "morphology"),
        )
    ]
    # The morphology reference as calibrations made it before the trim: 2000 cutouts, untrimmed.
    before_trim = ScoreSettings(reference_size=2000, reference_trim=0.0)
    variants += [ScoreSettings(robust_iterations=0), before_trim, default]
    for settings in [default] if default_only else variants:
        noise_aware = inverter_for(preset, 0, default_score=True, settings=settings)
        with_score, ratio = _common.timed_against(
            lambda inv=noise_aware: inv(images, images)["score"].numpy(), plain, seconds, pairs
        )
        label = "+".join(settings.terms)
        if settings == default:
            label = "default score"
        elif settings == before_trim:
            label = "default, 2000 references untrimmed"
        elif settings.terms == default.terms:
            label = "default, least-squares linear"
        print(
            f"{preset} encoder only + {label}: {batch / with_score:8,.0f} images/s "
            f"({ratio:.2f}x the time of encoder-only paper scores, the median of {pairs} turns)"
        )
    if preset == "cpu32" and not default_only:
        inverter = inverter_for(preset, 10)
        graph = _common.timed(lambda: inverter(images)["z"].numpy(), seconds)
        eager = _common.timed(lambda: naive_inversion(inverter, images, 10), seconds, min_runs=1)
        print(
            f"{preset} naive eager inversion (Keras Adam on a tf.Variable): "
            f"{graph / eager:.2f}x the speed of the in-graph one"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="cpu32,cpu48,hsc96")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--default-only",
        action="store_true",
        help="time the default score against encoder-only scoring alone (no variants, "
        "inversion, eager comparison or memory)",
    )
    parser.add_argument("--pairs", type=int, default=3, help="turns of the timed ratios")
    args = parser.parse_args()
    print(_common.machine())
    peak = _common.conv_peak_gflops(args.seconds / 2)
    print(
        f"TF {tf.__version__}, {os.cpu_count()} CPU cores; fp32 5x5 conv peak {peak:,.0f} GFLOP/s"
    )
    for preset in filter(None, args.presets.split(",")):  # --presets "" measures memory only
        bench_preset(preset, args.seconds, peak, args.default_only, args.pairs)
    if args.default_only:
        return
    batch = 128
    for factor in (10, 40):
        before, after = peak_rss_scoring(factor * batch, batch)
        cubes = factor * batch * 32 * 32 * 3 * 4 * 3 / 1e6
        print(
            f"peak RSS scoring {factor * batch} 32-px cutouts (batch {batch}, {cubes:,.0f} MB of "
            f"image cubes stored): {after:,.0f} MB (before scoring: {before:,.0f} MB)"
        )


if __name__ == "__main__":
    main()
