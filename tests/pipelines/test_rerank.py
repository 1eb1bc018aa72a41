"""Re-ranking with labels (tfanomaly.pipelines.rerank): the Ranker the explorer calls, similarity
against brute force, features from image cubes, and ``rerank`` / ``tfanomaly rerank`` writing the
new columns into every catalog format with exact uint64 ids. Small synthetic results, no networks."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner
from conftest import BIG_ID, quiet

from tfanomaly.cli import main
from tfanomaly.errors import InputError
from tfanomaly.models.query import DEFAULT_QUERY, QUERIES
from tfanomaly.models.relevance import (
    ARTIFACT,
    INTERESTING,
    NORMAL,
    RelevanceConfig,
    label_targets,
    relevance_scores,
)
from tfanomaly.pipelines.config import RerankConfig
from tfanomaly.pipelines.rerank import (
    RERANK_RECORD,
    Ranker,
    features_from_cubes,
    read_catalog,
    read_labels,
    rerank,
    with_examples,
)
from tfanomaly.results.catalog import SCORE_KEYS, finalize, read_results
from tfanomaly.results.spaces import DEFAULT_SPACE

HUGE_IDS = [2**64 - 1, 2**63 + 1, 2**53 + 1]  # need all 64 bits; float64 would round them


def survey_columns(n=120, seed=0):
    """A scored catalog with vectors: a background, an interesting cluster (rows 100-109, modest
    scores) and an artifact cluster (rows 110-119, the highest scores); ids above 2**53."""
    rng = np.random.default_rng(seed)
    # the score columns from their own stream: the survey stays the same whatever the score terms
    terms = np.random.default_rng(seed + 1)
    columns = {key: terms.gamma(2.0, 1.0, n).astype(np.float32) for key in SCORE_KEYS}
    scores = rng.normal(0.0, 1.0, n)
    scores[100:110] = rng.uniform(1.0, 1.5, 10)
    scores[110:120] = rng.uniform(3.0, 4.0, 10)
    columns["scores"] = scores.astype(np.float32)
    axes = rng.normal(size=(n, 6))
    axes[100:110] = 0.2 * rng.normal(size=(10, 6)) + [6, 0, 0, 0, 0, 0]
    axes[110:120] = 0.2 * rng.normal(size=(10, 6)) + [0, 6, 0, 0, 0, 0]
    ids = np.uint64(BIG_ID) + np.arange(n, dtype=np.uint64)
    ids[[0, 105, 115]] = np.array(HUGE_IDS, dtype=np.uint64)
    columns.update(
        idxs=np.arange(n, dtype=np.int64),
        object_ids=ids,
        ra=rng.uniform(130, 140, n),
        dec=rng.uniform(-1, 4, n),
        labels=np.zeros(n, dtype=np.int64),
        feature_axes=axes.astype(np.float32),
        latents=rng.normal(size=(n, 4)).astype(np.float32),
    )
    return columns


@pytest.fixture
def results_dir(tmp_path):
    columns = survey_columns()
    folder = tmp_path / "scores"
    attrs = {"kind_names": json.dumps(["normal", "odd"])}
    finalize(folder, columns, [], attrs, catalog_format=".fits", select_sigma=1.0)
    return folder


def ranker_of(folder, feature_key="feature_axes", **kwargs) -> tuple[Ranker, dict]:
    columns, _ = read_results(folder, with_vectors=True)
    return Ranker.from_results(folder, feature_key, **kwargs), columns


def test_the_default_space_falls_back_to_one_the_file_has(results_dir):
    """Results scored before the residual's shape vectors existed: the default space gives way to
    the first stored one; a space asked for by name must be there."""
    assert Ranker.from_results(results_dir).space == "latents"
    with pytest.raises(InputError, match="no 'residual_shape, morphology' vectors"):
        Ranker.from_results(results_dir, RerankConfig.features)


# ---- Ranker ------------------------------------------------------------------------------------


def test_cold_start_is_the_anomaly_order(results_dir):
    ranker, columns = ranker_of(results_dir)
    expected = np.argsort(-columns["scores_sigma"], kind="stable")
    np.testing.assert_array_equal(ranker.order({}), expected)
    assert ranker.version == 1
    np.testing.assert_array_equal(np.argsort(-ranker.scores({}), kind="stable"), expected)
    assert ranker.version == 2  # every re-rank counts


def test_scores_are_relevance_scores_and_labelled_objects_come_last(results_dir):
    ranker, columns = ranker_of(results_dir, method="relevance")
    ids = columns["object_ids"]
    labels = {
        int(ids[100]): INTERESTING,
        int(ids[105]): INTERESTING,
        int(ids[112]): ARTIFACT,
        int(ids[3]): NORMAL,
    }
    expected = relevance_scores(
        columns["scores_sigma"],
        columns["feature_axes"],
        np.array([100, 105, 112, 3]),
        label_targets(list(labels.values())),
    )
    # The space standardises in float32 (results.spaces) as relevance_scores does, in another
    # order: a few float32 roundings of scores of a few units.
    np.testing.assert_allclose(ranker.scores(labels), expected, atol=1e-5)
    order = ranker.order(labels)
    assert sorted(order) == list(range(len(ids)))
    assert set(order[-4:]) == {100, 105, 112, 3}
    # the other members of the interesting cluster now come before every artifact
    position = np.argsort(order)
    cluster = [r for r in range(100, 110) if r not in (100, 105)]
    assert position[cluster].max() < position[[r for r in range(110, 120) if r != 112]].min()


def test_labels_are_checked(results_dir):
    ranker, columns = ranker_of(results_dir)
    with pytest.raises(InputError, match="123"):
        ranker.order({123: INTERESTING})
    with pytest.raises(InputError, match="boring"):
        ranker.order({int(columns["object_ids"][0]): "boring"})


def test_similar_against_brute_force(results_dir):
    ranker, columns = ranker_of(results_dir, feature_key="latents")
    x = columns["latents"].astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    ids = columns["object_ids"]
    for row in (0, 17, 105):
        d = np.sqrt(((x - x[row]) ** 2).sum(1))
        d[row] = np.inf
        expected = [int(i) for i in ids[np.argsort(d, kind="stable")[:7]]]
        got = ranker.similar(int(ids[row]), k=7)
        assert got == expected and int(ids[row]) not in got
        assert all(isinstance(i, int) for i in got)
    assert len(ranker.similar(int(ids[0]), k=1000)) == len(ids) - 1
    assert ranker.similar(int(ids[0]), k=0) == []
    with pytest.raises(InputError, match="not in this catalog"):
        ranker.similar(7)


def test_ranker_checks_its_inputs():
    ids = np.arange(3, dtype=np.uint64)
    with pytest.raises(InputError):
        Ranker(ids, np.zeros(3), np.zeros((2, 4)))
    with pytest.raises(InputError, match="unique"):
        Ranker(np.zeros(3, dtype=np.uint64), np.zeros(3), np.zeros((3, 4)))


def test_from_results_names_a_missing_feature_space(tmp_path):
    columns = {k: v for k, v in survey_columns().items() if k != "latents"}
    finalize(tmp_path / "r", columns, [], {})
    assert Ranker.from_results(tmp_path / "r").features.shape == (120, 6)
    with pytest.raises(InputError, match="latents.*feature_axes"):
        Ranker.from_results(tmp_path / "r", feature_key="latents")


# ---- features from cubes -----------------------------------------------------------------------


def test_features_from_cubes_are_pca_of_area_averages(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.random((50, 16, 16, 3)).astype(np.float32)
    cube[:25] += np.linspace(0, 1, 16)[None, :, None, None]  # some structure to find
    path = tmp_path / "paper.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("residuals", data=cube, chunks=(8, 16, 16, 3))
    features = features_from_cubes(path, size=4, components=5, chunk=7)
    assert features.shape == (50, 5) and features.dtype == np.float32
    small = cube.astype(np.float64).reshape(50, 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(50, -1)
    centred = small - small.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:5].T
    signs = np.sign((features * expected).sum(0))
    np.testing.assert_allclose(features * signs, expected, atol=1e-5)
    np.testing.assert_array_equal(features, features_from_cubes(path, size=4, components=5))
    with pytest.raises(InputError, match="reals"):
        features_from_cubes(path, cube="reals")
    with pytest.raises(InputError, match="5x5"):
        features_from_cubes(path, size=5)


# ---- rerank and the command line ---------------------------------------------------------------


def interesting_labels(columns) -> dict[int, str]:
    ids = columns["object_ids"]
    return {int(ids[100]): INTERESTING, int(ids[105]): INTERESTING, int(ids[115]): ARTIFACT}


@pytest.mark.parametrize("fmt", [".fits", ".csv", ".parquet"])
def test_rerank_writes_the_columns_into_every_catalog(tmp_path, fmt):
    columns = survey_columns()
    folder = tmp_path / "scores"
    finalize(folder, columns, [], {}, catalog_format=fmt, select_sigma=1.0)
    before = {p.name: read_catalog(p) for p in folder.glob(f"catalog*{fmt}")}
    assert len(before) == 2
    labels = interesting_labels(columns)
    written = rerank(folder, labels, echo=lambda *_: None)
    assert written["version"] == 1 and written["n_labels"] == 3
    assert sorted(p.name for p in written["catalogs"]) == sorted(before)
    ranker = Ranker.from_results(folder)
    score = ranker.scores(labels)
    for name, old in before.items():
        new = read_catalog(folder / name)
        assert new.colnames == [*old.colnames, "rerank_score", "rerank_rank", "to_label"]
        for column in old.colnames:
            np.testing.assert_array_equal(new[column], old[column])
        assert new["object_id"].dtype == np.uint64
        assert set(HUGE_IDS) & {int(i) for i in new["object_id"]}  # exact, not float-rounded
        rows = ranker.rows_of(np.asarray(new["object_id"], dtype=np.uint64))
        np.testing.assert_allclose(new["rerank_score"], score[rows], atol=1e-6)
        assert new["rerank_rank"].dtype.kind == "i"
    full = read_catalog(folder / f"catalog{fmt}")
    assert sorted(full["rerank_rank"]) == list(range(1, 121))
    shown = full[np.argsort(full["rerank_rank"])]
    batch = shown[:10]  # the batch to label first, in its order, then the rest by score
    assert list(batch["to_label"]) == list(range(1, 11))
    rest = shown[10:]
    assert (rest["to_label"] == 0).all()
    assert list(rest["rerank_score"]) == sorted(rest["rerank_score"], reverse=True)
    assert rerank(folder, labels, echo=lambda *_: None)["version"] == 2  # counted in rerank.json
    assert json.loads((folder / RERANK_RECORD).read_text())["labels"] == {
        INTERESTING: 2,
        ARTIFACT: 1,
        NORMAL: 0,
    }
    assert read_catalog(folder / f"catalog{fmt}").colnames == new.colnames  # replaced, not added


def test_read_labels_from_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(f"object_id,label\n{2**64 - 1},interesting\n17,artifact\n")
    assert read_labels(path) == {2**64 - 1: INTERESTING, 17: ARTIFACT}
    path.write_text("object_id,label\n17,boring\n")
    with pytest.raises(InputError, match="row 2.*boring"):
        read_labels(path)
    path.write_text("id,kind\n17,artifact\n")
    with pytest.raises(InputError, match="object_id"):
        read_labels(path)
    path.write_text("object_id,note\n17,odd\n")
    with pytest.raises(InputError, match="object_id,label"):
        read_labels(path)
    with pytest.raises(InputError, match="no such label file"):
        read_labels(tmp_path / "missing.sqlite")


def test_read_labels_from_the_label_store(tmp_path):
    from tfanomaly.results.labels import LabelStore

    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as store:
        store.set(2**64 - 1, label=INTERESTING)
        store.set(17, label=ARTIFACT)
        store.set(17, label=NORMAL)  # the latest label counts
        store.set(5, tags=["odd"])  # tags without a label: not a label
    assert read_labels(path) == {2**64 - 1: INTERESTING, 17: NORMAL}


def test_rerank_command(results_dir, tmp_path):
    columns, _ = read_results(results_dir, with_vectors=True)
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object_id", "label"])
        writer.writerows(interesting_labels(columns).items())
    result = CliRunner().invoke(
        main, ["rerank", str(results_dir), "--labels", str(labels), "--features", "latents"]
    )
    assert result.exit_code == 0, result.output
    assert "3 labels" in result.output and "latents" in result.output
    assert "rerank_rank" in Table.read(results_dir / "catalog.fits").colnames
    assert f"next to label ({DEFAULT_QUERY}): 10 objects" in result.output
    assert json.loads((results_dir / RERANK_RECORD).read_text())["features"] == "latents"
    missing = CliRunner().invoke(main, ["rerank", str(results_dir)])
    assert missing.exit_code == 1
    assert missing.output.startswith("error:") and RerankConfig.labels in missing.output
    assert "Traceback" not in missing.output
    from tfanomaly.results.labels import LabelStore

    with LabelStore(results_dir / RerankConfig.labels) as store:  # the default label file
        store.set(int(columns["object_ids"][3]), label=INTERESTING)
    result = CliRunner().invoke(main, ["rerank", str(results_dir)])
    assert result.exit_code == 0 and "1 labels" in result.output and "in latents" in result.output
    assert json.loads((results_dir / RERANK_RECORD).read_text())["version"] == 2


def test_rerank_config():
    assert RerankConfig().features == DEFAULT_SPACE == "residual_shape+morphology"
    with pytest.raises(Exception, match="unknown feature space"):
        RerankConfig(features="pixels").validate()
    assert RelevanceConfig() == RelevanceConfig()


# ---- the learned ranking: learning, random labels, examples, explain ---------------------------


def learning_survey(n=3000, seed=0):
    """A survey where what the user wants is not what scores highest: 40 wanted objects (a group
    in features 0-1, scores 1.5-3.5) and 40 artifacts (a group in features 2-3, the top scores),
    in a background of 2,920 normal objects. Score terms: a column that tracks the wanted group."""
    rng = np.random.default_rng(seed)
    kind = np.zeros(n, int)
    kind[:40], kind[40:80] = 1, 2
    features = rng.normal(size=(n, 6))
    features[:40, :2] += 4.0
    features[40:80, 2:4] += 4.0
    anomaly = rng.normal(size=n)
    anomaly[:40] = rng.uniform(1.5, 3.5, 40)
    anomaly[40:80] = rng.uniform(3.0, 4.5, 40)
    terms = {
        "extended_scores_sigma": rng.normal(size=n) + 2.0 * (kind == 1),
        "scores_sigma": anomaly,
    }
    ids = np.arange(n, dtype=np.uint64) + np.uint64(BIG_ID)
    return ids, anomaly, features, terms, kind


def area(score, target):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(target, score)


def scripted(ranker, ids, kind, want, rounds=3, batch=10, rng=None):
    """A scripted user labelling the top ``batch`` unlabelled objects each round (truthfully for
    the kinds ``want``; at random with ``rng``); the last scores and the labelled rows."""
    labels: dict[int, str] = {}
    score = ranker.scores(labels)
    for _ in range(rounds):
        score = score.copy()
        score[ranker.rows_of(list(labels))] = -np.inf
        for row in np.argsort(-score, kind="stable")[:batch]:
            if rng is not None:
                labels[int(ids[row])] = str(rng.choice([INTERESTING, ARTIFACT, NORMAL]))
            else:
                labels[int(ids[row])] = INTERESTING if kind[row] in want else ARTIFACT
        score = ranker.scores(labels)
    return score, ranker.rows_of(list(labels))


def test_the_ranker_learns_what_the_user_wants():
    ids, anomaly, features, terms, kind = learning_survey()
    ranker = Ranker(ids, anomaly, features, terms=terms)
    assert ranker.method == "learned"
    score, labelled = scripted(ranker, ids, kind, want={1})
    rest = np.setdiff1d(np.arange(len(ids)), labelled)
    target = kind[rest] == 1
    learned, default = area(score[rest], target), area(anomaly[rest], target)
    # better than the default by 0.02, or by half its way to 1 where it is nearer than that
    assert learned > 0.98 and learned - default > min(0.02, (1.0 - default) / 2), (learned, default)
    top = np.argsort(-np.where(np.isin(np.arange(len(ids)), labelled), -np.inf, score))[:30]
    assert (kind[top] == 1).sum() > (kind[np.argsort(-anomaly)[:30]] == 1).sum() + 10
    assert ranker.fitted.gate > 0


def test_one_interesting_label_lifts_its_like_before_the_gate_opens():
    """One wanted object among ten labels cannot pass a cross-validation (the gate stays shut),
    yet the classifier's best matches rise at once: more wanted objects in the first 30 than
    without the lift, every one of them explained as a best match."""
    import dataclasses

    from tfanomaly.models.preference import PreferenceConfig

    ids, anomaly, features, terms, kind = learning_survey(seed=3)
    anomaly = anomaly.copy()
    anomaly[:40] = np.linspace(0.5, 2.0, 40)  # the wanted kind, below the artifacts
    wanted = int(ids[39])  # the best-scored wanted object
    top = [int(i) for i in ids[np.argsort(-anomaly)[:9]] if int(i) != wanted][:9]
    labels = {wanted: INTERESTING, **dict.fromkeys(top, ARTIFACT)}
    found = {}
    for lift in (0.0, PreferenceConfig().lift):
        ranker = Ranker(
            ids,
            anomaly,
            features,
            terms=terms,
            preference=dataclasses.replace(PreferenceConfig(), lift=lift),
        )
        order = ranker.order(labels)
        assert ranker.fitted.gate == 0
        found[lift] = int((kind[order[:30]] == 1).sum())
    assert found[PreferenceConfig().lift] >= found[0.0] + 10, found
    first = int(ids[order[0]])
    assert kind[order[0]] == 1
    why = ranker.explain(first)
    assert "best matches" in why["summary"]
    assert any(c["name"] == "a best match of the labels' classifier" for c in why["contributions"])


def test_random_labels_stay_within_0_01_auroc_of_the_default():
    """Labels that carry no information (a random labeller, five rounds of ten) must not move the
    ranking: the gate stays shut, AUROC within 0.01 of the anomaly order's."""
    ids, anomaly, features, terms, kind = learning_survey(seed=1)
    ranker = Ranker(ids, anomaly, features, terms=terms)
    for seed in range(5):
        score, labelled = scripted(
            ranker, ids, kind, {1}, rounds=5, rng=np.random.default_rng(seed)
        )
        rest = np.setdiff1d(np.arange(len(ids)), labelled)
        target = kind[rest] > 0
        assert abs(area(score[rest], target) - area(anomaly[rest], target)) <= 0.01, seed


@pytest.mark.parametrize("query", QUERIES)
def test_random_labels_of_each_query_stay_within_0_01_auroc_of_the_default(query):
    """The same with the objects each query strategy shows (diverse ones reach far from the top)."""
    ids, anomaly, features, terms, kind = learning_survey(seed=1)
    ranker = Ranker(ids, anomaly, features, terms=terms)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        labels: dict[int, str] = {}
        score = ranker.scores(labels)
        for _ in range(5):
            for oid in ranker.to_label(query, 10):
                labels[oid] = str(rng.choice([INTERESTING, ARTIFACT, NORMAL]))
            score = ranker.scores(labels)
        rest = np.setdiff1d(np.arange(len(ids)), ranker.rows_of(list(labels)))
        target = kind[rest] > 0
        assert abs(area(score[rest], target) - area(anomaly[rest], target)) <= 0.01, seed


def test_a_diverse_user_finds_a_kind_the_top_never_shows():
    """Wanted objects scoring below a block of artifacts: labelling the top 10 three times never
    meets one, a diverse or mixed batch does, and the ranking then brings them up."""
    ids, anomaly, features, terms, kind = learning_survey(seed=2)
    anomaly = anomaly.copy()
    anomaly[:40] = np.linspace(1.0, 2.0, 40)  # below the 40 artifacts and the top of the rest
    ranker = Ranker(ids, anomaly, features, terms=terms)
    found = {}
    for query in ("top", "mixed", "diverse"):
        labels: dict[int, str] = {}
        ranker.scores(labels)
        for _ in range(3):
            for oid in ranker.to_label(query, 10):
                labels[oid] = INTERESTING if kind[ranker.rows_of([oid])[0]] == 1 else ARTIFACT
            score = ranker.scores(labels)
        rest = np.setdiff1d(np.arange(len(ids)), ranker.rows_of(list(labels)))
        found[query] = area(score[rest], kind[rest] == 1)
    for query in ("mixed", "diverse"):
        assert found[query] > 0.95 and found[query] > found["top"] + 0.02, found


def test_cold_start_from_examples():
    ids, anomaly, features, terms, kind = learning_survey()
    ranker = Ranker(ids, anomaly, features, terms=terms)
    score = ranker.scores({}, like=[int(ids[3]), int(ids[7])])
    top = np.argsort(-score, kind="stable")[:40]
    assert (kind[top] == 1).mean() > 0.8  # the default's top 40 is mostly artifacts
    assert (kind[np.argsort(-anomaly)[:40]] == 1).mean() < 0.5
    # a label given wins over an example: the same object labelled artifact is no example
    assert (
        ranker.scores(
            {int(ids[3]): ARTIFACT, int(ids[7]): ARTIFACT}, like=[int(ids[3]), int(ids[7])]
        ).argmax()
        != 3
    )


def test_explain_names_the_terms_and_the_labelled_neighbours():
    ids, anomaly, features, terms, kind = learning_survey()
    ranker = Ranker(
        ids, anomaly, features, terms=terms, blocks=[("residual_shape", 4), ("morphology", 2)]
    )
    plain = ranker.explain(int(ids[5]))
    assert plain["contributions"][0]["name"] == "anomaly score" and plain["neighbours"] == []
    assert plain["rank"] == int((anomaly > anomaly[5]).sum()) + 1
    labels = {int(ids[r]): INTERESTING for r in range(8)}  # 8 against 8: enough to open the gate
    labels.update({int(ids[r]): ARTIFACT for r in range(40, 48)})
    score = ranker.scores(labels)
    why = ranker.explain(int(ids[10]))
    assert why["rank"] == int((score > score[10]).sum()) + 1
    assert why["gate"] > 0 and "classifier" in why["summary"]
    names = [c["name"] for c in why["contributions"]]
    assert names[0] == "anomaly score" and len(names) <= 5
    assert all(n.endswith("(labels)") for n in names[1:])
    assert {n.removesuffix(" (labels)") for n in names[1:]} <= {
        "residual_shape",
        "morphology",
        "extended_scores_sigma",
        "scores_sigma",
        "anomaly score",
    }
    # the wanted group's own block pushes it up: features 0-1 are in residual_shape
    assert any(
        c["name"] == "residual_shape (labels)" and c["value"] > 0 for c in why["contributions"]
    )
    near = why["neighbours"]
    assert len(near) == 3 and all(n["label"] == INTERESTING for n in near)
    assert near[0]["distance"] <= near[-1]["distance"]
    with pytest.raises(InputError):
        ranker.explain(7)


def test_rerank_command_like(results_dir):
    columns, _ = read_results(results_dir, with_vectors=True)
    ids = columns["object_ids"]
    result = CliRunner().invoke(
        main,
        [
            "rerank",
            str(results_dir),
            "--features",
            "feature_axes",
            "--like",
            f"{ids[101]},{ids[102]}",
            "--query",
            "top",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 examples" in result.output
    table = read_catalog(results_dir / "catalog.fits")
    rank = {int(i): int(r) for i, r in zip(table["object_id"], table["rerank_rank"], strict=True)}
    cluster = [rank[int(i)] for i in ids[100:110] if int(i) in rank]
    assert cluster and max(cluster) <= 12  # the interesting cluster comes first
    record = json.loads((results_dir / RERANK_RECORD).read_text())
    assert record["like"] == [str(ids[101]), str(ids[102])] and record["method"] == "learned"
    bad = CliRunner().invoke(main, ["rerank", str(results_dir), "--like", "12345"])
    assert bad.exit_code == 1 and "12345" in bad.output


def test_rerank_writes_the_next_batch_to_label(results_dir):
    columns, _ = read_results(results_dir, with_vectors=True)
    labels = interesting_labels(columns)
    done = rerank(
        results_dir, labels, feature_key="feature_axes", query="diverse", batch=5, echo=quiet
    )
    ranker, _ = ranker_of(results_dir)
    ranker.scores(labels)
    assert done["to_label"] == ranker.to_label("diverse", 5)
    assert not set(done["to_label"]) & set(labels)
    table = Table.read(results_dir / "catalog.fits")
    ids = np.asarray(table["object_id"], dtype=np.uint64)
    batch = {int(i): int(p) for i, p in zip(ids, table["to_label"], strict=True) if p}
    assert batch == {oid: k + 1 for k, oid in enumerate(done["to_label"])}
    record = json.loads((results_dir / RERANK_RECORD).read_text())
    assert record["query"] == "diverse" and record["to_label"] == [str(i) for i in done["to_label"]]
    top = rerank(results_dir, labels, feature_key="feature_axes", query="top", echo=quiet)
    score = ranker.scores(labels)
    score[ranker.rows_of(list(labels))] = -np.inf
    assert top["to_label"] == [int(i) for i in columns["object_ids"][np.argsort(-score)[:10]]]
    result = CliRunner().invoke(
        main, ["rerank", str(results_dir), "--like", str(ids[1]), "--query", "wide"]
    )
    assert result.exit_code == 2 and "wide" in result.output


def test_order_puts_the_query_batch_first(results_dir):
    ranker, columns = ranker_of(results_dir)
    labels = interesting_labels(columns)
    plain = ranker.order(labels)
    mixed = ranker.order(labels, query="mixed", batch=10)
    first = ranker.rows_of(ranker.to_label("mixed", 10))
    assert mixed[:10].tolist() == first.tolist() and sorted(mixed) == sorted(plain)
    assert mixed[:7].tolist() == plain[:7].tolist()
    rest = [r for r in plain if r not in set(first.tolist())]
    assert mixed[10:].tolist() == rest


def test_example_vectors_from_a_later_version_read_the_catalog_s_columns():
    """Example cutouts scored today against a catalog scored before later parameters (which come
    last): the examples keep the catalog's columns; vectors with fewer values are refused."""
    columns = {
        "object_ids": np.array([5, 9], np.uint64),
        "scores_sigma": np.array([0.1, 2.0]),
        "morphology": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    examples = {"scores_sigma": np.array([1.0]), "morphology": np.array([[7.0, 8.0, 9.0, 10.0]])}
    joined, ids = with_examples(columns, examples)
    assert ids == [10] and joined["object_ids"].tolist() == [5, 9, 10]
    np.testing.assert_array_equal(joined["morphology"][-1], [7.0, 8.0, 9.0])
    with pytest.raises(InputError, match="'morphology' vectors of 2 values, the catalog's have 3"):
        with_examples(columns, {**examples, "morphology": np.array([[7.0, 8.0]])})
