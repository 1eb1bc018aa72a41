"""Detection quality of every score against the classical baselines, over training seeds, on a
simulated survey, end to end (no docs table comes from it now; clusters.py reads its runs).

For one survey (size, seed) and each training seed: train gan (with a moving average of the
generator's weights, whose raw last weights are kept too), train encoder (+ calibration) for the
averaged and the raw generator, score (encoder only, and optionally k inversion steps), evaluate.
Prints AUROC / AP / P@k per score overall, AUROC per kind, the mean and spread over seeds, and the
CPU time of each stage. Everything lands in --out (rerunning reuses finished stages).

Usage (the surveys so far: tuning = seed 100, 32 px, training seeds 1,2; fresh = seed 200 at 32 px
with training seeds 1,2,3 and seed 300 at 48 px with --gan-steps 1000 and seeds 1,2):
  python studies/detection.py --out studies/out/det32 --size 32 --survey-seed 200 \\
      --train-seeds 1,2,3 [--inversion-steps 0,10] [--n-objects 6000]
About 12 minutes per training seed at 32 px and 35 at 48 px on 2 cores (both generators, two
encoders, scoring with 0 and 10 steps).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import common
import numpy as np

from tfanomaly.data.manifest import MANIFEST
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config import (
    EncoderTrainConfig,
    EvaluateConfig,
    GanTrainConfig,
    IngestConfig,
    ScoreConfig,
)
from tfanomaly.pipelines.evaluate import SCORE_NAMES, evaluate
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.score import score
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.pipelines.train import train_encoder, train_gan
from tfanomaly.simulate.config import SurveyConfig

PRESETS = {32: "cpu32", 48: "cpu48", 96: "hsc96"}


def cpu_seconds(function, *args, **kwargs):
    """(result, process CPU seconds, wall seconds) of a call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def prepare_survey(out: Path, args) -> Path:
    survey, data = out / "survey.h5", out / "tfrecords"
    if not survey.exists():
        config = SurveyConfig(
            n_objects=args.n_objects,
            size=args.size,
            seed=args.survey_seed,
            anomaly_fraction=args.anomaly_fraction,
        )
        simulate_survey(survey, config, workers=0, progress=False)
    if not (data / MANIFEST).exists():
        ingest(survey, data, IngestConfig(shard_size=1024), progress=False)
    return data


def train_variants(out: Path, data: Path, seed: int, args, timings: dict) -> dict[str, Path]:
    """The run of one training seed, as the averaged ('ema') and the raw ('raw') generator."""
    run = out / f"run_seed{seed}"
    config = GanTrainConfig(
        preset=PRESETS[args.size],
        steps=args.gan_steps,
        seed=seed,
        checkpoint_every=500,
        ema_decay=args.ema_decay,
    )
    if not (run / "generator.keras").exists():
        _, cpu, wall = cpu_seconds(train_gan, data, run, config, progress=False, echo=common.quiet)
        timings[f"gan seed {seed}"] = {"cpu_s": cpu, "wall_s": wall}
    runs = {"ema": run}
    if args.ema_decay > 0:
        raw = out / f"run_seed{seed}_raw"
        if not (raw / "generator.keras").exists():
            raw.mkdir(exist_ok=True)
            shutil.copy(run / "run.json", raw / "run.json")
            shutil.copy(run / "critic.keras", raw / "critic.keras")
            shutil.copy(run / "generator_raw.keras", raw / "generator.keras")
        runs["raw"] = raw
    for variant, folder in runs.items():
        if not (folder / "calibration.npz").exists():
            encoder = EncoderTrainConfig(steps=args.encoder_steps, checkpoint_every=500, seed=seed)
            _, cpu, wall = cpu_seconds(
                train_encoder, folder, encoder, data_dir=data, progress=False, echo=common.quiet
            )
            timings[f"encoder+calibration {variant} seed {seed}"] = {"cpu_s": cpu, "wall_s": wall}
    return runs


def score_and_evaluate(run: Path, data: Path, steps: int, timings: dict, baseline: bool) -> dict:
    folder = run / f"scores_{steps}"
    if not (folder / "evaluation.json").exists():
        config = ScoreConfig(inversion=InversionConfig(steps=steps), batch_size=256)
        written, cpu, wall = cpu_seconds(
            score, run, data, folder, config, progress=False, echo=common.quiet
        )
        timings[f"score {steps} steps {run.name}"] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "images_per_s": written["count"] / wall,
        }
        evaluate(folder, EvaluateConfig(baseline=baseline), data_dir=data)
    return json.loads((folder / "evaluation.json").read_text())


def ensemble_rows(folders: dict[int, Path]) -> dict[str, dict]:
    """Metrics of the default score averaged (in sigma) over the runs of several training seeds:
    what an ensemble of those runs would give, at that many times the training cost."""
    from tfanomaly.pipelines.evaluate import metrics
    from tfanomaly.results.catalog import read_results

    columns = [read_results(folder)[0] for folder in folders.values()]
    order = [np.argsort(c["object_ids"]) for c in columns]
    labels = columns[0]["labels"][order[0]] > 0
    mean = np.mean([c["scores_sigma"][o] for c, o in zip(columns, order, strict=True)], axis=0)
    return {"all": metrics(labels, mean)}


def summarise(reports: dict, folders: dict) -> list[str]:
    """Mean and spread over seeds of AUROC/AP/P@k overall, and mean AUROC per kind."""
    lines = []
    for setting, by_seed in reports.items():
        seeds = sorted(by_seed)
        keys = list(by_seed[seeds[0]]["table"]["all"])
        groups = list(by_seed[seeds[0]]["table"])
        lines.append(f"\n{setting}: {len(seeds)} training seed(s) {seeds}")
        lines.append(f"  {'score':30s} {'AUROC':>13s} {'AP':>13s} {'P@k':>13s}  per seed AUROC")
        for key in keys:
            cells = []
            for metric in ("auroc", "average_precision", "precision_at_k"):
                values = np.array([by_seed[s]["table"]["all"][key][metric] for s in seeds])
                cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
            per_seed = " ".join(f"{by_seed[s]['table']['all'][key]['auroc']:.3f}" for s in seeds)
            lines.append(
                f"  {SCORE_NAMES.get(key, key):30s} {cells[0]:>13s} {cells[1]:>13s} "
                f"{cells[2]:>13s}  {per_seed}"
            )
        if len(seeds) > 1:
            m = ensemble_rows(folders[setting])["all"]
            lines.append(
                f"  {'ensemble of the seeds (mean σ)':30s} {m['auroc']:13.3f} "
                f"{m['average_precision']:13.3f} {m['precision_at_k']:13.3f}"
            )
        lines.append(
            f"  mean AUROC per kind: {'score':28s} " + " ".join(f"{g[:7]:>7s}" for g in groups[1:])
        )
        for key in keys:
            values = [
                np.mean([by_seed[s]["table"][g][key]["auroc"] for s in seeds]) for g in groups[1:]
            ]
            lines.append(
                f"  {'':20s} {SCORE_NAMES.get(key, key):28s} "
                + " ".join(f"{v:7.3f}" for v in values)
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=32, choices=sorted(PRESETS))
    parser.add_argument("--survey-seed", type=int, default=200)
    parser.add_argument("--train-seeds", default="1,2,3")
    parser.add_argument("--n-objects", type=int, default=6000)
    parser.add_argument("--anomaly-fraction", type=float, default=0.04)
    parser.add_argument("--gan-steps", type=int, default=1500)
    parser.add_argument("--encoder-steps", type=int, default=1000)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--inversion-steps", default="0")
    args = parser.parse_args()
    print(common.machine())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    data = prepare_survey(out, args)
    reports: dict[str, dict] = {}
    folders: dict[str, dict] = {}
    for seed in (int(s) for s in args.train_seeds.split(",")):
        runs = train_variants(out, data, seed, args, timings)
        timings_file.write_text(json.dumps(timings, indent=1))
        for variant, run in runs.items():
            for steps in (int(s) for s in args.inversion_steps.split(",")):
                report = score_and_evaluate(run, data, steps, timings, baseline=True)
                setting = f"{variant} generator, {steps} inversion steps"
                folders.setdefault(setting, {})[seed] = run / f"scores_{steps}"
                reports.setdefault(setting, {})[seed] = report
                timings_file.write_text(json.dumps(timings, indent=1))
    lines = [
        f"survey: {args.n_objects} {args.size}-px cutouts, seed {args.survey_seed}, "
        f"{args.anomaly_fraction:.0%} anomalies; {PRESETS[args.size]} {args.gan_steps} GAN "
        f"steps (EMA {args.ema_decay}), encoder {args.encoder_steps}"
    ]
    lines += summarise(reports, folders)
    lines.append("\ntimings (process CPU seconds, wall seconds):")
    lines += [
        f"  {k:45s} {v['cpu_s']:8.0f} {v['wall_s']:8.0f}"
        + (f"  {v['images_per_s']:,.0f} img/s" if "images_per_s" in v else "")
        for k, v in timings.items()
    ]
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
