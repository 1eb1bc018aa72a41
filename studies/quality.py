"""Detection quality on real images and on surveys with non-white noise, run as a user would
(`ingest`, `train gan --steps 1000`, `train encoder --steps 600`, `score`, `evaluate`, all defaults):
README "Detection quality on real images" (regenerates its tables).

The sets come from benchmarks/quality_sets.py (real frames with injected artefacts, real colour
images, simulated surveys with survey noise, the white-noise fresh surveys). Every stage's output
lands in --out/<set>/; rerunning reuses what is finished.

  python benchmarks/bench_quality.py --out benchmarks/bench_quality [--sets a,b] [--cache .cache/real]
      [--augment flip,translation] [--contrastive 1]  (GAN training options; use another --out)
About 8 minutes per 32-px set and 25 per 48-px set on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import quality_sets  # noqa: E402
from _common import machine, quiet, stage_timer, user_run  # noqa: E402

from tfanomaly.models.calibration import Calibration  # noqa: E402
from tfanomaly.models.config import parse_augment  # noqa: E402
from tfanomaly.models.score_config import ScoreSettings  # noqa: E402
from tfanomaly.pipelines.calibrate import calibrate  # noqa: E402
from tfanomaly.pipelines.config import IngestConfig, ScoreConfig  # noqa: E402
from tfanomaly.pipelines.evaluate import SCORE_NAMES, evaluate  # noqa: E402
from tfanomaly.pipelines.score import score  # noqa: E402

ORDER = ("real_frames_tune", "sim_noise_tune", "sim_tune48", "real_frames_fresh",
         "real_colour_fresh", "sim_fresh", "sim_noise_fresh", "sim_fresh48", "sim_noise_fresh48")  # fmt: skip
TUNING = ("real_frames_tune", "sim_noise_tune", "sim_tune48")
PRESETS = {32: "cpu32", 48: "cpu48"}


def run_set(name: str, source: Path, out: Path, args, timings: dict) -> dict:
    """ingest -> train gan -> train encoder (+ calibration) -> score -> evaluate, as a user would."""
    folder = out / name
    results = folder / "scores"
    with h5py.File(source) as f:
        size = f["images"].shape[1]

    timed = stage_timer(timings.setdefault(name, {}))
    data, run = user_run(folder, source, stretch=args.stretch, preset=PRESETS[size],
                         gan_steps=args.gan_steps, encoder_steps=args.encoder_steps,
                         timings=timings[name], augment=parse_augment(args.augment),
                         contrastive=args.contrastive)  # fmt: skip
    calibration = run / "calibration.npz"
    stale = Calibration.load(calibration).terms != ScoreSettings().terms
    if stale or name in args.recalibrate.split(","):
        # Trained before the default score changed: calibrate and score again (same networks).
        timed("calibrate", calibrate, run, data, progress=False, echo=quiet)
        shutil.rmtree(results, ignore_errors=True)
    if not (results / "evaluation.json").exists():
        timed("score", score, run, data, results, ScoreConfig(), progress=False, echo=quiet)
        timed("evaluate", evaluate, results, data_dir=data)
    return json.loads((results / "evaluation.json").read_text())


def table(name: str, report: dict) -> list[str]:
    rows = report["table"]
    kinds = [k for k in rows if k != "all"]
    lines = [f"\n{name}: {report['count']} cutouts, {report['n_anomalies']} anomalies"
             + ("  (tuning set)" if name in TUNING else "  (fresh)"),
             f"  {'score':30s} {'AUROC':>6s} {'AP':>6s}  " + " ".join(f"{k[:8]:>8s}" for k in kinds)]  # noqa: E501  # fmt: skip
    for key, m in rows["all"].items():
        per_kind = " ".join(f"{rows[k][key]['auroc']:8.3f}" for k in kinds)
        lines.append(f"  {SCORE_NAMES.get(key, key):30s} {m['auroc']:6.3f} "
                     f"{m['average_precision']:6.3f}  {per_kind}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/bench_quality")
    parser.add_argument("--cache", default=".cache/real")
    parser.add_argument("--sets", default=",".join(ORDER))
    parser.add_argument(
        "--recalibrate", default="", help="sets to calibrate and score again with the same networks"
    )
    parser.add_argument("--stretch", default=IngestConfig.stretch, help="ingest --stretch")
    parser.add_argument("--gan-steps", type=int, default=1000)
    parser.add_argument("--encoder-steps", type=int, default=600)
    parser.add_argument("--augment", default="none", help="train gan --augment (DiffAugment)")
    parser.add_argument("--contrastive", type=float, default=0.0, help="train gan --contrastive")
    args = parser.parse_args()
    print(machine())
    out = Path(args.out)
    wanted = args.sets.split(",")
    if set(wanted) - set(ORDER):
        parser.error(f"--sets: unknown {sorted(set(wanted) - set(ORDER))}; the sets are {ORDER}")
    sources = {**quality_sets.build_real_sets(Path(args.cache), out / "sets", names=wanted),
               **quality_sets.build_simulated_sets(out / "sets", names=wanted)}  # fmt: skip
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    lines = []
    for name in wanted:
        report = run_set(name, sources[name], out, args, timings)
        timings_file.write_text(json.dumps(timings, indent=1))
        lines += table(name, report)
        print("\n".join(table(name, report)), flush=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
