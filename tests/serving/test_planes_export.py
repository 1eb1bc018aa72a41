"""The export of a run calibrated with variance and mask planes: its score_planes signature takes
flux, variance and mask bits as a survey delivers them and gives the catalog's plane-path scores,
in TF Serving's graph-mode loader and through the clients."""

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_scores_close, build_tiny_run, quiet

from tfanomaly.data.dataset import load_dataset
from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.errors import ConfigError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.config import ScoreConfig
from tfanomaly.pipelines.export import export
from tfanomaly.pipelines.run import CALIBRATION_FILE
from tfanomaly.pipelines.score import remote_planes, score
from tfanomaly.results.catalog import SCORE_KEYS, SCORE_OUTPUTS, read_results
from tfanomaly.serving.client import GrpcClient, RestClient
from tfanomaly.serving.local import LocalServer
from tfanomaly.serving.signatures import PLANES_SIGNATURE

ROWS = 7


@pytest.fixture(scope="module")
def planes_export(tmp_path_factory):
    """A tiny16 run on a survey with planes, its catalog scored with them, and its export."""
    folder = build_tiny_run(
        tmp_path_factory.mktemp("planes_export"),
        64,
        seed=5,
        anomaly_fraction=0.3,
        shard_size=32,
        planes=True,
    )
    score(
        folder / "run",
        folder / "ds",
        folder / "scores",
        ScoreConfig(batch_size=32, inversion=InversionConfig(steps=2)),
        progress=False,
        echo=quiet,
    )
    written = export(folder / "run", folder / "models", scores_dir=folder / "scores")
    with h5py.File(folder / "s.h5") as f:
        raw = {
            "images": f["images"][:ROWS],
            "variance": f["variances"][:ROWS],
            "mask": f["masks"][:ROWS],
        }
        ids = f["object_ids"][:ROWS]
    np.savez(folder / "raw.npz", **raw)
    return {
        "folder": folder,
        "path": written["path"],
        "ids": ids,
        "raw": raw,
        "manifest": written["manifest"],
    }


def catalog_rows(folder, ids):
    columns, _ = read_results(folder / "scores")
    where = {int(i): k for k, i in enumerate(columns["object_ids"])}
    rows = [where[int(i)] for i in ids]
    return {key: columns[key][rows] for key in columns}, columns


def served_columns(out: dict) -> dict:
    actual = {}
    for name, key in SCORE_OUTPUTS.items():
        actual.update(
            {key: np.asarray(out[name]), f"{key}_sigma": np.asarray(out[f"{name}_sigma"])}
        )
    return actual


def test_score_planes_in_the_graph_mode_loader_equals_the_catalog(planes_export):
    """TF Serving's way (TF1 graph, session): raw flux, variance and mask bits of the survey
    file in, the scores the catalog has for the same objects (scored from the shards, with the
    planes) out; the flux-only default signature of the same model differs (calibrated scatter)."""
    folder, manifest = planes_export["folder"], planes_export["manifest"]
    assert PLANES_SIGNATURE in manifest["signatures"]
    assert manifest["planes"] == {
        "planes": ["variance", "mask"],
        "masked_bits": DatasetInfo.from_folder(folder / "ds").masked_bits,
    }
    assert planes_export["raw"]["mask"].any()  # the survey flagged pixels of these objects
    script = textwrap.dedent(
        f"""
        import json, numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        raw = np.load({str(folder / "raw.npz")!r})
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"],
                                                        {str(planes_export["path"])!r})
            out = {{}}
            for name, inputs in (("{PLANES_SIGNATURE}", ("images", "variance", "mask")),
                                 ("serving_default", ("images",))):
                sig = meta.signature_def[name]
                fetch = {{k: v.name for k, v in sig.outputs.items()}}
                feed = {{sig.inputs[k].name: raw[k] for k in inputs}}
                result = sess.run(fetch, feed)
                out[name] = {{k: v.tolist() for k, v in result.items() if v.ndim == 1}}
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected, catalog = catalog_rows(folder, planes_export["ids"])
    actual = served_columns(out[PLANES_SIGNATURE])
    calibration = Calibration.load(folder / "run" / CALIBRATION_FILE)
    assert_scores_close(actual, expected, list(actual), calibration, catalog)
    plain = served_columns(out["serving_default"])
    assert not np.allclose(plain["linear_scores"], expected["linear_scores"], rtol=1e-3)


def test_score_planes_masks_what_the_survey_flagged_and_checks_its_inputs(planes_export):
    model = tf.saved_model.load(str(planes_export["path"]))
    function = model.signatures[PLANES_SIGNATURE]
    raw = {k: tf.constant(v) for k, v in planes_export["raw"].items()}
    # A pixel whose flux is not finite, or whose variance is not positive, counts as one the
    # survey flagged; a flagged pixel plays no part, so a huge value there changes nothing.
    images = planes_export["raw"]["images"].copy()
    variance = planes_export["raw"]["variance"].copy()
    mask = planes_export["raw"]["mask"].copy()
    bits = planes_export["manifest"]["planes"]["masked_bits"]
    low_bit = np.int32(bits & -bits)
    flagged = mask.copy()
    flagged[0, 2, 3, 1] |= low_bit
    flagged[1, 5, 5, 0] |= low_bit
    expected = function(images=raw["images"], variance=raw["variance"], mask=tf.constant(flagged))
    images[tuple(np.argwhere((mask & bits) != 0)[0])] = 1e6
    images[0, 2, 3, 1] = np.nan
    variance[1, 5, 5, 0], images[1, 5, 5, 0] = -1.0, 1e6
    spoilt = function(
        images=tf.constant(images), variance=tf.constant(variance), mask=tf.constant(mask)
    )
    for name in ("linear_score", "extended_score", "morphology_score", "residual_score", "score"):
        assert np.all(np.isfinite(spoilt[name].numpy()))
        np.testing.assert_allclose(spoilt[name], expected[name], rtol=1e-5, err_msg=name)
    assert not np.allclose(expected["linear_score"], function(**raw)["linear_score"], rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"variance: send the flux variance"):
        function(images=raw["images"], variance=raw["variance"][..., :2], mask=raw["mask"])


def test_clients_score_a_data_set_with_planes_through_score_planes(planes_export, tmp_path):
    """`score --server/--rest --signature score_planes`: the data set's planes go out with the
    flux, and the remote catalog equals the local one (scored with the planes)."""
    folder = planes_export["folder"]
    server = LocalServer(folder / "models", grpc_port=0, rest_port=0).start()
    try:
        local, _ = read_results(folder / "scores")
        order_l = np.argsort(local["object_ids"])
        calibration = Calibration.load(folder / "run" / CALIBRATION_FILE)
        for name, client in (
            ("grpc", GrpcClient(f"127.0.0.1:{server.grpc_port}", signature=PLANES_SIGNATURE)),
            (
                "rest",
                RestClient(f"http://127.0.0.1:{server.rest_port}", signature=PLANES_SIGNATURE),
            ),
        ):
            config = ScoreConfig(batch_size=16, store_images=name == "grpc")
            score(
                None,
                folder / "ds",
                tmp_path / name,
                config,
                client=client,
                progress=False,
                echo=quiet,
            )
            remote, _ = read_results(tmp_path / name)
            order_r = np.argsort(remote["object_ids"])
            # Every term the planes enter, and the paper's; the critic-feature term (and so the
            # default score) subtracts two large sums, whose rounding in other batches the Beam
            # test bounds per object (tests/pipelines/test_beam.py, feature_term_atol).
            terms = [k for k in SCORE_KEYS if k not in ("scores", "feature_scores")]
            keys = [*terms, *(f"{k}_sigma" for k in terms)]
            assert_scores_close(
                {k: remote[k][order_r] for k in keys},
                {k: local[k][order_l] for k in keys},
                keys,
                calibration,
                err_msg=name,
            )
            np.testing.assert_array_equal(remote["n_masked"][order_r], local["n_masked"][order_l])
    finally:
        server.stop()
    # The stored cubes are in the data set's stretch (which this run was trained with), as the
    # data pipeline gives them.
    batch = next(iter(load_dataset(folder / "ds", 64)))
    with h5py.File(tmp_path / "grpc" / "results.h5") as f:
        where = {int(i): k for k, i in enumerate(f["object_ids"][...])}
        rows = [where[int(i)] for i in batch["object_id"].numpy()]
        np.testing.assert_allclose(f["reals"][...][rows], batch["image"].numpy(), atol=1e-6)


def test_planes_signature_refusals(planes_export, tmp_path):
    info = DatasetInfo.from_folder(planes_export["folder"] / "ds")
    assert remote_planes(PLANES_SIGNATURE, info, True) == ("variance", "mask")
    with pytest.raises(ConfigError, match="drop --no-planes"):
        remote_planes(PLANES_SIGNATURE, info, False)
    assert remote_planes("serving_default", info, True) == ()
    # The data set names the mask bits to leave out: without it there is nothing to export.
    folder = planes_export["folder"]
    (folder / "ds").rename(folder / "ds-away")
    try:
        with pytest.raises(ConfigError, match="calibrate again with --no-planes"):
            export(folder / "run", tmp_path / "models", scores_dir=folder / "scores")
    finally:
        (folder / "ds-away").rename(folder / "ds")


def test_beam_score_sends_the_planes_to_score_planes(planes_export, tmp_path):
    """`beam-score --signature score_planes`: the shards' variance and mask bits travel with the
    flux into RunInference, and the catalog equals the local one scored with the planes."""
    pytest.importorskip("apache_beam")
    from tfanomaly.pipelines.beam_score import BeamScoreConfig, beam_score

    folder = planes_export["folder"]
    config = BeamScoreConfig(
        signature=PLANES_SIGNATURE, min_batch_size=4, max_batch_size=8, parse_batch_size=16
    )
    beam_score(planes_export["path"], folder / "ds", tmp_path / "beam", config, echo=quiet)
    beam, _ = read_results(tmp_path / "beam")
    local, _ = read_results(folder / "scores")
    order = np.argsort(local["idxs"])
    terms = [k for k in SCORE_KEYS if k not in ("scores", "feature_scores")]
    keys = [*terms, *(f"{k}_sigma" for k in terms)]
    calibration = Calibration.load(folder / "run" / CALIBRATION_FILE)
    assert_scores_close(beam, {k: local[k][order] for k in keys}, keys, calibration)
    np.testing.assert_array_equal(beam["n_masked"], local["n_masked"][order])
    assert beam["n_masked"].any()
