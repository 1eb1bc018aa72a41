"""Helpers shared by the speed benchmarks: timing, the machine's measured peak, graph FLOPs, the
machine's description.

Every script imports this module first (``import _common`` sorts above the third-party imports),
so that the environment below is set before TensorFlow or numba load: TF's C++ log quiet, numba's
compiled kernels cached in the repository's .cache/numba (as the Makefile sets it); a variable
already set wins. TensorFlow itself is imported inside the functions that use it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "numba")
)


def timed(fn, seconds: float, min_runs: int = 2) -> float:
    """Seconds per call, after one warm-up call, over at least ``min_runs`` calls and ``seconds``."""
    fn()
    runs, started = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < seconds:
        fn()
        runs += 1
    return (time.perf_counter() - started) / runs


def timed_against(fn, baseline, seconds: float, pairs: int = 3) -> tuple[float, float]:
    """(seconds per call of ``fn``, its time over ``baseline``'s), each the median over ``pairs``
    turns that time the baseline and then ``fn`` for ``seconds / pairs`` each: a shared or
    throttled machine slows both sides of a turn alike, so the ratio holds where the times do
    not."""
    times, ratios = [], []
    for _ in range(pairs):
        base = timed(baseline, seconds / pairs)
        times.append(timed(fn, seconds / pairs))
        ratios.append(times[-1] / base)
    return sorted(times)[pairs // 2], sorted(ratios)[pairs // 2]


def conv_peak_gflops(seconds: float) -> float:
    """Measured fp32 5x5 convolution throughput (32 x 48 x 48 x 128 -> 128), in GFLOP/s."""
    import tensorflow as tf

    x = tf.random.normal((32, 48, 48, 128))
    w = tf.random.normal((5, 5, 128, 128))
    conv = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    return 2 * 32 * 48 * 48 * 5 * 5 * 128 * 128 / timed(lambda: conv().numpy(), seconds) / 1e9


def graph_flops(concrete_function) -> float:
    """Floating-point operations of a traced graph, counted by TF's profiler (Conv2D and its
    backprops, MatMul, ...). Bodies of while loops are separate functions and are not counted."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    graph = concrete_function.graph
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def machine() -> str:
    """One line naming the machine a figure comes from: CPU model, cores, the vector extensions
    oneDNN uses, whether oneDNN is on, and the TF / Keras versions."""
    import keras
    import tensorflow as tf

    from tfanomaly._tf import cpu_description, onednn_enabled

    cpu = cpu_description()
    isa = f", oneDNN capped at {cpu['onednn_max_isa']}" if cpu["onednn_max_isa"] else ""
    return (
        f"machine: {cpu['model']}, {cpu['cores']} cores, {' '.join(cpu['extensions']) or 'no AVX2'}"
        f"; oneDNN {'on' if onednn_enabled() else 'off'}{isa}; TF {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
