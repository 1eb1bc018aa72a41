"""The CLI as a user runs it: commands, --help, one-line errors, and the demo end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_cutouts, write_h5

from tfanomaly.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_commands_and_every_command_explains_itself():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("simulate", "ingest", "inspect", "calibrate", "score", "evaluate", "demo"):
        assert command in result.output
        sub = run(command, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.output and len(sub.output) > 300


def test_ingest_and_inspect(tmp_path, survey_h5):
    result = run("ingest", survey_h5, tmp_path / "ds", "--shard-size", 8, "--quiet")
    assert result.exit_code == 0, result.output
    assert "wrote 20 cutouts (16, 16, 3) bands g,r,i in 3 shard(s)" in result.output
    result = run("inspect", tmp_path / "ds", "--verify", "--gallery", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert "checksums: all shards intact" in result.output
    png = (tmp_path / "g.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(run("inspect", tmp_path / "ds", "--json").output)
    assert summary["count"] == 20 and summary["labels"] == {
        "label 0": 7,
        "label 1": 7,
        "label 2": 6,
    }


def test_user_errors_are_one_line_without_traceback(tmp_path):
    bad = write_h5(tmp_path / "dup.h5", make_cutouts(3), object_ids=[5, 6, 5])
    for args, expected in [
        (("ingest", bad, tmp_path / "ds"), "duplicate object id 5 at index 0 and 2"),
        (("ingest", tmp_path / "nope.h5", tmp_path / "ds"), "nope.h5: no such file"),
        (("inspect", tmp_path / "ds"), "not a complete tfanomaly data set"),
        (("ingest", bad, tmp_path / "ds", "--bands", "g,r"), "band count mismatch"),
    ]:
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: ") and expected in result.output
        assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_nan_policy_option(tmp_path):
    images = make_cutouts(4)
    images[1, 0, 0, 0] = np.nan
    src = write_h5(tmp_path / "nan.h5", images)
    result = CliRunner().invoke(main, ["ingest", str(src), str(tmp_path / "a"), "--nan", "error"])
    assert result.exit_code == 1 and "1 NaN/inf pixel(s)" in result.output
    result = run("ingest", src, tmp_path / "b", "--nan", "drop", "--quiet")
    assert "1 cutout(s) affected, 0 pixel(s) filled, 1 dropped" in result.output


@pytest.mark.slow
def test_demo_end_to_end_as_a_subprocess(tmp_path):
    """The README's demo command, in a fresh interpreter, on a small survey."""
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "tfanomaly.cli",
        "demo",
        "--out",
        str(out),
        "-n",
        "300",
        "--gan-steps",
        "10",
        "--encoder-steps",
        "10",
        "--cae-steps",
        "5",
        "--no-check",
        "--quiet",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "done: outputs are in" in result.stdout
    assert f"tfanomaly explore {out / 'scores'}" in result.stdout
    assert (out / "survey.h5").exists() and (out / "tfrecords" / "manifest.json").exists()
    manifest = json.loads((out / "tfrecords" / "manifest.json").read_text())
    assert manifest["count"] == 300 and manifest["shape"] == [32, 32, 3]
    assert manifest["kind_names"][0] == "normal" and len(manifest["kind_names"]) >= 7
    assert (out / "gallery.png").stat().st_size > 1000
    assert (out / "run" / "generator.keras").exists()
    assert (out / "run" / "samples" / "gan-step-000010.png").exists()
    assert (out / "run" / "calibration.npz").exists()  # train encoder calibrated the default score
    evaluation = json.loads((out / "scores" / "evaluation.json").read_text())
    assert {"scores", "anomaly_scores", "isolation_forest_smoothed"} <= set(
        evaluation["table"]["all"]
    )
    # A second run reuses what is finished instead of redoing it.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert "simulate: reusing" in again.stdout and "ingest: reusing" in again.stdout
    assert "gan already trained for 10 steps" in again.stdout
