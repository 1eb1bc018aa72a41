"""Batch scoring on Apache Beam against in-process scoring: cutouts/s of the DirectRunner with 1 and
2 workers and of `tfanomaly score` on the same export and 10^4 cutouts (cpu32, 32 px; the
overhead as a ratio; the inference batch bound swept), peak memory at 10^4 and 10^5 cutouts
(tiny16, 16 px, so that 10^5 fit the time), and FLOPs per hsc96 image for README's 10^8 plan.

Usage: python benchmarks/bench_beam.py [--out bench_beam] [--small 10000] [--large 100000]
Every measurement runs in a fresh process; networks trained for two steps (scoring costs the
same whatever the weights), encoder only (the default); peak memory is VmHWM of the process and
of each Beam worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common
import numpy as np


def quiet(*_):
    pass


def prepare(folder: Path, preset: str, size: int, sizes: dict[str, int]) -> None:
    """A simulated ``size``-px survey of ``sizes["small"]`` cutouts, the same cutouts tiled with
    new ids to the other sizes, all ingested (2,000 cutouts per shard); a ``preset`` run trained
    two steps (scoring costs the same whatever the weights), scored (the sigma reference) and
    exported."""
    import h5py

    from tfanomaly.pipelines.config import (
        EncoderTrainConfig,
        GanTrainConfig,
        IngestConfig,
        ScoreConfig,
    )
    from tfanomaly.pipelines.export import export
    from tfanomaly.pipelines.ingest import ingest
    from tfanomaly.pipelines.score import score
    from tfanomaly.pipelines.simulate import simulate_survey
    from tfanomaly.pipelines.train import train_encoder, train_gan
    from tfanomaly.simulate.config import SurveyConfig

    folder.mkdir(parents=True, exist_ok=True)
    small = sizes["small"]
    simulate_survey(
        folder / "small.h5",
        SurveyConfig(n_objects=small, size=size, seed=5),
        workers=2,
        progress=False,
    )
    for name, count in sizes.items():
        if name != "small":
            with h5py.File(folder / "small.h5") as f, h5py.File(folder / f"{name}.h5", "w") as g:
                images = f["images"][:]
                tiled = g.create_dataset("images", (count, *images.shape[1:]), images.dtype)
                for start in range(0, count, small):  # block by block: memory stays flat
                    tiled[start : start + small] = images[: count - start]
                g["object_ids"] = np.arange(count, dtype=np.uint64) + np.uint64(2**60)
                g["idxs"] = np.arange(count, dtype=np.int64)
                g["ra"] = np.linspace(130, 140, count)
                g["dec"] = np.linspace(-1, 4, count)
        ingest(folder / f"{name}.h5", folder / name, IngestConfig(shard_size=2000), progress=False)
    train_gan(
        folder / "small",
        folder / "run",
        GanTrainConfig(preset=preset, steps=2, batch_size=8, checkpoint_every=2),
        progress=False,
        echo=quiet,
    )
    train_encoder(
        folder / "run",
        EncoderTrainConfig(steps=2, batch_size=8, checkpoint_every=2),
        progress=False,
        echo=quiet,
    )
    score(
        folder / "run",
        folder / "small",
        folder / "reference",
        ScoreConfig(),
        progress=False,
        echo=quiet,
    )
    export(folder / "run", folder / "models", scores_dir=folder / "reference")


class PeakMemory:
    """Peak resident memory (VmHWM) of this process and of each process it starts (Beam's
    workers), sampled by a thread: ru_maxrss would carry over the parent's across fork and exec."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.workers: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    @staticmethod
    def _hwm(pid) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _descendants(self) -> list[int]:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        found, frontier = [], [os.getpid()]
        while frontier:
            pid = frontier.pop()
            children = [c for c, p in parents.items() if p == pid]
            found += children
            frontier += children
        return found

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for pid in self._descendants():
                self.workers[pid] = max(self.workers.get(pid, 0.0), self._hwm(pid))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        workers = [v for v in self.workers.values() if v > 50]  # not the short-lived helpers
        return {"rss_mb": self._hwm("self"), "workers_mb": sorted(workers)}


def measure(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    folder = Path(args.out) / args.preset
    data = folder / args.data
    out = folder / f"out-{args.engine}-{args.data}-{args.workers}-{args.max_batch}"
    memory = PeakMemory()
    started = time.perf_counter()
    if args.engine == "score":
        from tfanomaly.pipelines.config import ScoreConfig
        from tfanomaly.pipelines.score import score

        written = score(folder / "run", data, out, ScoreConfig(), progress=False, echo=quiet)
    else:
        from tfanomaly.pipelines.beam_score import BeamScoreConfig, beam_score

        options = [f"--direct_num_workers={args.workers}"]
        if args.workers > 1:
            options.append("--direct_running_mode=multi_processing")
        config = BeamScoreConfig(
            max_batch_size=args.max_batch, min_batch_size=min(16, args.max_batch)
        )
        written = beam_score(
            folder / "models", data, out, config, pipeline_args=options, echo=quiet
        )
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "count": written["count"],
                "wall": wall,
                "scoring": written["seconds"],
                **memory.stop(),
            }
        )
    )


def run_child(
    args, preset: str, engine: str, data: str, workers: int = 1, max_batch: int = 128
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--out",
        args.out,
        "--measure",
        "--preset",
        preset,
        "--engine",
        engine,
        "--data",
        data,
        "--workers",
        str(workers),
        "--max-batch",
        str(max_batch),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def hsc96_flops() -> tuple[float, float]:
    """MFLOP per hsc96 image, encoder only and with the paper's 10 inversion steps, counted by
    TF's profiler as in bench_score.py (with the default score)."""
    import tensorflow as tf
    from bench_score import flops_per_call, gradient_flops, inverter_for

    from tfanomaly.models.config import get_preset

    config = get_preset("hsc96")
    images = tf.zeros((1, config.image_size, config.image_size, config.channels))
    encoder_only = flops_per_call(inverter_for("hsc96", 0, default_score=True), images)
    inverter = inverter_for("hsc96", 10, default_score=True)
    ten_steps = flops_per_call(inverter, images) + 10 * gradient_flops(inverter, images)
    return encoder_only / 1e6, ten_steps / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench_beam")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="cpu32", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="beam", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="small", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {"cpu32": {"small": args.small}, "tiny16": {"small": args.small, "large": args.large}}
    if args.measure:
        measure(args)
        return
    if args.prepare:
        preset = args.preset
        prepare(Path(args.out) / preset, preset, 32 if preset == "cpu32" else 16, sizes[preset])
        return
    print(_common.machine())
    print("figures measured while other work shared the machine's 2 cores: trust the ratios")
    started = time.perf_counter()
    reused = True
    for preset in sizes:  # in a child, which keeps this process small
        if not (Path(args.out) / preset / "models").exists():
            reused = False
            command = [
                sys.executable,
                __file__,
                "--out",
                args.out,
                "--prepare",
                "--preset",
                preset,
                "--small",
                str(args.small),
                "--large",
                str(args.large),
            ]
            subprocess.run(command, check=True, capture_output=True)
    how = f"reused from {args.out}" if reused else f"{time.perf_counter() - started:.0f} s"
    print(
        f"data: {args.small:,} 32-px cutouts (cpu32 export); {args.small:,} and "
        f"{args.large:,} 16-px cutouts (tiny16 export); 2,000 cutouts per shard ({how})"
    )

    def row(label, result, base=None):
        rate = result["count"] / result["wall"]
        ratio = f", {base / rate:.2f}x the in-process time" if base else ""
        workers = result["workers_mb"]
        shown = f", workers {' + '.join(f'{w:,.0f}' for w in workers)} MB" if workers else ""
        print(
            f"{label:<38s} {result['count']:>7,} {rate:7,.0f} cutouts/s end to end "
            f"({result['count'] / result['scoring']:,.0f}/s in the pipeline){ratio}; peak RSS "
            f"{result['rss_mb']:,.0f} MB{shown}"
        )
        return rate

    print("speed: cpu32 export, 10^4 32-px cutouts, encoder only")
    base = row("score in process", run_child(args, "cpu32", "score", "small"))
    for max_batch in (128, 32, 512):
        row(
            f"beam DirectRunner, 1 worker, batch <={max_batch}",
            run_child(args, "cpu32", "beam", "small", 1, max_batch),
            base,
        )
    row("beam DirectRunner, 2 workers", run_child(args, "cpu32", "beam", "small", 2), base)
    print("memory: tiny16 export, 16-px cutouts")
    for data in ("small", "large"):
        base = row(f"score in process ({data})", run_child(args, "tiny16", "score", data))
        for workers in (1, 2):
            row(
                f"beam DirectRunner, {workers} worker(s) ({data})",
                run_child(args, "tiny16", "beam", data, workers),
                base,
            )
    encoder_only, ten_steps = hsc96_flops()
    print(
        f"hsc96 FLOPs per image (TF profiler, default score): {encoder_only:,.0f} MFLOP encoder "
        f"only, {ten_steps:,.0f} MFLOP with 10 inversion steps"
    )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
