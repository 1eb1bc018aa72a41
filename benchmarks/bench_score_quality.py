"""Detection quality of the paper's scores against the number of inversion steps: the evaluate
table (AUROC, average precision, precision@k) for encoder-only (0 steps) and 3, 10, 30 Adam steps
from E(x), with the isolation-forest baseline, on a simulated survey.

Trains cpu32 (GAN + encoder, ~8 minutes) unless --run names a finished run.
Usage: python benchmarks/bench_score_quality.py [--out bench_quality] [--run RUN] [--seed 21]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfanomaly.models.inverter import InversionConfig  # noqa: E402
from tfanomaly.pipelines.evaluate import SCORE_NAMES, evaluate  # noqa: E402
from tfanomaly.pipelines.ingest import MANIFEST, IngestConfig, ingest  # noqa: E402
from tfanomaly.pipelines.score import ScoreConfig, score  # noqa: E402
from tfanomaly.pipelines.simulate import SurveyConfig, simulate_survey  # noqa: E402
from tfanomaly.pipelines.train import (  # noqa: E402
    EncoderTrainConfig,
    GanTrainConfig,
    train_encoder,
    train_gan,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench_quality")
    parser.add_argument("--run", default=None, help="a trained run folder to reuse")
    parser.add_argument("--n-objects", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--gan-steps", type=int, default=1500)
    parser.add_argument("--encoder-steps", type=int, default=1000)
    args = parser.parse_args()
    out = Path(args.out)
    survey, data = out / "survey.h5", out / "tfrecords"
    if not survey.exists():
        simulate_survey(survey, SurveyConfig(n_objects=args.n_objects, size=32, seed=args.seed),
                        progress=False)  # fmt: skip
    if not (data / MANIFEST).exists():
        ingest(survey, data, IngestConfig(shard_size=1024), progress=False)
    run = Path(args.run) if args.run else out / "run"
    if not args.run:
        train_gan(data, run, GanTrainConfig(preset="cpu32", steps=args.gan_steps,
                  checkpoint_every=500, seed=args.seed), progress=False)  # fmt: skip
        train_encoder(run, EncoderTrainConfig(steps=args.encoder_steps, checkpoint_every=500),
                      data_dir=data, progress=False)  # fmt: skip
    print(f"survey: {args.n_objects} 32-px cutouts, seed {args.seed}; run {run}")
    print(f"{'inversion':>10s} {'images/s':>9s}  {'score':27s} {'AUROC':>6s} {'AP':>6s} "
          f"{'P@k':>6s}")  # fmt: skip
    reports = {}
    for steps in (0, 3, 10, 30):
        started = time.perf_counter()
        written = score(run, data, out / f"scores_{steps}",
                        ScoreConfig(inversion=InversionConfig(steps=steps), batch_size=256),
                        progress=False, echo=lambda *_: None)  # fmt: skip
        rate = written["count"] / (time.perf_counter() - started)
        reports[steps] = evaluate(out / f"scores_{steps}", baseline=steps == 0)
        for key, m in reports[steps]["table"]["all"].items():
            label = f"{steps} steps" if key != "isolation_forest" else "-"
            print(f"{label:>10s} {rate:9,.0f}  {SCORE_NAMES[key]:27s} {m['auroc']:6.3f} "
                  f"{m['average_precision']:6.3f} {m['precision_at_k']:6.3f}")  # fmt: skip
    print("per kind, encoder only (AUROC of anomaly / gen / disc / isolation forest):")
    for group, rows in reports[0]["table"].items():
        values = " / ".join(f"{rows[k]['auroc']:.3f}" for k in rows)
        print(f"  {group:22s} {values}")


if __name__ == "__main__":
    main()
