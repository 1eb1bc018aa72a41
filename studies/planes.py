"""Variance and mask planes in the default score, and `--stretch auto`, measured (issue #15): the
tables of docs/results/detection.md "Variance and mask planes".

1. A simulated 32-px survey with planes (`SurveyConfig(planes=True)`): trained once (gan cpu32,
   encoder), then calibrated and scored twice, with the planes ignored (the calibrated scatter, the
   score of before) and with them (the default where a data set has them); AUROC and AP of the
   default score and of the residual and linear terms, over all anomalies and per kind.
2. `--stretch auto` against the paper's stretch on one simulated survey whose flux is scaled by
   0.01 and by 100 (the HDF5's `images` multiplied): the default score's AUROC of each.

  python studies/planes.py [--out studies/out/planes] | tee studies/out/planes.txt
Every stage's output lands in --out; rerunning reuses what is finished.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import common
import h5py

from tfanomaly.data.manifest import MANIFEST
from tfanomaly.pipelines.calibrate import calibrate
from tfanomaly.pipelines.config import CalibrateConfig, ScoreConfig
from tfanomaly.pipelines.evaluate import SCORE_NAMES, evaluate
from tfanomaly.pipelines.score import score
from tfanomaly.pipelines.simulate import simulate_survey
from tfanomaly.simulate.config import SurveyConfig

TERMS = ("scores", "residual_scores", "linear_scores")


def stage(timings: dict, key: str, function, *args, **kwargs):
    return common.stage_timer(timings)(key, function, *args, **kwargs)


def trained(
    folder: Path, source: Path, stretch: str, gan_steps: int, encoder_steps: int, timings: dict
) -> tuple[Path, Path]:
    """ingest -> train gan (cpu32) -> train encoder (which calibrates): the data set and the run."""
    return common.user_run(
        folder,
        source,
        stretch=stretch,
        preset="cpu32",
        gan_steps=gan_steps,
        encoder_steps=encoder_steps,
        timings=timings,
    )


def scored(run: Path, data: Path, results: Path, planes: bool, timings: dict) -> dict:
    """calibrate (with or without the planes) -> score -> evaluate."""
    if not (results / "evaluation.json").exists():
        tag = "planes" if planes else "scatter"
        stage(
            timings,
            f"calibrate ({tag})",
            calibrate,
            run,
            data,
            CalibrateConfig(planes=planes),
            progress=False,
            echo=common.quiet,
        )
        stage(
            timings,
            f"score ({tag})",
            score,
            run,
            data,
            results,
            ScoreConfig(planes=planes),
            progress=False,
            echo=common.quiet,
        )
        evaluate(results, data_dir=data)
    return json.loads((results / "evaluation.json").read_text())


def planes_table(reports: dict[str, dict]) -> list[str]:
    first = next(iter(reports.values()))
    kinds = [k for k in first["table"] if k != "all"]
    lines = [
        f"{first['count']} cutouts, {first['n_anomalies']} anomalies; AUROC per kind "
        "(that kind against the normal objects)",
        f"  {'score':26s} {'planes':8s} {'AUROC':>6s} {'AP':>6s}  "
        + " ".join(f"{k[:9]:>9s}" for k in kinds),
    ]
    for key in TERMS:
        for mode, report in reports.items():
            rows = report["table"]
            m = rows["all"][key]
            per_kind = " ".join(f"{rows[k][key]['auroc']:9.3f}" for k in kinds)
            lines.append(
                f"  {SCORE_NAMES.get(key, key)[:26]:26s} {mode:8s} {m['auroc']:6.3f} "
                f"{m['average_precision']:6.3f}  {per_kind}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.OUT / "planes"))
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--gan-steps", type=int, default=800)
    parser.add_argument("--encoder-steps", type=int, default=500)
    parser.add_argument("--stretch-count", type=int, default=3000)
    parser.add_argument("--stretch-gan-steps", type=int, default=600)
    parser.add_argument("--stretch-encoder-steps", type=int, default=300)
    parser.add_argument("--anomaly-fraction", type=float, default=0.08)
    parser.add_argument("--skip-stretch", action="store_true")
    args = parser.parse_args()
    print(common.machine(), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    started = time.perf_counter()

    # 1. The planes.
    source = out / "planes.h5"
    if not source.exists():
        stage(
            timings.setdefault("planes", {}),
            "simulate",
            simulate_survey,
            source,
            SurveyConfig(
                n_objects=args.count,
                size=32,
                seed=15,
                planes=True,
                anomaly_fraction=args.anomaly_fraction,
            ),
            workers=0,
            progress=False,
        )
    data, run = trained(
        out / "planes",
        source,
        "paper",
        args.gan_steps,
        args.encoder_steps,
        timings.setdefault("planes", {}),
    )
    reports = {
        mode: scored(
            run, data, out / "planes" / f"scores_{mode}", mode == "used", timings["planes"]
        )
        for mode in ("ignored", "used")
    }
    timings_file.write_text(json.dumps(timings, indent=1))
    print(
        f"\n1. variance and mask planes in the score (32 px, gan cpu32 {args.gan_steps} steps, "
        f"encoder {args.encoder_steps}; 'ignored': calibrated scatter, 'used': the planes)"
    )
    print("\n".join(planes_table(reports)), flush=True)

    # 2. The stretch.
    if not args.skip_stretch:
        base = out / "units1.h5"
        if not base.exists():
            stage(
                timings.setdefault("stretch", {}),
                "simulate",
                simulate_survey,
                base,
                SurveyConfig(
                    n_objects=args.stretch_count,
                    size=32,
                    seed=16,
                    anomaly_fraction=args.anomaly_fraction,
                ),
                workers=0,
                progress=False,
            )
        rows = []
        for factor in (0.01, 100.0):
            scaled = out / f"units{factor:g}.h5"
            if not scaled.exists():
                shutil.copy(base, scaled)
                with h5py.File(scaled, "r+") as f:
                    f["images"][...] = f["images"][...] * factor
            for stretch in ("paper", "auto"):
                name = f"units{factor:g}_{stretch}"
                t = timings.setdefault(name, {})
                data, run = trained(
                    out / name,
                    scaled,
                    stretch,
                    args.stretch_gan_steps,
                    args.stretch_encoder_steps,
                    t,
                )
                results = out / name / "scores"
                if not (results / "evaluation.json").exists():
                    stage(
                        t,
                        "score",
                        score,
                        run,
                        data,
                        results,
                        ScoreConfig(),
                        progress=False,
                        echo=common.quiet,
                    )
                    evaluate(results, data_dir=data)
                report = json.loads((results / "evaluation.json").read_text())
                manifest = json.loads((data / MANIFEST).read_text())
                softening = manifest.get("stretch", {}).get("stretch", 0.5)
                m = report["table"]["all"]
                rows.append(
                    f"  {factor:>6g}x  {stretch:6s} {softening:10.4g} "
                    f"{m['scores']['auroc']:6.3f} {m['scores']['average_precision']:6.3f} "
                    f"{m['linear_scores']['auroc']:6.3f}"
                )
                timings_file.write_text(json.dumps(timings, indent=1))
        print(
            f"\n2. --stretch auto against the paper's stretch ({args.stretch_count} cutouts of "
            f"32 px, gan cpu32 {args.stretch_gan_steps} steps, encoder "
            f"{args.stretch_encoder_steps})"
        )
        print(
            f"  {'flux':>7s}  {'stretch':6s} {'softening':>10s} {'AUROC':>6s} {'AP':>6s} "
            f"{'linear':>6s}"
        )
        print("\n".join(rows), flush=True)
    print(f"\ntimings (s): {json.dumps(timings)}")
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
