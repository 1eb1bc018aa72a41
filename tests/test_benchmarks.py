"""The benchmarks stay runnable: each builds what it times from the package's current shapes and
settings, so a change that breaks one shows here rather than when its figures are next needed.
Tiny batches and no timing: the figures themselves come from running the scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_morphology_runs_every_case_on_a_tiny_batch():
    script = BENCHMARKS / "bench_morphology.py"
    out = subprocess.run(
        [sys.executable, str(script), "--batch", "4", "--seconds", "0.01"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCHMARKS,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "morphology (now)" in out.stdout and "k-NN term" in out.stdout


def test_bench_score_scores_with_its_synthetic_calibrations(monkeypatch):
    """The default score and the variants bench_score times, on a synthetic calibration of the
    cpu32 shapes (the morphology reference with the columns the term reads)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_score

    from tfanomaly.models.score_config import ScoreSettings

    images = tf.random.uniform((2, 32, 32, 3), seed=1)
    for settings in (
        ScoreSettings(),
        ScoreSettings(reference_size=2000, reference_trim=0.0),
        ScoreSettings(terms=("residual", "feature", "morphology")),
    ):
        inverter = bench_score.inverter_for("cpu32", 0, default_score=True, settings=settings)
        out = inverter(images, images)
        assert np.isfinite(out["score"].numpy()).all(), settings
