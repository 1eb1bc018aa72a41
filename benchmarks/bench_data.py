"""Data path throughput: ingest (cutouts/s, MB/s) and tf.data reads (images/s) against reading the
same HDF5 with h5py in a Python loop. Prints one line per figure.

Usage: python benchmarks/bench_data.py [--n 20000] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common
import h5py
import numpy as np

from tfanomaly.data.dataset import PAPER_STRETCH, load_dataset
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.ingest import ingest


def write_survey(path: Path, n: int, size: int) -> None:
    """Noise + blobs in the paper's layout; content does not matter for throughput."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, size, size, 3), "f4", chunks=(64, size, size, 3))
        for start in range(0, n, 1024):
            stop = min(n, start + 1024)
            images[start:stop] = rng.normal(0, 0.05, (stop - start, size, size, 3))
        f["object_ids"] = np.arange(n, dtype=np.uint64) + np.uint64(2**60)
        f["idxs"] = np.arange(n)
        f["ra"] = rng.uniform(130, 140, n)
        f["dec"] = rng.uniform(-1, 4, n)


def h5py_loop(path: Path, batch_size: int, stretch: LuptonStretch | None) -> float:
    """The baseline: h5py slices (+ the same stretch, batch by batch) in a Python loop."""
    started = time.perf_counter()
    with h5py.File(path) as f:
        images, n = f["images"], len(f["images"])
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size]
            _ = f["object_ids"][start : start + batch_size]
            if stretch is not None:
                stretch(batch).numpy()
    return n / (time.perf_counter() - started)


def tfdata(data_dir: Path, batch_size: int, shuffle: bool, stretch=PAPER_STRETCH) -> float:
    dataset = load_dataset(
        data_dir, batch_size, shuffle=shuffle, seed=0 if shuffle else None, stretch=stretch
    )
    next(iter(dataset))  # build the pipeline once before timing
    started = time.perf_counter()
    n = sum(int(batch["image"].shape[0]) for batch in dataset)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(_common.machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_survey(tmp / "survey.h5", args.n, args.size)
        megabytes = args.n * args.size * args.size * 3 * 4 / 1e6
        started = time.perf_counter()
        ingest(tmp / "survey.h5", tmp / "ds", IngestConfig(shard_size=2048), progress=False)
        seconds = time.perf_counter() - started
        print(
            f"cutouts {args.n} x {args.size}x{args.size}x3 float32 ({megabytes:.0f} MB), "
            f"batch {args.batch}, {os.cpu_count()} CPU cores"
        )
        print(
            f"ingest HDF5 -> TFRecord: {args.n / seconds:,.0f} cutouts/s, "
            f"{megabytes / seconds:,.0f} MB/s"
        )
        h5py_loop(tmp / "survey.h5", args.batch, None)  # warm the page cache and TF
        raw_h5 = h5py_loop(tmp / "survey.h5", args.batch, None)
        raw_tf = tfdata(tmp / "ds", args.batch, shuffle=False, stretch=None)
        print(f"read raw flux, h5py Python loop: {raw_h5:,.0f} images/s")
        print(f"read raw flux, tf.data in order: {raw_tf:,.0f} images/s ({raw_tf / raw_h5:.1f}x)")
        baseline = h5py_loop(tmp / "survey.h5", args.batch, LuptonStretch())
        ordered = tfdata(tmp / "ds", args.batch, shuffle=False)
        shuffled = tfdata(tmp / "ds", args.batch, shuffle=True)
        print(f"read + stretch, h5py Python loop (eager TF stretch): {baseline:,.0f} images/s")
        print(
            f"read + stretch, tf.data in order: {ordered:,.0f} images/s ({ordered / baseline:.1f}x)"
        )
        print(
            f"read + stretch, tf.data shuffled: {shuffled:,.0f} images/s "
            f"({shuffled / baseline:.1f}x)"
        )


if __name__ == "__main__":
    main()
