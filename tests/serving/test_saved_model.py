"""The exported SavedModel as TF Serving sees it: graph-mode session loader in a fresh process,
saved_model_cli, signatures, input checks, versions and the manifest asset."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import NET_RTOL, assert_scores_close, build_tiny_run, combined, quiet

from tfanomaly.errors import ConfigError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config import ExportConfig, ScoreConfig
from tfanomaly.pipelines.export import export
from tfanomaly.pipelines.run import CALIBRATION_FILE
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import SCORE_KEYS, SCORE_OUTPUTS, read_results

# The CLI installed beside this interpreter (the venv's bin/, not whatever PATH finds first).
SAVED_MODEL_CLI = str(Path(sys.executable).parent / "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny16 run, its scored catalog (the sigma reference) and one export of it."""
    folder = build_tiny_run(tmp_path_factory.mktemp("export"), 60, seed=9, shard_size=30)
    score(
        folder / "run",
        folder / "ds",
        folder / "scores",
        ScoreConfig(batch_size=32, inversion=InversionConfig(steps=4)),
        progress=False,
        echo=quiet,
    )
    written = export(folder / "run", folder / "models", scores_dir=folder / "scores")
    with h5py.File(folder / "s.h5") as f:
        np.save(folder / "cutouts.npy", f["images"][:7])
        ids = f["object_ids"][:7]
    return {"folder": folder, "path": written["path"], "ids": ids}


def catalog_scores(folder, ids):
    columns, _ = read_results(folder / "scores")
    where = {int(i): k for k, i in enumerate(columns["object_ids"])}
    rows = [where[int(i)] for i in ids]
    return {key: columns[key][rows] for key in columns}


def test_layout_versions_and_manifest(exported, tmp_path):
    path = exported["path"]
    assert path.name == "1" and path.parent.name == "tfanomaly"
    assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
    manifest = json.loads((path / "assets" / "tfanomaly.json").read_text())
    assert manifest["model"]["name"] == "tiny16" and manifest["inversion"]["steps"] == 4
    assert manifest["training"]["gan"]["steps"] == 2
    assert set(manifest["score_statistics"]) == set(SCORE_KEYS)
    assert manifest["default_score"]["calibration"]["count"] > 0
    again = export(
        exported["folder"] / "run",
        exported["folder"] / "models",
        ExportConfig(steps=0),
        scores_dir=exported["folder"] / "scores",
    )
    assert again["version"] == 2 and again["manifest"]["inversion"]["steps"] == 0
    with pytest.raises(ConfigError, match="score a reference catalog first"):
        export(exported["folder"] / "run", tmp_path / "models")


def test_graph_mode_session_loader_in_a_fresh_process_equals_in_process_scoring(exported):
    """How TF Serving's C++ side loads it: TF1 graph, session, restore op, signature tensors."""
    script = textwrap.dedent(
        f"""
        import json, numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        images = np.load({str(exported["folder"] / "cutouts.npy")!r})
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], {str(exported["path"])!r})
            out = {{}}
            for name in ("serving_default", "score_fast"):
                sig = meta.signature_def[name]
                fetch = {{k: v.name for k, v in sig.outputs.items()}}
                result = sess.run(fetch, {{sig.inputs["images"].name: images}})
                out[name] = {{k: v.tolist() for k, v in result.items() if v.ndim == 1}}
            sig = meta.signature_def["serving_default"]
            try:
                sess.run(sig.outputs["anomaly_score"].name,
                         {{sig.inputs["images"].name: np.zeros((2, 16, 16, 4), np.float32)}})
            except tf.errors.InvalidArgumentError as exc:
                out["error"] = exc.message
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = catalog_scores(exported["folder"], exported["ids"])
    served = out["serving_default"]
    # The default score, its terms and the paper's, each with its sigma: the session scores 7
    # cutouts in one batch, the catalog scored them in batches of 32, so equal to rounding.
    actual = {}
    for name, key in SCORE_OUTPUTS.items():
        actual.update({key: served[name], f"{key}_sigma": served[f"{name}_sigma"]})
    calibration = Calibration.load(exported["folder"] / "run" / CALIBRATION_FILE)
    catalog, _ = read_results(exported["folder"] / "scores")
    assert_scores_close(actual, expected, list(actual), calibration, catalog)
    assert not np.allclose(out["score_fast"]["anomaly_score"], served["anomaly_score"])
    assert "this model scores 16x16 cutouts with 3 band(s)" in out["error"]


def test_saved_model_cli_show_and_run(exported, tmp_path):
    show = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--dir", str(exported["path"]), "--all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr[-2000:]
    for name in ("serving_default", "score_fast", "reconstruct", "generate"):
        assert f"signature_def['{name}']" in show.stdout
    assert "anomaly_score_sigma" in show.stdout
    run = subprocess.run(
        [
            SAVED_MODEL_CLI,
            "run",
            "--dir",
            str(exported["path"]),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={exported['folder'] / 'cutouts.npy'}",
            "--outdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    saved = np.load(tmp_path / "anomaly_score.npy")
    expected = catalog_scores(exported["folder"], exported["ids"])["anomaly_scores"]
    np.testing.assert_allclose(saved, expected, rtol=NET_RTOL)  # other batches: to rounding


def test_signatures_in_process(exported):
    model = tf.saved_model.load(str(exported["path"]))
    images = np.load(exported["folder"] / "cutouts.npy")
    images[0, 0, 0, 0] = np.nan  # a masked pixel does not poison the scores
    out = model.signatures["reconstruct"](tf.constant(images))
    assert out["stretched"].shape == (7, 16, 16, 3) and out["z"].shape == (7, 8)
    assert np.isfinite(out["residual"].numpy()).all()
    generated = model.signatures["generate"](tf.random.normal((3, 8)))["images"]
    assert generated.shape == (3, 16, 16, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must have shape \(N, 8\)"):
        model.signatures["generate"](tf.zeros((3, 5)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a 4-D batch \(N, 16, 16, 3\)"):
        model.signatures["serving_default"](tf.zeros((3, 16, 16)))


def test_an_export_leaves_out_a_degenerate_term_as_the_in_process_scorer_does(exported, tmp_path):
    """The export builds its graph from the calibration: a term found degenerate weighs 0 there
    as in the run's scorer, and the manifest records the weights."""
    import shutil

    from tfanomaly.models.term_health import TermHealth
    from tfanomaly.pipelines.export import build_scorer

    folder = exported["folder"]
    shutil.copytree(folder / "run", tmp_path / "run")
    path = tmp_path / "run" / CALIBRATION_FILE
    calibration = Calibration.load(path)
    why = "97% of calibration cutouts share 3 values (quantised images?)"
    calibration.health = {term: TermHealth() for term in calibration.terms}
    # A term the default weighs (residual_shape), so that leaving it out moves the score.
    assert calibration.nominal_weights[calibration.terms.index("residual_shape")] > 0
    calibration.health["residual_shape"] = TermHealth("degenerate", "quantised", why)
    calibration.save(path)
    written = export(tmp_path / "run", tmp_path / "models", scores_dir=folder / "scores")
    recorded = written["manifest"]["default_score"]
    assert recorded["term_weights"] == calibration.term_weights()
    assert recorded["term_weights"]["residual_shape"] == 0.0
    assert recorded["degenerate_terms"] == {"residual_shape": why}
    images = tf.constant(np.load(folder / "cutouts.npy"))
    served = tf.saved_model.load(str(written["path"])).signatures["serving_default"](images)
    scorer, _ = build_scorer(tmp_path / "run", scores_dir=folder / "scores")
    in_process = scorer.score(images)
    atol = calibration.score_drift(NET_RTOL)
    np.testing.assert_allclose(served["score"], in_process["score"], rtol=0, atol=atol)
    # Its score combines the other terms' z, not all of them with the nominal weights.
    terms = np.stack([served[f"{t}_score"].numpy() for t in calibration.terms], axis=1)
    z = (np.log(terms) - calibration.standard.centres) / calibration.standard.scales
    combine = calibration.settings.combine
    expected = combined(z, calibration.weights, combine)
    np.testing.assert_allclose(served["score"], expected, rtol=0, atol=atol + 1e-5)
    nominal = combined(z, calibration.nominal_weights, combine)
    assert np.abs(served["score"].numpy() - nominal).max() > 100 * atol
