"""The tf.data pipeline (tfanomaly.data.dataset) and the manifest (tfanomaly.data.manifest) over a
small ingested folder: 23 cutouts in shards of 5 (5, 5, 5, 5, 3)."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import BIG_ID, make_cutouts, write_h5

from tfanomaly.data.dataset import dataset_stretch, image_dataset, load_dataset
from tfanomaly.data.manifest import MANIFEST, STATE, DatasetInfo, read_manifest, verify
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError, DatasetError
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.ingest import ingest

N = 23
KINDS = ["normal", "ring", "merger"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """(data set folder, the source HDF5 path): ingested once for the module; tests that change
    files work on a copy."""
    folder = tmp_path_factory.mktemp("dataset")
    source = write_h5(
        folder / "s.h5",
        make_cutouts(N, seed=4),
        labels=np.arange(N) % 3,
        kind_names=json.dumps(KINDS),
    )
    ingest(source, folder / "ds", IngestConfig(shard_size=5), progress=False)
    return folder / "ds", source


@pytest.fixture
def ds_copy(survey, tmp_path):
    return shutil.copytree(survey[0], tmp_path / "ds")


def columns_of(dataset) -> dict:
    """Every column of a dataset of batches, in the order it yields them."""
    columns: dict[str, list] = {}
    for batch in dataset:
        for key, value in batch.items():
            columns.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in columns.items()}


def ids_of(dataset) -> list[int]:
    return [int(i) for batch in dataset for i in batch["object_id"].numpy()]


def source_columns(path) -> dict:
    with h5py.File(path) as f:
        return {k: f[k][:] for k in f}


def test_batches_shapes_and_dtypes(survey):
    ds = load_dataset(survey[0], batch_size=4, stretch=None)
    spec = ds.element_spec
    assert spec["image"].shape.as_list() == [None, 16, 16, 3]
    assert {k: s.dtype for k, s in spec.items()} == {
        "image": tf.float32,
        "object_id": tf.uint64,
        "idx": tf.int64,
        "ra": tf.float64,
        "dec": tf.float64,
        "label": tf.int64,
    }
    batches = list(ds)
    assert [len(b["image"]) for b in batches] == [4, 4, 4, 4, 4, 3]
    assert all(b[k].shape == (len(b["image"]),) for b in batches for k in spec if k != "image")


def test_raw_flux_is_exact_and_the_stretch_applies(survey):
    data_dir, source = survey
    expected = source_columns(source)
    raw = columns_of(load_dataset(data_dir, batch_size=6, stretch=None))
    order = np.argsort(raw["idx"])
    raw = {k: v[order] for k, v in raw.items()}
    assert raw["image"].tobytes() == expected["images"].tobytes()  # the input, bit for bit
    np.testing.assert_array_equal(raw["object_id"], expected["object_ids"])
    assert int(raw["object_id"][0]) == BIG_ID
    np.testing.assert_array_equal(raw["idx"], expected["idxs"])
    np.testing.assert_array_equal(raw["ra"], expected["ra"])
    np.testing.assert_array_equal(raw["dec"], expected["dec"])
    np.testing.assert_array_equal(raw["label"], expected["labels"])

    stretched = columns_of(load_dataset(data_dir, batch_size=6))["image"][order]
    assert stretched.min() >= 0 and stretched.max() <= 1 and stretched.max() > 0.5
    # The data set's own stretch (the default, fitted to its sky noise), by the plain TF ops.
    reference = dataset_stretch(data_dir)(expected["images"]).numpy()
    np.testing.assert_allclose(stretched, reference, rtol=0, atol=2e-6)
    softer = columns_of(load_dataset(data_dir, batch_size=6, stretch=LuptonStretch(Q=3)))
    np.testing.assert_allclose(
        softer["image"][order], LuptonStretch(Q=3)(expected["images"]).numpy(), rtol=0, atol=2e-6
    )
    assert np.abs(softer["image"][order] - stretched).max() > 0.05


def test_order_is_deterministic(survey):
    plain = load_dataset(survey[0], batch_size=4, stretch=None)
    order = ids_of(plain)
    assert sorted(order) == sorted(source_columns(survey[1])["object_ids"].tolist())
    assert ids_of(plain) == order  # a second pass over the same dataset
    assert ids_of(load_dataset(survey[0], batch_size=7, stretch=None)) == order  # any batch size


def test_shuffle_with_a_seed_is_reproducible(survey):
    def shuffled(seed):
        return ids_of(load_dataset(survey[0], batch_size=4, shuffle=True, seed=seed, stretch=None))

    plain = ids_of(load_dataset(survey[0], batch_size=4, stretch=None))
    first = shuffled(0)
    assert shuffled(0) == first  # a new pipeline, same seed: same order
    assert sorted(first) == sorted(plain) and first != plain
    other = shuffled(1)
    assert sorted(other) == sorted(plain) and other != first


@pytest.mark.parametrize("n", [2, 3, 5])
def test_shards_partition_the_set(survey, n):
    plain = ids_of(load_dataset(survey[0], batch_size=4, stretch=None))
    parts = [
        ids_of(load_dataset(survey[0], batch_size=4, stretch=None, shard=(i, n))) for i in range(n)
    ]
    for i, part in enumerate(parts):
        assert part == plain[i::n]  # every n-th record from the i-th
    union = [i for part in parts for i in part]
    assert len(union) == len(set(union)) == N and set(union) == set(plain)


def test_shards_of_a_shuffled_read_still_partition(survey):
    parts = [
        ids_of(load_dataset(survey[0], 4, shuffle=True, seed=5, stretch=None, shard=(i, 2)))
        for i in range(2)
    ]
    assert len(parts[0]) == 12 and len(parts[1]) == 11
    assert not set(parts[0]) & set(parts[1]) and len(set(parts[0]) | set(parts[1])) == N


def test_repeat_cycles_through_the_set(survey):
    """Past the end the shards start again: each shard's records keep coming in their order,
    cycled, and every batch is full (the next pass fills the last one)."""
    ids = source_columns(survey[1])["object_ids"].tolist()
    ds = load_dataset(survey[0], batch_size=5, stretch=None, repeat=True)
    batches = list(ds.take(20))  # 100 cutouts: more than four passes
    assert [len(b["object_id"]) for b in batches] == [5] * 20
    stream = ids_of(batches)
    assert ids_of(ds.take(20)) == stream  # deterministic across passes too
    for k in range(5):
        shard = ids[5 * k : 5 * k + 5]  # ingest writes consecutive cutouts into a shard
        seen = [i for i in stream if i in shard]
        assert len(seen) >= 3 * len(shard) and seen == (shard * 20)[: len(seen)]


def test_drop_remainder(survey):
    plain = ids_of(load_dataset(survey[0], batch_size=5, stretch=None))
    ds = load_dataset(survey[0], batch_size=5, stretch=None, drop_remainder=True)
    batches = list(ds)
    assert [len(b["image"]) for b in batches] == [5, 5, 5, 5]
    assert ids_of(batches) == plain[:20]  # the 3 left over at the end are dropped
    sixes = load_dataset(survey[0], batch_size=6, stretch=None, drop_remainder=True)
    assert [len(b["image"]) for b in sixes] == [6, 6, 6]


def test_drop_remainder_gives_a_static_batch_size(survey):
    ds = load_dataset(survey[0], batch_size=5, stretch=None, drop_remainder=True)
    assert {k: s.shape[0] for k, s in ds.element_spec.items()} == dict.fromkeys(ds.element_spec, 5)
    assert image_dataset(survey[0], 5, stretch=None, drop_remainder=True).element_spec.shape[0] == 5


def test_image_dataset_yields_only_images(survey):
    ds = image_dataset(survey[0], batch_size=8, stretch=None)
    assert isinstance(ds.element_spec, tf.TensorSpec)
    assert ds.element_spec.shape.as_list() == [None, 16, 16, 3]
    images = np.concatenate([b.numpy() for b in ds])
    expected = columns_of(load_dataset(survey[0], batch_size=8, stretch=None))["image"]
    assert images.tobytes() == expected.tobytes()
    stretched = next(iter(image_dataset(survey[0], batch_size=8)))
    assert float(tf.reduce_max(stretched)) <= 1.0 and float(tf.reduce_max(stretched)) > 0.5


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_must_be_positive(survey, size):
    with pytest.raises(ConfigError, match=f"batch size must be at least 1, got {size}"):
        load_dataset(survey[0], batch_size=size)


def test_dataset_info_from_folder(survey):
    data_dir = survey[0]
    info = DatasetInfo.from_folder(data_dir)
    assert info.path == data_dir and info.count == N
    assert info.shape == (16, 16, 3) and isinstance(info.shape, tuple)
    assert info.bands == ("g", "r", "i") and info.has_labels is True
    assert info.kind_names == tuple(KINDS)
    assert info.files == tuple(
        str(data_dir / f"cutouts-{k:05d}-of-00005.tfrecord") for k in range(5)
    )
    with pytest.raises(AttributeError):  # frozen
        info.count = 3


def test_dataset_info_without_labels(tmp_path):
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f["images"] = make_cutouts(3, bands=1)
    ingest(tmp_path / "bare.h5", tmp_path / "ds", progress=False)
    info = DatasetInfo.from_folder(tmp_path / "ds")
    assert (info.count, info.shape, info.bands) == (3, (16, 16, 1), ("band0",))
    assert info.has_labels is False and info.kind_names is None and len(info.files) == 1


def test_read_manifest_errors(tmp_path, ds_copy):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as info:
        read_manifest(tmp_path / "empty")
    assert (
        str(info.value) == f"{tmp_path / 'empty'}: not a complete tfanomaly data set, no {MANIFEST}"
    )
    (tmp_path / "empty" / STATE).write_text("{}")
    with pytest.raises(
        DatasetError,
        match=r"no manifest\.json \(an ingest was interrupted here: "
        r"rerun it to finish\)$",
    ):
        read_manifest(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a complete tfanomaly data set"):
        load_dataset(tmp_path / "empty")

    manifest = read_manifest(ds_copy)
    assert manifest["count"] == N and len(manifest["shards"]) == 5
    (ds_copy / "cutouts-00003-of-00005.tfrecord").unlink()
    with pytest.raises(DatasetError) as info:
        read_manifest(ds_copy)
    assert str(info.value) == (
        f"{ds_copy}: shard(s) listed in the manifest are missing: ['cutouts-00003-of-00005.tfrecord']"
    )
    with pytest.raises(DatasetError, match="missing"):
        DatasetInfo.from_folder(ds_copy)


def test_unreadable_or_foreign_manifest(ds_copy):
    text = (ds_copy / MANIFEST).read_text()
    (ds_copy / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(DatasetError, match=r"manifest\.json: unreadable manifest: "):
        read_manifest(ds_copy)
    (ds_copy / MANIFEST).write_text(json.dumps({**json.loads(text), "format": "something-else"}))
    with pytest.raises(DatasetError, match=r"manifest\.json: not a tfanomaly TFRecord manifest"):
        read_manifest(ds_copy)


def test_verify_finds_changed_shards(ds_copy):
    assert verify(ds_copy) == []
    names = [s["file"] for s in read_manifest(ds_copy)["shards"]]
    first, last = ds_copy / names[0], ds_copy / names[4]
    data = bytearray(last.read_bytes())
    data[-10] ^= 0x01  # one bit of the last cutout's label field
    last.write_bytes(bytes(data))
    first.write_bytes(first.read_bytes()[:-1])  # one byte short
    assert verify(ds_copy) == [names[0], names[4]]  # in manifest order; the others are intact
