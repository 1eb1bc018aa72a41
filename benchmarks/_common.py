"""Helpers shared by the benchmark scripts: timing, the machine's measured peak, graph FLOPs."""

from __future__ import annotations

import time

import tensorflow as tf
from tensorflow.python.profiler import model_analyzer, option_builder


def timed(fn, seconds: float, min_runs: int = 2) -> float:
    """Seconds per call, after one warm-up call, over at least ``min_runs`` calls and ``seconds``."""
    fn()
    runs, started = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - started) / runs


def conv_peak_gflops(seconds: float) -> float:
    """Measured fp32 5x5 convolution throughput (32 x 48 x 48 x 128 -> 128), in GFLOP/s."""
    x = tf.random.normal((32, 48, 48, 128))
    w = tf.random.normal((5, 5, 128, 128))
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    return 2 * 32 * 48 * 48 * 5 * 5 * 128 * 128 / timed(lambda: conv().numpy(), seconds) / 1e9


def graph_flops(concrete_function) -> float:
    """Floating-point operations of a traced graph, counted by TF's profiler (Conv2D and its
    backprops, MatMul, ...). Bodies of while loops are separate functions and are not counted."""
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = concrete_function.graph
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def machine() -> str:
    """One line naming the machine a figure comes from: CPU model, cores, the vector extensions
    oneDNN uses, whether oneDNN is on, and the TF / Keras versions."""
    import keras

    from tfanomaly._tf import cpu_description, onednn_enabled

    cpu = cpu_description()
    isa = f", oneDNN capped at {cpu['onednn_max_isa']}" if cpu["onednn_max_isa"] else ""
    return (
        f"machine: {cpu['model']}, {cpu['cores']} cores, {' '.join(cpu['extensions']) or 'no AVX2'}"
        f"; oneDNN {'on' if onednn_enabled() else 'off'}{isa}; TF {tf.__version__}, "
        f"Keras {keras.__version__}"
    )


def quiet(*_) -> None:
    """An ``echo`` that prints nothing (the pipelines' progress lines)."""


def stage_timer(timings: dict):
    """``timed(key, function, *args, **kwargs)``: call it and record its seconds in ``timings``."""

    def timed_stage(key: str, function, *args, **kwargs):
        start = time.perf_counter()
        value = function(*args, **kwargs)
        timings[key] = round(time.perf_counter() - start, 1)
        return value

    return timed_stage


def user_run(folder, source, *, stretch: str, preset: str, gan_steps: int, encoder_steps: int,
             timings: dict, seed: int = 1, **gan_options):  # fmt: skip
    """What a user runs before scoring, each stage skipped when its output exists: ``ingest
    SOURCE --stretch``, ``train gan --preset --steps`` (``gan_options``: more GanTrainConfig
    fields), ``train encoder --steps`` (which calibrates). Returns (data folder, run folder);
    each stage's seconds go into ``timings``."""
    from pathlib import Path

    from tfanomaly.data.manifest import MANIFEST
    from tfanomaly.pipelines.config import EncoderTrainConfig, GanTrainConfig, IngestConfig
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.train import train_encoder, train_gan

    timed_stage = stage_timer(timings)
    data, run = Path(folder) / "tfrecords", Path(folder) / "run"
    if not (data / MANIFEST).exists():
        timed_stage("ingest", ingest, source, data,
                    IngestConfig(shard_size=1024, stretch=stretch), progress=False)  # fmt: skip
    if not (run / "generator.keras").exists():
        config = GanTrainConfig(preset=preset, steps=gan_steps, seed=seed, **gan_options)
        timed_stage("train gan", train_gan, data, run, config, progress=False, echo=quiet)
    if not (run / "calibration.npz").exists():
        timed_stage("train encoder + calibrate", train_encoder, run,
                    EncoderTrainConfig(steps=encoder_steps, seed=seed), data_dir=data,
                    progress=False, echo=quiet)  # fmt: skip
    return data, run
