"""The results HDF5, the sigma statistics, the catalogs and merging (tfanomaly.results.catalog),
on columns built by hand: no networks involved."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from astropy.table import Table
from conftest import BIG_ID

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.results.catalog import (
    CATALOG_COLUMNS,
    COLUMN_KEYS,
    IMAGE_KEYS,
    SCORE_KEYS,
    STATS_FILE,
    catalog_table,
    finalize,
    merge_results,
    read_results,
    read_statistics,
    score_statistics,
    select,
    sigma_scores,
    write_catalog,
    write_results,
)

KINDS = ["normal", "ring", "merger"]
HUGE_IDS = [2**64 - 1, 2**63 + 1, 2**53 + 1]  # need all 64 bits; float64 would round them


def make_columns(n=12, seed=0, idx_start=0, idx_step=1) -> dict[str, np.ndarray]:
    """A scored catalog as the scorer gathers it: float32 scores, uint64 ids (three of them
    above 2**53), float64 sky positions, int64 labels with some unknown (-1)."""
    rng = np.random.default_rng(seed)
    columns = {
        key: rng.gamma(2.0, 1.0 + k, n).astype(np.float32) for k, key in enumerate(SCORE_KEYS)
    }
    ids = np.uint64(BIG_ID) + np.uint64(1000 * seed) + np.arange(n, dtype=np.uint64)
    ids[:3] = np.array(HUGE_IDS, dtype=np.uint64) - np.uint64(seed)
    columns.update(
        n_masked=rng.integers(0, 5, n).astype(np.int32),
        idxs=idx_start + idx_step * np.arange(n, dtype=np.int64),
        object_ids=ids,
        ra=rng.uniform(130, 140, n),
        dec=rng.uniform(-1, 4, n),
        labels=(np.arange(n) % 4 - 1).astype(np.int64),  # -1, 0, 1, 2, -1, ...
    )
    return columns


def write_part(path, columns, rows, cubes=IMAGE_KEYS, size=16, seed=0):
    """A part file as ``score`` writes it (np.savez), holding the image cubes of ``rows``."""
    rng = np.random.default_rng(seed)
    data = {key: values[rows] for key, values in columns.items()}
    arrays = {key: rng.random((len(rows), size, size, 3)).astype(np.float32) for key in cubes}
    np.savez(path, **data, **arrays)
    return arrays


# ---- statistics and sigma ---------------------------------------------------------------------


def test_score_statistics_against_numpy():
    columns = make_columns(50)
    stats = score_statistics({**columns, "umap_x": np.zeros(50)})
    assert list(stats) == list(SCORE_KEYS)  # only the scores, in their order
    for key in SCORE_KEYS:
        values = columns[key].astype(np.float64)
        assert stats[key] == {"mean": values.mean(), "std": values.std(), "count": 50}
        assert isinstance(stats[key]["mean"], float) and isinstance(stats[key]["count"], int)
    json.dumps(stats)  # plain Python numbers: the statistics go into score_stats.json


def test_sigma_scores_against_numpy():
    columns = make_columns(30, seed=1)
    reference = score_statistics(make_columns(40, seed=2))  # another catalog's statistics
    sigma = sigma_scores(columns, reference)
    assert list(sigma) == [f"{key}_sigma" for key in SCORE_KEYS]
    for key in SCORE_KEYS:
        raw = columns[key].astype(np.float64)
        expected = (raw - reference[key]["mean"]) / reference[key]["std"]
        assert sigma[f"{key}_sigma"].dtype == np.float64
        np.testing.assert_allclose(sigma[f"{key}_sigma"], expected, rtol=1e-15, atol=0)
    own = sigma_scores(columns, score_statistics(columns))
    for values in own.values():  # against its own statistics: mean 0, std 1
        assert abs(values.mean()) < 1e-12 and abs(values.std() - 1) < 1e-12


def test_sigma_of_a_constant_score_is_finite():
    columns = make_columns(5)
    columns["gen_scores"] = np.full(5, 3.0, np.float32)
    stats = score_statistics(columns)
    assert stats["gen_scores"]["std"] == 0.0
    np.testing.assert_array_equal(sigma_scores(columns, stats)["gen_scores_sigma"], np.zeros(5))


def test_read_statistics(tmp_path):
    stats = score_statistics(make_columns())
    (tmp_path / STATS_FILE).write_text(json.dumps({"scores": stats, "run": "r"}))
    assert read_statistics(tmp_path / STATS_FILE) == stats
    with pytest.raises(InputError, match=r"missing\.json: cannot read score statistics"):
        read_statistics(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"scores": ')
    with pytest.raises(InputError, match=r"bad\.json: cannot read score statistics: Expecting"):
        read_statistics(tmp_path / "bad.json")
    del stats[SCORE_KEYS[2]], stats[SCORE_KEYS[4]]
    (tmp_path / "part.json").write_text(json.dumps({"scores": stats}))
    with pytest.raises(InputError) as info:
        read_statistics(tmp_path / "part.json")
    assert str(info.value) == (
        f"{tmp_path / 'part.json'}: not a tfanomaly {STATS_FILE} "
        f"(missing {SCORE_KEYS[2]}, {SCORE_KEYS[4]})"
    )
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(InputError, match=f"missing {', '.join(SCORE_KEYS)}"):
        read_statistics(tmp_path / "empty.json")


# ---- the results HDF5 --------------------------------------------------------------------------


def test_results_round_trip_without_images(tmp_path):
    columns = make_columns()
    stats = score_statistics(columns)
    attrs = {"run": "/runs/a", "inversion": {"steps": 3}, "kinds": ["a", "b"], "count": 12}
    write_results(tmp_path / "results.h5", columns, [], attrs, stats)
    for where in (tmp_path / "results.h5", tmp_path):  # the file or the folder holding it
        got, got_attrs = read_results(where)
        assert set(got) == {*columns, *(f"{k}_sigma" for k in SCORE_KEYS)}
        for key, values in columns.items():
            assert got[key].dtype == values.dtype, key
            np.testing.assert_array_equal(got[key], values)
        for key, values in sigma_scores(columns, stats).items():
            np.testing.assert_array_equal(got[key], values)
        assert [int(i) for i in got["object_ids"][:3]] == HUGE_IDS
        assert got_attrs["run"] == "/runs/a" and got_attrs["count"] == 12
        assert json.loads(got_attrs["inversion"]) == {"steps": 3}  # structures as JSON text
        assert json.loads(got_attrs["kinds"]) == ["a", "b"]
    assert not list(tmp_path.glob(".*partial*"))  # written atomically, nothing left over


def test_results_with_image_cubes_from_parts(tmp_path):
    columns = make_columns(10)
    parts, expected = [], {key: [] for key in IMAGE_KEYS}
    for k, rows in enumerate((range(0, 4), range(4, 7), range(7, 10))):
        path = tmp_path / f"part-{k:06d}.npz"
        for key, cube in write_part(path, columns, list(rows), seed=k).items():
            expected[key].append(cube)
        parts.append(path)
    write_results(tmp_path / "results.h5", columns, parts, {}, score_statistics(columns))
    with_images, _ = read_results(tmp_path, with_images=True)
    for key in IMAGE_KEYS:
        assert with_images[key].dtype == np.float32 and with_images[key].shape == (10, 16, 16, 3)
        np.testing.assert_array_equal(with_images[key], np.concatenate(expected[key]))
    np.testing.assert_array_equal(with_images["object_ids"], columns["object_ids"])
    without, _ = read_results(tmp_path)
    assert not set(IMAGE_KEYS) & set(without) and set(without) == set(with_images) - set(IMAGE_KEYS)
    with h5py.File(tmp_path / "results.h5") as f:
        assert f["reals"].compression == "gzip" and f["reals"].chunks == (10, 16, 16, 3)


def test_only_the_cubes_the_parts_hold(tmp_path):
    columns = make_columns(6)
    write_part(tmp_path / "p0.npz", columns, [0, 1, 2], cubes=("reals",))
    write_part(tmp_path / "p1.npz", columns, [3, 4, 5], cubes=("reals",))
    parts = [tmp_path / "p0.npz", tmp_path / "p1.npz"]
    write_results(tmp_path / "results.h5", columns, parts, {}, score_statistics(columns))
    got, _ = read_results(tmp_path, with_images=True)
    assert "reals" in got and "reconstructed" not in got and "residuals" not in got
    write_part(tmp_path / "p2.npz", columns, [0, 1, 2, 3, 4, 5], cubes=())
    write_results(
        tmp_path / "bare.h5", columns, [tmp_path / "p2.npz"], {}, score_statistics(columns)
    )
    assert not set(IMAGE_KEYS) & set(read_results(tmp_path / "bare.h5", with_images=True)[0])


def test_read_results_errors(tmp_path):
    with pytest.raises(InputError) as info:
        read_results(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'results.h5'}: no such results file; run `tfanomaly score` first"
    )
    (tmp_path / "junk.h5").write_bytes(b"no hdf5 here" * 50)
    with pytest.raises(InputError, match=r"junk\.h5: not a readable results file"):
        read_results(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "old.h5", "w") as f:  # an older layout: no default score
        for key in (*SCORE_KEYS[3:], "object_ids", "idxs"):
            f[key] = np.zeros(3)
    with pytest.raises(InputError) as info:
        read_results(tmp_path / "old.h5")
    assert str(info.value) == (
        f"{tmp_path / 'old.h5'}: not a results file of this tfanomaly version (missing "
        f"{', '.join(SCORE_KEYS[:3])}); score the data again with `tfanomaly score`"
    )


# ---- catalogs ----------------------------------------------------------------------------------


def sigma_columns(columns):
    return {**columns, **sigma_scores(columns, score_statistics(columns))}


def test_catalog_table_columns_and_order():
    columns = sigma_columns(make_columns(12))
    columns["labels"][5] = 7  # a label past the kind names
    table = catalog_table(columns, KINDS)
    assert table.colnames == [
        "idx",
        "object_id",
        "ra",
        "dec",
        *CATALOG_COLUMNS,
        "n_masked",
        "label",
        "kind",
    ]
    assert table["idx"].dtype == np.int64 and table["object_id"].dtype == np.uint64
    assert table["label"].dtype == np.int64
    assert (np.diff(table["score_normalized"]) <= 0).all()  # highest first
    expected = np.argsort(-columns[CATALOG_COLUMNS["score_normalized"]], kind="stable")
    np.testing.assert_array_equal(table["idx"], columns["idxs"][expected])
    rows = {int(i): k for k, i in enumerate(columns["object_ids"])}
    for row in table:  # each row's values are that object's
        k = rows[int(row["object_id"])]
        assert row["idx"] == columns["idxs"][k] and row["ra"] == columns["ra"][k]
        assert row["dec"] == columns["dec"][k] and row["label"] == columns["labels"][k]
        for name, key in CATALOG_COLUMNS.items():
            assert row[name] == columns[key][k], name
        label = columns["labels"][k]
        assert row["kind"] == (KINDS[label] if 0 <= label < 3 else "")
    assert {int(i) for i in table["object_id"]} >= set(HUGE_IDS)


def test_catalog_table_optional_columns():
    columns = sigma_columns(make_columns(6))
    del columns["ra"], columns["dec"]
    columns["labels"][:] = -1  # nothing known: no label column at all
    columns["umap_x"], columns["umap_y"] = np.arange(6.0), -np.arange(6.0)
    columns["cluster"] = np.array([0, 0, 1, 1, -1, 2])
    table = catalog_table(columns)
    assert table.colnames == [
        "idx",
        "object_id",
        "ra",
        "dec",
        *CATALOG_COLUMNS,
        "n_masked",
        "umap_x",
        "umap_y",
        "cluster",
    ]
    assert np.isnan(table["ra"]).all() and np.isnan(table["dec"]).all()
    for row in table:
        k = int(row["idx"])
        assert (row["umap_x"], row["umap_y"], row["cluster"]) == (k, -k, columns["cluster"][k])
    columns["labels"][2] = 1
    with_labels = catalog_table(columns)  # labels but no kind names: no kind column
    assert "label" in with_labels.colnames and "kind" not in with_labels.colnames


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".parquet", ".FITS"])
def test_write_catalog_keeps_uint64_ids(tmp_path, suffix):
    columns = sigma_columns(make_columns(8))
    table = catalog_table(columns, KINDS)
    path = write_catalog(table, tmp_path / f"catalog{suffix}")
    assert path == tmp_path / f"catalog{suffix}" and path.exists()
    assert not list(tmp_path.glob(".*partial*"))
    if suffix == ".csv":  # the text holds every digit, as any CSV reader sees it
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        ids = [int(row["object_id"]) for row in rows]
        assert [float(row["score_normalized"]) for row in rows] == list(table["score_normalized"])
        assert [row["kind"] for row in rows] == list(table["kind"])
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        read = pq.read_table(path)
        assert str(read.schema.field("object_id").type) == "uint64"
        ids = read.column("object_id").to_pylist()
        assert read.column("score_normalized").to_pylist() == list(table["score_normalized"])
    else:
        read = Table.read(path, format="fits")
        assert read["object_id"].dtype == np.uint64 and read.colnames == table.colnames
        ids = [int(i) for i in read["object_id"]]
        np.testing.assert_array_equal(read["score_normalized"], table["score_normalized"])
    assert ids == [int(i) for i in table["object_id"]]  # same order, exact
    assert set(HUGE_IDS) <= set(ids)


def test_write_catalog_unknown_format(tmp_path):
    table = catalog_table(sigma_columns(make_columns(3)))
    with pytest.raises(ConfigError) as info:
        write_catalog(table, tmp_path / "catalog.xlsx")
    assert str(info.value) == (
        f"{tmp_path / 'catalog.xlsx'}: unknown catalog format; use one of .fits, .csv, .parquet"
    )
    assert list(tmp_path.iterdir()) == []


def test_select():
    table = catalog_table(sigma_columns(make_columns(40, seed=3)))
    for key in ("score_normalized", "generator_score_normalized"):
        chosen = select(table, key, 1.0)
        assert len(chosen) == int((np.asarray(table[key]) > 1.0).sum()) > 0
        assert (chosen[key] > 1.0).all()
    threshold = float(table["score_normalized"][4])  # strictly above: the 5th row is left out
    assert len(select(table, "score_normalized", threshold)) == 4
    with pytest.raises(ConfigError, match="no catalog column 'scores'; choose one of score_normal"):
        select(table, "scores", 1.0)


# ---- finalize and merge -------------------------------------------------------------------------


def test_finalize_writes_everything(tmp_path):
    columns = make_columns(20, seed=4)
    attrs = {
        "run": "/runs/x",
        "inversion": json.dumps({"steps": 2}),
        "kind_names": json.dumps(KINDS),
    }
    written = finalize(
        tmp_path / "out", columns, [], attrs, catalog_format=".csv", select_sigma=0.5
    )
    assert written["results"] == tmp_path / "out" / "results.h5"
    assert written["stats"] == tmp_path / "out" / STATS_FILE
    assert written["catalog"] == tmp_path / "out" / "catalog.csv"
    assert written["selection"] == tmp_path / "out" / "catalog_sigma0.5.csv"
    stats_file = json.loads(written["stats"].read_text())
    assert stats_file["scores"] == score_statistics(columns)
    assert stats_file["reference"] == "this catalog" and stats_file["run"] == "/runs/x"
    assert stats_file["inversion"] == {"steps": 2}
    got, got_attrs = read_results(written["results"])
    np.testing.assert_array_equal(got["object_ids"], columns["object_ids"])
    for key, values in sigma_scores(columns, score_statistics(columns)).items():
        np.testing.assert_array_equal(got[key], values)
    assert json.loads(got_attrs["kind_names"]) == KINDS
    with open(written["catalog"], newline="") as handle:
        catalog = list(csv.DictReader(handle))
    assert len(catalog) == 20 and {row["kind"] for row in catalog} == {"", *KINDS}
    assert sorted(int(row["object_id"]) for row in catalog) == sorted(
        map(int, columns["object_ids"])
    )
    scores = [float(row["score_normalized"]) for row in catalog]
    assert scores == sorted(scores, reverse=True)
    sigma = got[CATALOG_COLUMNS["score_normalized"]]
    assert written["n_selected"] == int((sigma > 0.5).sum()) > 0
    with open(written["selection"], newline="") as handle:
        selection = list(csv.DictReader(handle))
    assert len(selection) == written["n_selected"]
    assert all(float(row["score_normalized"]) > 0.5 for row in selection)


def test_finalize_against_reference_statistics(tmp_path):
    reference = score_statistics(make_columns(50, seed=5))
    (tmp_path / "ref.json").write_text(json.dumps({"scores": reference}))
    columns = make_columns(7, seed=6)
    written = finalize(tmp_path / "out", columns, [], {}, reference=tmp_path / "ref.json")
    assert "selection" not in written and written["catalog"].suffix == ".fits"
    got, _ = read_results(tmp_path / "out")
    for key, values in sigma_scores(columns, reference).items():
        np.testing.assert_array_equal(got[key], values)
    stats_file = json.loads(written["stats"].read_text())
    assert stats_file["scores"] == reference
    assert stats_file["reference"] == str(tmp_path / "ref.json")
    assert stats_file["run"] is None and stats_file["inversion"] is None
    assert "kind" not in Table.read(written["catalog"]).colnames  # no kind names given


def test_merge_results_is_the_union(tmp_path):
    """Two ``score --shard i/2`` results (idxs interleaved) merge into the whole, in idx order,
    with the sigma values over the union."""
    whole = make_columns(14, seed=7)
    halves = []
    for i in range(2):
        rows = np.arange(i, 14, 2)
        part = {key: values[rows] for key, values in whole.items()}
        attrs = {"run": "/runs/m", "shard": f"{i}/2", "inversion": json.dumps({"steps": 1})}
        finalize(tmp_path / f"part{i}", part, [], attrs)
        halves.append(tmp_path / f"part{i}")
    written = merge_results(halves, tmp_path / "merged", catalog_format=".parquet")
    assert written["catalog"] == tmp_path / "merged" / "catalog.parquet"
    merged, attrs = read_results(tmp_path / "merged")
    assert set(merged) == {*SCORE_KEYS, *COLUMN_KEYS, *(f"{k}_sigma" for k in SCORE_KEYS)}
    for key in (*SCORE_KEYS, *COLUMN_KEYS):
        np.testing.assert_array_equal(merged[key], whole[key], err_msg=key)
    for key, values in sigma_scores(whole, score_statistics(whole)).items():
        np.testing.assert_allclose(merged[key], values, rtol=1e-12, atol=1e-12, err_msg=key)
    half, _ = read_results(halves[0])  # each half alone has other sigma values
    assert not np.allclose(half["scores_sigma"], merged["scores_sigma"][::2])
    assert "shard" not in attrs and attrs["run"] == "/runs/m"
    assert json.loads(attrs["merged_from"]) == [str(p) for p in halves]
    assert json.loads(written["stats"].read_text())["scores"] == score_statistics(whole)


def test_merge_results_refuses_duplicates(tmp_path):
    columns = make_columns(6, seed=8)
    finalize(tmp_path / "a", columns, [], {})
    other = make_columns(6, seed=9, idx_start=100)
    other["object_ids"][4] = columns["object_ids"][1]  # 2**63 + 1 - 8, in both
    finalize(tmp_path / "b", other, [], {})
    with pytest.raises(InputError) as info:
        merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert str(info.value) == (
        f"object {2**63 + 1 - 8} appears in more than one of the merged results"
    )
    assert not (tmp_path / "merged" / "results.h5").exists()
