"""Speed of the simulated survey: stamps per second at 32, 48 and 96 px, one process and all CPUs.

Run: ``python benchmarks/bench_simulate.py [--quick]`` (about a minute; --quick: a few seconds).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _common

from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.simulate.config import SurveyConfig
from tfanomaly.simulate.stamps import simulate_stamps

# Objects per size, chosen so each measurement takes a few seconds on one core.
N_OBJECTS = {32: 3000, 48: 2000, 96: 600}


def bench(size: int, n_objects: int, workers: int, directory: Path) -> float:
    """Stamps per second writing a survey of ``n_objects`` cutouts (pool start-up included)."""
    config = SurveyConfig(n_objects=n_objects, size=size, anomaly_fraction=0.02, seed=1)
    summary = simulate_survey(directory / f"bench_{size}_{workers}.h5", config, workers, False)
    return summary["stamps_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the objects")
    args = parser.parse_args()
    print(_common.machine())
    cpus = os.cpu_count() or 1
    # Warm the per-process tables (GalSim transforms) so the first size is not penalised.
    simulate_stamps(SurveyConfig(n_objects=1, size=32), 0, 1)
    print(f"{'size':>5} {'objects':>8} {'1 process':>12} {f'{cpus} workers':>12}  (stamps/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for size, n_objects in N_OBJECTS.items():
            n = max(50, n_objects // 10) if args.quick else n_objects
            single = bench(size, n, 1, Path(tmp))
            parallel = bench(size, n, cpus, Path(tmp)) if cpus > 1 else single
            print(f"{size:>5} {n:>8} {single:>12.0f} {parallel:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
