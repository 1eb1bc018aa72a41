"""The TFRecord schema: serialize_cutout -> parse_cutouts is exact, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import BIG_ID, make_cutouts

from tfanomaly.data.schema import FEATURES, NO_LABEL, feature_spec, parse_cutouts, serialize_cutout

SHAPE = (16, 16, 3)


def parse(records, shape=SHAPE) -> dict:
    return {k: v.numpy() for k, v in parse_cutouts(tf.constant(records), shape).items()}


def test_features_listing():
    assert FEATURES == ("image", "object_id", "idx", "ra", "dec", "label")
    assert tuple(feature_spec()) == FEATURES
    example = tf.train.Example.FromString(serialize_cutout(np.zeros((2, 2, 1)), 1, 2, 3.0, 4.0, 5))
    assert set(example.features.feature) == set(FEATURES)
    assert set(parse([serialize_cutout(np.zeros(SHAPE), 1, 2, 3.0, 4.0, 5)])) == set(FEATURES)


@pytest.mark.parametrize(
    "object_id", [0, 1, 2**53 + 1, BIG_ID, 2**63 - 1, 2**63, 2**63 + 12345, 2**64 - 1]
)
def test_object_ids_round_trip_exactly(object_id):
    """Stored as the int64 bit pattern: ids at and above 2**63 are negative on disk."""
    record = serialize_cutout(np.zeros(SHAPE), object_id, 0, 0.0, 0.0, 0)
    stored = tf.train.Example.FromString(record).features.feature["object_id"].int64_list.value[0]
    assert stored == object_id - (2**64 if object_id >= 2**63 else 0)
    got = parse([record])["object_id"]
    assert got.dtype == np.uint64 and int(got[0]) == object_id
    # numpy uint64 scalars (what a CutoutBatch holds) serialize the same way
    assert serialize_cutout(np.zeros(SHAPE), np.uint64(object_id), 0, 0.0, 0.0, 0) == record


def test_batch_round_trip_is_exact():
    images = make_cutouts(5)
    images[1, 0, 0, 0] = -0.0
    images[2, 3, 4, 1] = np.float32(1e-45)  # a subnormal
    images[3, 5, 5, 2] = np.nan
    ids = [2**64 - 1, BIG_ID, 0, 2**63, 77]
    idxs = [0, -3, 2**62 + 1, 5, 2**63 - 1]
    ra = [135.123456789012345, 0.1 + 0.2, np.nextafter(360.0, 0.0), np.nan, -0.0]
    dec = [-89.99999999999, 1e-300, 4.000000000000001, 0.0, np.inf]
    labels = [NO_LABEL, 0, 3, 2**40, -7]
    records = [
        serialize_cutout(images[k], ids[k], idxs[k], ra[k], dec[k], labels[k]) for k in range(5)
    ]
    got = parse(records)
    assert got["image"].shape == (5, *SHAPE) and got["image"].dtype == np.float32
    assert got["image"].tobytes() == images.tobytes()  # every bit, NaN and -0.0 included
    assert [int(i) for i in got["object_id"]] == ids
    assert got["idx"].dtype == np.int64 and got["idx"].tolist() == idxs
    for key, expected in (("ra", ra), ("dec", dec)):
        assert got[key].dtype == np.float64 and got[key].shape == (5,)
        assert got[key].tobytes() == np.array(expected, dtype=np.float64).tobytes()
    assert got["label"].dtype == np.int64 and got["label"].tolist() == labels


def test_image_layout_and_byte_order():
    """Pixels are written in (H, W, C) order as little-endian float32 whatever the input array's
    memory layout, byte order or float type."""
    image = np.random.default_rng(3).normal(size=(4, 6, 2)).astype(np.float32)
    reference = serialize_cutout(image, 1, 0, 0.0, 0.0, 0)
    raw = tf.train.Example.FromString(reference).features.feature["image"].bytes_list.value[0]
    assert raw == image.astype("<f4").tobytes() and len(raw) == 4 * 6 * 2 * 4
    transposed = np.ascontiguousarray(image.transpose(2, 0, 1)).transpose(1, 2, 0)  # not C order
    assert not transposed.flags.c_contiguous
    for variant in (image.astype(">f4"), transposed, image.astype(np.float64)):
        assert serialize_cutout(variant, 1, 0, 0.0, 0.0, 0) == reference
    np.testing.assert_array_equal(parse([reference], (4, 6, 2))["image"][0], image)


def test_label_defaults_to_no_label():
    example = tf.train.Example.FromString(serialize_cutout(np.ones(SHAPE), 9, 1, 2.0, 3.0, 4))
    del example.features.feature["label"]
    got = parse([example.SerializeToString()])
    assert got["label"].tolist() == [NO_LABEL] and int(got["object_id"][0]) == 9


def test_parse_inside_a_dataset_map():
    """The batched parse traces in a tf.data map: shapes follow the batch."""
    images = make_cutouts(7)
    records = [serialize_cutout(images[k], BIG_ID + k, k, 1.0, 2.0, 0) for k in range(7)]
    ds = tf.data.Dataset.from_tensor_slices(records).batch(3).map(lambda s: parse_cutouts(s, SHAPE))
    batches = list(ds)
    assert [b["image"].shape[0] for b in batches] == [3, 3, 1]
    assert ds.element_spec["image"].shape.as_list() == [None, *SHAPE]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), images)
    got_ids = np.concatenate([b["object_id"] for b in batches])
    assert got_ids.tolist() == [BIG_ID + k for k in range(7)]
