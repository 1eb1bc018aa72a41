"""WGAN-GP training speed on this machine: critic images/s per preset, FLOPs per step counted from
the graph, the fraction of the measured matmul/conv peak, and the effect of tf.function, XLA and
bf16 mixed precision. Prints one line per figure.

Usage: python benchmarks/bench_train.py [--presets cpu32,cpu48,hsc96] [--batch 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os

import _common
import keras
import tensorflow as tf

from tfanomaly._tf import bf16_capped
from tfanomaly.models.config import get_preset
from tfanomaly.models.wgan_gp import WGANGP, paper_optimizer


def peak_gflops(seconds: float) -> dict[str, float]:
    """Measured peaks in this process: fp32 and bf16 matmul 2048^2, fp32 5x5 conv."""
    results = {}
    for dtype in (tf.float32,) if bf16_capped() else (tf.float32, tf.bfloat16):
        a = tf.random.normal((2048, 2048), dtype=tf.float32)
        a = tf.cast(a, dtype)
        matmul = tf.function(lambda a=a: tf.matmul(a, a))
        results[f"matmul {dtype.name}"] = (
            2 * 2048**3 / _common.timed(lambda f=matmul: f().numpy(), seconds) / 1e9
        )
    results["conv5x5 float32"] = _common.conv_peak_gflops(seconds)
    return results


def make_gan(preset: str, batch: int):
    config = get_preset(preset)
    gan = WGANGP.from_preset(config, seed=0)
    gan.compile(d_optimizer=paper_optimizer(), g_optimizer=paper_optimizer())
    data = tf.random.uniform((gan.n_critic * batch, config.image_size, config.image_size, 3))
    return gan, data


def step_flops(gan, data) -> float:
    """Floating-point operations of one train step (5 critic + 1 generator update), counted by
    TF's profiler over the traced graph (Conv2D, its two backprops, MatMul, ...)."""
    spec = tf.TensorSpec(data.shape, data.dtype)
    return _common.graph_flops(tf.function(gan.train_step).get_concrete_function(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", default="cpu32,cpu48,hsc96")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    print(_common.machine())
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores")
    peaks = peak_gflops(args.seconds / 3)
    for name, value in peaks.items():
        print(f"peak {name}: {value:,.0f} GFLOP/s")
    fp32_peak = peaks["conv5x5 float32"]
    for preset in args.presets.split(","):
        keras.mixed_precision.set_global_policy("float32")
        gan, data = make_gan(preset, args.batch)
        images_per_step = gan.n_critic * args.batch
        flops = step_flops(gan, data)
        graph = tf.function(gan.train_step)
        per_step = _common.timed(lambda g=graph, d=data: g(d), args.seconds)
        rate = images_per_step / per_step
        achieved = flops / per_step / 1e9
        print(
            f"{preset} batch {args.batch}: {per_step * 1e3:,.0f} ms/step, {rate:,.0f} critic "
            f"images/s, {flops / 1e9:,.1f} GFLOP/step, {achieved:,.0f} GFLOP/s = "
            f"{achieved / fp32_peak:.0%} of the fp32 conv peak"
        )
        if preset != "hsc96":  # an eager hsc96 step takes minutes on 2 cores
            eager = _common.timed(
                lambda g=gan, d=data: g.train_step(d), args.seconds / 2, min_runs=2
            )
            print(f"{preset} eager train_step (no tf.function): {per_step / eager:.2f}x the speed")
        try:
            xla = tf.function(gan.train_step, jit_compile=True)
            per_step_xla = _common.timed(lambda d=data, f=xla: f(d), args.seconds)
            print(f"{preset} XLA jit_compile: {per_step / per_step_xla:.2f}x the speed")
        except Exception as exc:  # report, don't stop the benchmark
            print(f"{preset} XLA jit_compile: failed ({type(exc).__name__})")
        if bf16_capped():
            print(f"{preset} mixed_bfloat16: skipped (oneDNN capped below its bf16 kernels)")
            continue
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        gan_bf16, data = make_gan(preset, args.batch)
        bf16 = tf.function(gan_bf16.train_step)
        per_step_bf16 = _common.timed(lambda d=data, f=bf16: f(d), args.seconds)
        print(f"{preset} mixed_bfloat16: {per_step / per_step_bf16:.2f}x the speed")
    keras.mixed_precision.set_global_policy("float32")
    x = tf.random.normal((32, 48, 48, 128))
    w = tf.random.normal((5, 5, 128, 128))
    nhwc = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    x_first = tf.transpose(x, (0, 3, 1, 2))
    nchw = tf.function(lambda: tf.nn.conv2d(x_first, w, 1, "SAME", data_format="NCHW"))
    try:
        ratio = _common.timed(lambda: nhwc().numpy(), 3) / _common.timed(lambda: nchw().numpy(), 3)
        print(f"5x5 conv channels-first (NCHW): {ratio:.2f}x the speed of channels-last")
    except Exception as exc:
        print(f"5x5 conv channels-first (NCHW): not supported here ({type(exc).__name__})")


if __name__ == "__main__":
    main()
