"""Latent inversion and scoring: gradients, determinism, batch independence, streaming results,
resume, shards, sigma statistics, catalogs and the evaluation."""

import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from astropy.table import Table
from conftest import NET_RTOL, assert_scores_close, build_tiny_run, quiet

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.calibration import Calibration
from tfanomaly.models.config import get_preset
from tfanomaly.models.critic import Critic
from tfanomaly.models.encoder import Encoder
from tfanomaly.models.generator import Generator
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines import score as score_module
from tfanomaly.pipelines.config import CatalogConfig, ScoreConfig
from tfanomaly.pipelines.evaluate import BASELINES, evaluate, metrics, precision_at_k
from tfanomaly.pipelines.run import CALIBRATION_FILE
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import SCORE_KEYS, read_results

TINY = get_preset("tiny16")


def tiny_inverter(steps=10, seed=0):
    keras.utils.set_random_seed(seed)
    return LatentInverter(
        Generator(TINY), Critic(TINY), Encoder(TINY), InversionConfig(steps=steps)
    )


def images(n, seed=0):
    return tf.random.stateless_uniform((n, 16, 16, 3), seed=(seed, 0))


def test_first_adam_step_follows_the_gradient_of_the_objective():
    inverter = tiny_inverter(steps=1)
    x = images(4)
    features = inverter.critic(x)[1]
    z0 = inverter.encoder(x)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        loss = tf.reduce_sum(inverter.objective(x, features, z0)[0])
    grad = tape.gradient(loss, z0)
    z1 = inverter(x)["z"]
    # Adam's first step is lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps).
    expected = z0 - 0.1 * grad / (tf.abs(grad) + 1e-7)
    np.testing.assert_allclose(z1, expected, atol=1e-5)


def test_inversion_lowers_the_loss_and_encoder_only_is_the_same_path():
    x = images(6)
    start = tiny_inverter(steps=0)(x)
    np.testing.assert_array_equal(start["z"], tiny_inverter(steps=0).encoder(x))
    inverted = tiny_inverter(steps=30)(x)
    assert (inverted["anomaly_score"].numpy() < start["anomaly_score"].numpy()).all()
    lam = 0.3
    np.testing.assert_allclose(
        inverted["anomaly_score"],
        (1 - lam) * inverted["gen_score"] + lam * inverted["disc_score"],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        inverted["gen_score"], tf.reduce_sum(inverted["residual"], axis=[1, 2, 3]), rtol=1e-5
    )


def test_deterministic_and_independent_of_batch_neighbours():
    inverter = tiny_inverter(steps=10)
    x = images(8)
    first = inverter(x)
    again = inverter(x)
    for key in ("anomaly_score", "z", "reconstruction"):
        np.testing.assert_array_equal(first[key], again[key])
    other_neighbours = tf.concat([x[:1], images(7, seed=5)], axis=0)
    for batch in (x[:1], other_neighbours, x[:3]):  # alone, new neighbours, another batch size
        out = inverter(batch)
        # Equal to float32 rounding only: oneDNN picks kernels by batch shape (NET_RTOL).
        for key in ("anomaly_score", "gen_score", "disc_score"):
            np.testing.assert_allclose(out[key][0], first[key][0], rtol=NET_RTOL, err_msg=key)
        # z is O(1) and moves with the loss's gradient through 10 Adam steps of lr 0.1.
        np.testing.assert_allclose(out["z"][0], first["z"][0], atol=NET_RTOL)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A labelled 16-px survey and a (barely) trained tiny16 run on it."""
    return build_tiny_run(tmp_path_factory.mktemp("scoring"), 150, seed=4, anomaly_fraction=0.1)


def small(**kwargs):
    values = dict(batch_size=16, part_batches=2, inversion=InversionConfig(steps=3))
    values.update(kwargs)
    return ScoreConfig(**values)


def test_results_catalog_and_sigma(tiny_run, tmp_path):
    written = score(
        tiny_run / "run",
        tiny_run / "ds",
        tmp_path / "out",
        small(store_images=True, catalog=CatalogConfig(select_sigma=1.0)),
        progress=False,
        echo=quiet,
    )
    columns, attrs = read_results(tmp_path / "out", with_images=True)
    assert written["count"] == 150 and len(columns["object_ids"]) == 150
    for key in SCORE_KEYS:
        sigma = columns[f"{key}_sigma"]
        assert abs(sigma.mean()) < 1e-9 and abs(sigma.std() - 1) < 1e-9
        # The default score is a sum of standardised logs; every other score is a positive sum.
        assert key == "scores" or (columns[key] > 0).all()
    assert columns["reals"].shape == (150, 16, 16, 3)
    np.testing.assert_allclose(
        columns["residuals"], np.abs(columns["reals"] - columns["reconstructed"]), atol=1e-6
    )
    with h5py.File(tiny_run / "s.h5") as f:
        truth = dict(zip(f["object_ids"][:].tolist(), f["labels"][:].tolist(), strict=True))
    assert all(
        truth[int(i)] == label
        for i, label in zip(columns["object_ids"], columns["labels"], strict=True)
    )
    stats = json.loads((tmp_path / "out" / "score_stats.json").read_text())
    assert stats["scores"]["anomaly_scores"]["count"] == 150
    assert stats["inversion"]["steps"] == 3
    table = Table.read(tmp_path / "out" / "catalog.fits")
    assert table.colnames[:14] == [
        "idx",
        "object_id",
        "ra",
        "dec",
        "score_normalized",
        "residual_score_normalized",
        "feature_score_normalized",
        "linear_score_normalized",
        "extended_score_normalized",
        "morphology_score_normalized",
        "residual_shape_score_normalized",
        "discriminator_score_normalized",
        "generator_score_normalized",
        "combined_score_normalized",
    ]
    assert table["object_id"].dtype == np.uint64
    assert set(table["object_id"]) == set(columns["object_ids"].tolist())  # exact above 2**53
    assert (np.diff(table["score_normalized"]) <= 0).all()
    assert "kind" in table.colnames
    selection = Table.read(written["selection"])
    assert len(selection) == (table["score_normalized"] > 1.0).sum() > 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_other_catalog_formats_keep_ids(tiny_run, tmp_path, suffix):
    score(
        tiny_run / "run",
        tiny_run / "ds",
        tmp_path / "out",
        small(catalog=CatalogConfig(catalog_format=suffix[1:])),
        progress=False,
        echo=quiet,
    )
    path = tmp_path / "out" / f"catalog{suffix}"
    if suffix == ".parquet":  # read with pyarrow itself, as a pandas or Spark user would
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        assert str(table.schema.field("object_id").type) == "uint64"
        ids = table.column("object_id").to_pylist()
    else:
        ids = [int(i) for i in Table.read(path)["object_id"]]
    columns, _ = read_results(tmp_path / "out")
    assert sorted(ids) == sorted(columns["object_ids"].tolist())


def test_interrupted_scoring_resumes_to_the_same_result(tiny_run, tmp_path, monkeypatch):
    reference = score(
        tiny_run / "run", tiny_run / "ds", tmp_path / "ref", small(), progress=False, echo=quiet
    )
    real_part = score_module._score_part
    calls = []

    def interrupt_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_part(*args)

    monkeypatch.setattr(score_module, "_score_part", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        score(
            tiny_run / "run", tiny_run / "ds", tmp_path / "out", small(), progress=False, echo=quiet
        )
    assert len(list((tmp_path / "out" / ".parts").glob("part-*.npz"))) == 2
    assert not (tmp_path / "out" / "results.h5").exists()
    monkeypatch.setattr(score_module, "_score_part", real_part)
    messages = []
    score(
        tiny_run / "run",
        tiny_run / "ds",
        tmp_path / "out",
        small(),
        progress=False,
        echo=messages.append,
    )
    assert "resuming: 2 part(s)" in messages[0]
    resumed, _ = read_results(tmp_path / "out")
    expected, _ = read_results(reference["results"])
    for key in expected:
        np.testing.assert_array_equal(resumed[key], expected[key])
    assert not (tmp_path / "out" / ".parts").exists()


def test_shards_merge_to_the_whole(tiny_run, tmp_path):
    from tfanomaly.results.catalog import merge_results

    whole = score(
        tiny_run / "run", tiny_run / "ds", tmp_path / "whole", small(), progress=False, echo=quiet
    )
    parts = []
    for i in range(3):
        score(
            tiny_run / "run",
            tiny_run / "ds",
            tmp_path / f"part{i}",
            small(shard=(i, 3)),
            progress=False,
            echo=quiet,
        )
        parts.append(tmp_path / f"part{i}")
    assert sum(len(read_results(p)[0]["idxs"]) for p in parts) == 150
    merge_results(parts, tmp_path / "merged")
    merged, _ = read_results(tmp_path / "merged")
    expected, _ = read_results(whole["results"])
    order = np.argsort(expected["idxs"])
    np.testing.assert_array_equal(merged["object_ids"], expected["object_ids"][order])
    np.testing.assert_array_equal(merged["idxs"], expected["idxs"][order])
    # A shard's cutouts meet other batch neighbours than in the whole run: equal to rounding.
    expected = {key: values[order] for key, values in expected.items()}
    sigmas = [f"{key}_sigma" for key in SCORE_KEYS]
    calibration = Calibration.load(tiny_run / "run" / CALIBRATION_FILE)
    assert_scores_close(merged, expected, (*SCORE_KEYS, *sigmas), calibration)
    with pytest.raises(InputError, match="appears in more than one"):
        merge_results([parts[0], parts[0]], tmp_path / "dup")


def test_reference_statistics_for_new_images(tiny_run, tmp_path):
    score(tiny_run / "run", tiny_run / "ds", tmp_path / "ref", small(), progress=False, echo=quiet)
    stats = json.loads((tmp_path / "ref" / "score_stats.json").read_text())["scores"]
    score(
        tiny_run / "run",
        tiny_run / "ds",
        tmp_path / "new",
        small(shard=(0, 5)),
        reference=tmp_path / "ref" / "score_stats.json",
        progress=False,
        echo=quiet,
    )
    new, _ = read_results(tmp_path / "new")
    raw = new["disc_scores"].astype(np.float64)
    expected = (raw - stats["disc_scores"]["mean"]) / stats["disc_scores"]["std"]
    np.testing.assert_allclose(new["disc_scores_sigma"], expected)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="not a tfanomaly score_stats.json"):
        score(
            tiny_run / "run",
            tiny_run / "ds",
            tmp_path / "x",
            small(),
            reference=bad,
            progress=False,
            echo=quiet,
        )


def test_bad_score_options(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match="shard 3/3"):
        score(tiny_run / "run", tiny_run / "ds", tmp_path / "x", small(shard=(3, 3)), echo=quiet)
    with pytest.raises(ConfigError, match="no encoder.keras"):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "run.json").write_text((tiny_run / "run" / "run.json").read_text())
        for name in ("generator", "critic"):
            (tmp_path / "run" / f"{name}.keras").write_bytes(
                (tiny_run / "run" / f"{name}.keras").read_bytes()
            )
        score(tmp_path / "run", tiny_run / "ds", tmp_path / "x", small(), echo=quiet)
    (tmp_path / "run" / "encoder.keras").write_bytes(
        (tiny_run / "run" / "encoder.keras").read_bytes()
    )
    with pytest.raises(ConfigError, match=r"no calibration.npz .*run `tfanomaly calibrate"):
        score(tmp_path / "run", tiny_run / "ds", tmp_path / "x", small(), echo=quiet)


def test_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 0, 1, 0, 0, 0, 0, 1], bool)
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.4, 0.8, 0.0, 0.05, 0.15, 0.7])
    assert precision_at_k(labels, scores, 3) == pytest.approx(2 / 3)  # 0.9, 0.8, 0.7
    m = metrics(labels, scores)
    # 21 (positive, negative) pairs; 0.9 wins all 7, 0.7 and 0.4 lose only to 0.8: 19/21.
    assert m["auroc"] == pytest.approx(19 / 21)
    assert m["n_anomalies"] == 3 and m["precision_at_1pct"] == 1.0


def test_knn_distance_leaves_out_the_point_itself_by_id():
    from sklearn.neighbors import NearestNeighbors

    from tfanomaly.pipelines.evaluate import knn_distance

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 4))
    ids = np.arange(100, 150)
    neighbours = NearestNeighbors(n_neighbors=4).fit(reference)
    # Reference points seen again with rounding noise, and new points.
    points = np.concatenate([reference[:5] + 1e-9, rng.normal(size=(3, 4))])
    point_ids = np.concatenate([ids[:5], [7, 8, 9]])
    got = knn_distance(neighbours, ids, points, point_ids)
    for j, (p, i) in enumerate(zip(points, point_ids, strict=True)):
        d = np.linalg.norm(reference - p, axis=1)
        d = np.sort(d[ids != i])[:3]
        assert got[j] == pytest.approx(d.mean(), rel=1e-9)


def test_evaluate_table_with_baseline(tiny_run, tmp_path):
    score(tiny_run / "run", tiny_run / "ds", tmp_path / "out", small(), progress=False, echo=quiet)
    report = evaluate(tmp_path / "out")
    assert report["count"] == 150 and report["n_anomalies"] == 15
    assert {"all", "merger", "bad_column"} <= set(report["table"])
    row = report["table"]["all"]
    assert set(row) == {*SCORE_KEYS, *BASELINES}
    assert all(0 <= row[k]["auroc"] <= 1 for k in row)
    assert (tmp_path / "out" / "evaluation.csv").read_text().startswith("group,score,")


def test_example_cutouts_from_a_file_are_scored_as_the_catalog_and_seed_the_ranking(
    tiny_run, tmp_path
):
    """``rerank --like-cutouts``: cutouts that are not in the catalog are scored by the run that
    scored it (the same sigma reference and inversion: a copy of a catalog object gets its
    columns), join the ranking as interesting examples and raise the objects like them; the
    catalogs keep ranks 1..N with no example among them."""
    from click.testing import CliRunner

    from tfanomaly.cli import main
    from tfanomaly.pipelines.rerank import example_columns

    results = tmp_path / "out"
    score(tiny_run / "run", tiny_run / "ds", results, small(), progress=False, echo=quiet)
    columns, _ = read_results(results, with_vectors=True)
    with h5py.File(tiny_run / "s.h5") as f:
        flux, ids, kinds = f["images"][:], f["object_ids"][:], f["labels"][:]
    where = {int(i): r for r, i in enumerate(columns["object_ids"])}
    # Copies of catalog objects of the commonest anomalous kind, as a user's file of examples.
    kind = np.bincount(kinds[kinds > 0]).argmax()
    picked = np.flatnonzero(kinds == kind)[:3]
    found = example_columns(results, flux[picked])
    rows = np.array([where[int(i)] for i in ids[picked]])
    for key in ("scores_sigma", "disc_scores_sigma", "morphology", "residual_shape"):
        np.testing.assert_allclose(found[key], columns[key][rows], rtol=1e-3, atol=1e-3)
    np.save(tmp_path / "examples.npy", flux[picked])
    result = CliRunner().invoke(
        main,
        ["rerank", str(results), "--like-cutouts", str(tmp_path / "examples.npy")]
        + ["--query", "top"],
    )
    assert result.exit_code == 0, result.output
    assert f"{len(picked)} examples" in result.output
    table = Table.read(results / "catalog.fits")
    assert sorted(table["rerank_rank"].tolist()) == list(range(1, 151))
    record = json.loads((results / "rerank.json").read_text())
    assert len(picked) >= 2 and record["like_cutouts"]["count"] == len(picked)
    rank = dict(zip(table["object_id"].tolist(), table["rerank_rank"].tolist(), strict=True))
    before = dict(
        zip(
            columns["object_ids"].tolist(),
            (-columns["scores_sigma"]).argsort().argsort() + 1,
            strict=True,
        )
    )
    copies = [int(i) for i in ids[picked]]
    assert all(rank[i] <= before[i] for i in copies)
    assert np.mean([rank[i] for i in copies]) <= 15  # the first tenth
    # A file at another size: a message naming the shapes, no traceback.
    np.save(tmp_path / "wrong.npy", flux[:2, :8, :8])
    wrong = CliRunner().invoke(
        main, ["rerank", str(results), "--like-cutouts", str(tmp_path / "wrong.npy")]
    )
    assert wrong.exit_code != 0 and "(8, 8, 3)" in wrong.output and "(16, 16, 3)" in wrong.output
