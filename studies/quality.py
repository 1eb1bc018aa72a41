"""Detection quality on real images and on surveys with non-white noise, run as a user would
(`ingest`, `train gan --steps 1000`, `train encoder --steps 600`, `score`, `evaluate`, all defaults):
the tables of docs/results/detection.md "The default against the baselines" and "Per kind".

The sets and the stages come from common.py (``study_sets``: real frames with injected artefacts,
real colour images, simulated surveys with survey noise, the white-noise fresh surveys;
``run_set``: the user's stages). The real sets need `make real-images` once. Every stage's output
lands in --out/<set>/; rerunning reuses what is finished.

  python studies/quality.py [--out studies/out/quality] [--sets a,b] [--cache .cache/real]
      [--augment flip,translation] [--contrastive 1]  (GAN training options; use another --out)
About 8 minutes per 32-px set and 25 per 48-px set on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common

from tfanomaly.models.config import parse_augment
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.evaluate import SCORE_NAMES


def table(name: str, report: dict) -> list[str]:
    rows = report["table"]
    kinds = [k for k in rows if k != "all"]
    lines = [
        f"\n{name}: {report['count']} cutouts, {report['n_anomalies']} anomalies"
        + ("  (tuning set)" if name in common.TUNING else "  (fresh)"),
        f"  {'score':30s} {'AUROC':>6s} {'AP':>6s}  " + " ".join(f"{k[:8]:>8s}" for k in kinds),
    ]
    for key, m in rows["all"].items():
        per_kind = " ".join(f"{rows[k][key]['auroc']:8.3f}" for k in kinds)
        lines.append(
            f"  {SCORE_NAMES.get(key, key):30s} {m['auroc']:6.3f} "
            f"{m['average_precision']:6.3f}  {per_kind}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.QUALITY))
    parser.add_argument("--cache", default=str(common.REAL_CACHE))
    parser.add_argument("--sets", default=",".join(common.ORDER))
    parser.add_argument(
        "--recalibrate", default="", help="sets to calibrate and score again with the same networks"
    )
    parser.add_argument("--stretch", default=IngestConfig.stretch, help="ingest --stretch")
    parser.add_argument("--gan-steps", type=int, default=1000)
    parser.add_argument("--encoder-steps", type=int, default=600)
    parser.add_argument("--augment", default="none", help="train gan --augment (DiffAugment)")
    parser.add_argument("--contrastive", type=float, default=0.0, help="train gan --contrastive")
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    wanted = args.sets.split(",")
    unknown = set(wanted) - set(common.ORDER)
    if unknown:
        parser.error(f"--sets: unknown {sorted(unknown)}; the sets are {common.ORDER}")
    sources = common.study_sets(wanted, out / "sets", Path(args.cache))
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    lines = []
    for name in wanted:
        report = common.run_set(
            name,
            sources[name],
            out,
            timings,
            stretch=args.stretch,
            gan_steps=args.gan_steps,
            encoder_steps=args.encoder_steps,
            recalibrate=name in args.recalibrate.split(","),
            augment=parse_augment(args.augment),
            contrastive=args.contrastive,
        )
        timings_file.write_text(json.dumps(timings, indent=1))
        lines += table(name, report)
        print("\n".join(table(name, report)), flush=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
