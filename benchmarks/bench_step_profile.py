"""Where a WGAN-GP train step's time goes on this CPU: oneDNN's own timing of every primitive it
executes (ONEDNN_VERBOSE=profile_exec), summed by primitive kind and kernel (e.g. brgconv on
avx512_core vs jit on avx2), against the step's wall time; the rest is TF's own (Eigen) kernels
and the runtime. Run it natively and with ONEDNN_MAX_CPU_ISA=AVX2 to see what changes on an AVX2
machine. Also the step time at other intra-op thread counts and batch sizes.

Usage: python benchmarks/bench_step_profile.py [--preset cpu32] [--steps 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time

import _common

MARK = "=== tfanomaly profile"


def child(preset: str, steps: int, batch: int, threads: int, inter: int) -> None:
    """Runs in a subprocess (with ONEDNN_VERBOSE set for the profile): warm up, then time
    ``steps`` steps; ``threads``/``inter``: TF's intra-/inter-op thread pools (0: TF's choice)."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from bench_train import make_gan

    gan, data = make_gan(preset, batch)
    step = tf.function(gan.train_step)
    for _ in range(3):
        step(data)
    sys.stdout.flush()
    print(f"{MARK} start", flush=True)
    started = time.perf_counter()
    for _ in range(steps):
        step(data)
    seconds = (time.perf_counter() - started) / steps
    sys.stdout.flush()
    print(f"{MARK} end {seconds:.6f}", flush=True)


def profile(
    preset: str, steps: int, batch: int, threads: int, verbose: bool, inter: int = 0
) -> tuple[float, dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if verbose:
        env["ONEDNN_VERBOSE"] = "profile_exec"
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--preset",
            preset,
            "--steps",
            str(steps),
            "--batch",
            str(batch),
            "--threads",
            str(threads),
            "--inter",
            str(inter),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inside, per_step, times = False, 0.0, collections.Counter()
    for line in out.splitlines():
        if line.startswith(MARK):
            inside = line.endswith("start")
            if not inside:
                per_step = float(line.split()[-1])
            continue
        if inside and line.startswith("onednn_verbose") and ",exec," in line:
            fields = line.split(",")
            # onednn_verbose,v1,primitive,exec,cpu,<kind>,<impl>,<prop>,...,<ms>
            kind, impl = fields[5], fields[6]
            times[(kind, impl)] += float(fields[-1]) / 1e3 / steps
    return per_step, dict(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="cpu32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--inter", type=int, default=0)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.preset, args.steps, args.batch, args.threads, args.inter)
        return
    print(_common.machine())
    per_step, times = profile(args.preset, args.steps, args.batch, 0, verbose=True)
    plain, _ = profile(args.preset, args.steps, args.batch, 0, verbose=False)
    busy = sum(times.values())
    # TF runs independent ops side by side (inter-op pool), so busy time can exceed wall time.
    print(
        f"{args.preset} batch {args.batch}: {plain * 1e3:,.0f} ms/step "
        f"({per_step * 1e3:,.0f} with oneDNN's timing on); oneDNN primitives busy "
        f"{busy * 1e3:,.0f} ms, summed over the ops that run concurrently "
        f"({busy / per_step:.2f}x the wall time)"
    )
    for (kind, impl), seconds in sorted(times.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {kind:<14} {impl:<28} {seconds * 1e3:8.1f} ms  {seconds / busy:5.1%} of busy")
    for threads, inter in ((1, 1), (2, 1), (1, 2), (2, 2)):
        t, _ = profile(args.preset, args.steps, args.batch, threads, False, inter)
        print(f"{args.preset} intra-op {threads}, inter-op {inter} threads: {t * 1e3:,.0f} ms/step")
    for batch in (64, 128):
        t, _ = profile(args.preset, args.steps, batch, 0, verbose=False)
        print(
            f"{args.preset} batch {batch}: {t * 1e3:,.0f} ms/step = "
            f"{t / batch * 32 * 1e3:,.0f} ms per 32 images"
        )


if __name__ == "__main__":
    main()
