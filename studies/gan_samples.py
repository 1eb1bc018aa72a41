"""Does a CPU preset learn galaxies in minutes? Trains on a simulated survey, writes real | generated
grids side by side, and compares simple image statistics of 1,000 real and 1,000 generated cutouts.

Usage: python studies/gan_samples.py [--preset cpu32] [--steps 1500] [--out studies/out/gan_samples]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import keras
import numpy as np

from tfanomaly.data.dataset import load_dataset
from tfanomaly.data.manifest import MANIFEST
from tfanomaly.models.config import get_preset
from tfanomaly.pipelines.config import GanTrainConfig, IngestConfig
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_gan
from tfanomaly.results.preview import save_png, tile
from tfanomaly.simulate.config import SurveyConfig


def statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of stretched cutouts (channels R=i, G=r, B=g)."""
    brightness = images.mean(axis=-1)
    n, h, w = brightness.shape
    y, x = np.mgrid[:h, :w]
    weights = brightness / brightness.sum(axis=(1, 2), keepdims=True)
    cy = (weights * y).sum(axis=(1, 2), keepdims=True)
    cx = (weights * x).sum(axis=(1, 2), keepdims=True)
    size = np.sqrt((weights * ((y - cy) ** 2 + (x - cx) ** 2)).sum(axis=(1, 2)))
    centre = images[:, h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3]
    return {
        "mean brightness": brightness.mean(axis=(1, 2)),
        "peak brightness": brightness.max(axis=(1, 2)),
        "flux-weighted radius (px)": size,
        "centre colour R-B": (centre[..., 0] - centre[..., 2]).mean(axis=(1, 2)),
        "centroid offset (px)": np.hypot(cy - (h - 1) / 2, cx - (w - 1) / 2).ravel(),
    }


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (max distance between the empirical CDFs)."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="cpu32")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n-objects", type=int, default=6000)
    parser.add_argument("--out", default=str(common.OUT / "gan_samples"))
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    size = get_preset(args.preset).image_size
    survey, data = out / "survey.h5", out / "tfrecords"
    if not survey.exists():
        simulate_survey(
            survey, SurveyConfig(n_objects=args.n_objects, size=size, seed=11), progress=False
        )
    if not (data / MANIFEST).exists():
        ingest(survey, data, IngestConfig(shard_size=1024), progress=False)
    started = time.perf_counter()
    summary = train_gan(
        data,
        out / "run",
        GanTrainConfig(preset=args.preset, steps=args.steps, checkpoint_every=250),
    )
    minutes = (time.perf_counter() - started) / 60
    generator = keras.models.load_model(summary["generator"])
    z = np.random.default_rng(0).normal(size=(1000, generator.input_shape[-1])).astype("f4")
    fake = generator.predict(z, batch_size=250, verbose=0)
    real = np.concatenate([b["image"].numpy() for b in load_dataset(data, 250).take(4)])[:1000]
    grid = tile(np.concatenate([real[:48], fake[:48]]), columns=12)
    save_png(out / "real_vs_generated.png", grid, scale=2)
    print(f"{args.preset}: {summary['steps']} generator steps in {minutes:.1f} min this run")
    print(f"grid (top 4 rows real, bottom 4 generated): {out / 'real_vs_generated.png'}")
    real_stats, fake_stats = statistics(real), statistics(fake)
    print(f"{'statistic':28s} {'real median':>12s} {'generated':>12s} {'KS distance':>12s}")
    for name in real_stats:
        r, f = real_stats[name], fake_stats[name]
        print(f"{name:28s} {np.median(r):12.3f} {np.median(f):12.3f} {ks_distance(r, f):12.3f}")


if __name__ == "__main__":
    main()
