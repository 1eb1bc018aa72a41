"""Batch scoring on Apache Beam (DirectRunner): the same scores, ids and catalogs as the in-process
scorer, multi-process workers, a failed bundle retried without duplicates, clear input errors."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner
from conftest import (
    NET_RTOL,
    assert_scores_close,
    build_tiny_run,
    make_cutouts,
    quiet,
    score_atol,
    write_h5,
)

from tfanomaly.cli import main
from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.beam_score import BEAM_PARTS, BeamScoreConfig, beam_score
from tfanomaly.pipelines.config import CatalogConfig, IngestConfig, ScoreConfig
from tfanomaly.pipelines.export import export
from tfanomaly.pipelines.ingest import ingest
from tfanomaly.pipelines.run import CALIBRATION_FILE
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import COLUMN_KEYS, SCORE_KEYS, read_results

pytest.importorskip("apache_beam")

from tfanomaly.pipelines.beam_transforms import ExportHandler  # noqa: E402

# More cutouts than the default score's linear model has components (50): with fewer, it fits
# every cutout, its residuals are rounding noise and the linear term compares noise.
N_OBJECTS = 96
# Small inference batches, so that the cutouts make several batches and bundles.
SMALL = BeamScoreConfig(min_batch_size=4, max_batch_size=8, parse_batch_size=16)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny16 run on 96 cutouts in 4 shards, scored in process (2 inversion steps), and its
    export (which takes the catalog's inversion settings and statistics)."""
    folder = build_tiny_run(
        tmp_path_factory.mktemp("beam"), N_OBJECTS, seed=11, anomaly_fraction=0.1, shard_size=24
    )
    score(
        folder / "run",
        folder / "ds",
        folder / "scores",
        ScoreConfig(
            batch_size=16,
            inversion=InversionConfig(steps=2),
            catalog=CatalogConfig(select_sigma=1.0),
        ),
        progress=False,
        echo=quiet,
    )
    written = export(folder / "run", folder / "models", scores_dir=folder / "scores")
    case = {
        "folder": folder,
        "export": written["path"],
        "calibration": Calibration.load(folder / "run" / CALIBRATION_FILE),
    }
    case["feature_atol"] = feature_term_atol(case)
    return case


def feature_term_atol(scored) -> np.ndarray:
    """Per object, the absolute error the default score's feature term can carry: it subtracts
    two sums of squared critic features (the PPCA residual outside the principal axes), so its
    rounding is relative to those sums, not to the (sometimes thousands of times smaller)
    difference. Computed from the features of each object, in the data set's index order."""
    from tfanomaly.data.dataset import load_dataset
    from tfanomaly.pipelines.run import load_inverter

    calibration = scored["calibration"]
    critic = load_inverter(scored["folder"] / "run").critic
    sums, idxs = [], []
    for batch in load_dataset(scored["folder"] / "ds", 64):
        centred = critic(batch["image"])[1].numpy() - calibration.features.mean
        sums.append(
            (centred**2).sum(axis=1) / calibration.features.residual_variance / centred.shape[1]
        )
        idxs.append(batch["idx"].numpy())
    return NET_RTOL * np.concatenate(sums)[np.argsort(np.concatenate(idxs))]


def assert_same_as_in_process(scored, out_dir):
    """Every object once, ids and catalog columns exact, scores to float32 rounding."""
    beam, attrs = read_results(out_dir)
    expected, _ = read_results(scored["folder"] / "scores")
    assert len(beam["object_ids"]) == len(np.unique(beam["object_ids"])) == N_OBJECTS
    assert (np.diff(beam["idxs"]) > 0).all()  # the data set's running-index order
    order = np.argsort(expected["idxs"])
    expected = {key: values[order] for key, values in expected.items()}
    for key in COLUMN_KEYS:
        np.testing.assert_array_equal(beam[key], expected[key], err_msg=key)
    assert beam["object_ids"].dtype == np.uint64 and beam["object_ids"].min() > 2**53
    calibration = scored["calibration"]
    paper = [key for key in SCORE_KEYS if key not in ("scores", "feature_scores")]
    assert_scores_close(beam, expected, (*paper, *(f"{key}_sigma" for key in paper)), calibration)
    # The default score and its feature term, with the feature term's cancellation error
    # (feature_term_atol) carried through the log: d score = w / scale * d feature / feature.
    feature_atol = scored["feature_atol"] + NET_RTOL * expected["feature_scores"]
    weight, scale = calibration.settings.feature_weight, float(calibration.standard.scales[1])
    score_atol_ = score_atol("scores", expected, calibration) + weight / scale * (
        feature_atol / expected["feature_scores"]
    )
    for key, atol in (("feature_scores", feature_atol), ("scores", score_atol_)):
        for column, bound in ((key, atol), (f"{key}_sigma", atol / expected[key].std())):
            error = np.abs(beam[column] - expected[column])
            worst = int(np.argmax(error / bound))
            assert (error <= bound).all(), f"{column}[{worst}]: {error[worst]} > {bound[worst]}"
    return beam, attrs


def test_beam_scores_and_catalogs_equal_the_in_process_scorer(scored, tmp_path):
    written = beam_score(
        scored["export"],
        scored["folder"] / "ds",
        tmp_path / "out",
        dataclasses.replace(SMALL, catalog=CatalogConfig(select_sigma=1.0)),
        echo=quiet,
    )
    assert written["count"] == N_OBJECTS
    _, attrs = assert_same_as_in_process(scored, tmp_path / "out")
    source = json.loads(attrs["run"])
    assert source["engine"] == "beam" and source["signature"] == "serving_default"
    # The weights the export's graph scored with, as the in-process catalog records them.
    _, in_process = read_results(scored["folder"] / "scores")
    for key in ("term_weights", "degenerate_terms"):
        assert json.loads(attrs[key]) == json.loads(in_process[key]), key
    assert json.loads(attrs["term_weights"]) == scored["calibration"].term_weights()
    stats = json.loads((tmp_path / "out" / "score_stats.json").read_text())
    expected_stats = json.loads((scored["folder"] / "scores" / "score_stats.json").read_text())
    assert stats["inversion"] == expected_stats["inversion"]
    assert stats["scores"]["scores"]["count"] == N_OBJECTS
    for name in ("catalog.fits", "catalog_sigma1.fits"):
        table = Table.read(tmp_path / "out" / name)
        reference = Table.read(scored["folder"] / "scores" / name)
        assert table.colnames == reference.colnames
        assert sorted(table["object_id"]) == sorted(reference["object_id"])
        assert (np.diff(table["score_normalized"]) <= 0).all()
    assert not (tmp_path / "out" / BEAM_PARTS).exists()


def test_a_model_folder_and_raw_scores_kept_elsewhere(scored, tmp_path):
    """The export may be named by its model folder (the newest version is scored); the raw
    scores may go elsewhere (object storage on a cluster), where they stay."""
    config = BeamScoreConfig(raw_location=str(tmp_path / "raw"))
    written = beam_score(
        scored["export"].parent, scored["folder"] / "ds", tmp_path / "out", config, echo=quiet
    )
    assert_same_as_in_process(scored, tmp_path / "out")
    assert written["raw_scores"].startswith(str(tmp_path / "raw"))
    import pyarrow.parquet as pq

    shards = sorted((tmp_path / "raw").glob("job-*/raw_scores*.parquet"))
    table = pq.read_table(shards[0])
    assert str(table.schema.field("object_ids").type) == "uint64"
    assert sum(pq.read_metadata(p).num_rows for p in shards) == N_OBJECTS


class FailsOnceHandler(ExportHandler):
    """Raises on its first batch, once per test: a worker that dies in the middle of a bundle
    (after the bundle's earlier elements were read and parsed)."""

    def __init__(self, *args, marker: str):
        super().__init__(*args)
        self.marker = marker

    def run_inference(self, batch, model, inference_args=None):
        marker = Path(self.marker)
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("worker lost in the middle of a bundle")
        return super().run_inference(batch, model, inference_args)


def test_a_failed_bundle_is_retried_and_every_object_comes_out_once(scored, tmp_path):
    marker = tmp_path / "failed"
    handler = FailsOnceHandler(str(scored["export"]), "serving_default", 4, 8, marker=str(marker))
    # The bundle-based DirectRunner retries a failed bundle (up to 4 times), as Dataflow does.
    beam_score(
        scored["export"],
        scored["folder"] / "ds",
        tmp_path / "out",
        SMALL,
        handler=handler,
        pipeline_args=["--runner=BundleBasedDirectRunner"],
        echo=quiet,
    )
    assert marker.read_text() == "failed once"
    assert_same_as_in_process(scored, tmp_path / "out")


@pytest.mark.slow
def test_cli_on_two_worker_processes(scored, tmp_path):
    """Beam's options pass through: the DirectRunner with two worker processes."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "beam-score",
            str(scored["folder"] / "ds"),
            "--model",
            str(scored["export"]),
            "--out",
            str(out),
            "--min-batch-size",
            "4",
            "--max-batch-size",
            "8",
            "--select-sigma",
            "1",
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_processing",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"scored {N_OBJECTS} cutouts" in result.output and "catalog_sigma1.fits" in result.output
    assert_same_as_in_process(scored, out)


def test_bad_input_is_one_clear_line(scored, tmp_path):
    write_h5(tmp_path / "big.h5", make_cutouts(n=6, size=32))
    ingest(tmp_path / "big.h5", tmp_path / "ds32", IngestConfig(shard_size=6), progress=False)
    with pytest.raises(ConfigError, match=r"holds \(32, 32, 3\) cutouts but .* take \(16, 16, 3\)"):
        beam_score(scored["export"], tmp_path / "ds32", tmp_path / "x", echo=quiet)
    with pytest.raises(InputError, match="no such export folder"):
        beam_score(tmp_path / "missing", scored["folder"] / "ds", tmp_path / "x", echo=quiet)
    with pytest.raises(InputError, match="not a SavedModel"):
        beam_score(scored["folder"] / "run", scored["folder"] / "ds", tmp_path / "x", echo=quiet)
    with pytest.raises(ConfigError, match="signature must be one of"):
        beam_score(
            scored["export"],
            scored["folder"] / "ds",
            tmp_path / "x",
            BeamScoreConfig(signature="generate"),
            echo=quiet,
        )
    for data, model, message in [
        (tmp_path / "ds32", scored["export"], "error: "),
        (scored["folder"] / "ds", tmp_path / "missing", "error: "),
        (tmp_path / "nothing", scored["export"], "error: "),
    ]:
        result = CliRunner().invoke(
            main, ["beam-score", str(data), "--model", str(model), "--out", str(tmp_path / "x")]
        )
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1].startswith(message) and "Traceback" not in result.output


def test_the_base_install_does_not_import_beam():
    """The command is registered without Apache Beam installed: it is imported only to run."""
    code = (
        "import sys, tfanomaly.cli, tfanomaly.pipelines.beam_score; "
        "print('apache_beam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_beam_counts_the_masked_pixels_as_the_in_process_scorer_does(scored, tmp_path):
    import h5py

    images = make_cutouts(12, size=16, seed=3)
    images[5, 4, 4, 2] = np.nan  # ingest fills it and masks it (TFA_INVALID)
    masks = np.zeros(images.shape, np.int32)
    masks[3, 2:5, 2:4, 1] = 1 << 0  # BAD: masked by default, 6 pixels
    masks[7, 0, :, :] = 1 << 5  # DETECTED: not masked
    masks[7, 9, 9, 0] = (1 << 5) | (1 << 1)  # DETECTED and SAT: masked
    path = write_h5(
        tmp_path / "masked.h5", images, mask_bits=json.dumps({"BAD": 0, "SAT": 1, "DETECTED": 5})
    )
    with h5py.File(path, "a") as f:
        f["masks"] = masks
    ingest(path, tmp_path / "ds", IngestConfig(shard_size=5), progress=False)
    beam_score(scored["export"], tmp_path / "ds", tmp_path / "out", SMALL, echo=quiet)
    beam, _ = read_results(tmp_path / "out")
    expected = np.zeros(12, np.int32)
    expected[[3, 5, 7]] = 6, 1, 1
    np.testing.assert_array_equal(beam["n_masked"][np.argsort(beam["idxs"])], expected)
    score(
        scored["folder"] / "run",
        tmp_path / "ds",
        tmp_path / "local",
        ScoreConfig(batch_size=16, inversion=InversionConfig(steps=0)),
        progress=False,
        echo=quiet,
    )
    local, _ = read_results(tmp_path / "local")
    np.testing.assert_array_equal(local["n_masked"][np.argsort(local["idxs"])], expected)
    # A data set without a mask plane: 0 for every object.
    plain, _ = read_results(scored["folder"] / "scores")
    assert (plain["n_masked"] == 0).all()
