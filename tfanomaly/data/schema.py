"""The TFRecord schema of an ingested data set: one tf.train.Example per cutout.

Pixels travel as raw little-endian float32 bytes; object ids as the int64 bit pattern of the uint64.
"""

from __future__ import annotations

import numpy as np

# Feature names and how each is stored in a tf.train.Example.
#   image      bytes  raw float32 flux, H*W*C values in (H, W, C) order, little-endian
#   object_id  int64  the uint64 object id reinterpreted as int64 (bitcast back on read: exact)
#   idx        int64  the survey's running index
#   ra, dec    bytes  8-byte little-endian float64 (float_list would round to float32: ~0.05")
#   label      int64  anomaly kind for simulated surveys, -1 when unknown
# and, only in data sets whose input had them (the manifest's "planes"):
#   variance   bytes  raw float32 flux variance, as the image
#   mask       bytes  int32 mask bits (little-endian), as the image
NO_LABEL = -1
FEATURES = ("image", "object_id", "idx", "ra", "dec", "label")
PLANES = ("variance", "mask")


def serialize_cutout(
    image: np.ndarray,
    object_id: int,
    idx: int,
    ra: float,
    dec: float,
    label: int,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> bytes:
    """Return one serialized tf.train.Example for a cutout (image float32 (H, W, C)), with its
    variance (float32) and mask (int32) planes of the same shape when given."""
    from tensorflow.core.example import example_pb2, feature_pb2

    def b(value: bytes):
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[value]))

    def i(value: int):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[value]))

    signed_id = int(np.array(object_id, dtype=np.uint64).view(np.int64))
    features = {
        "image": b(np.ascontiguousarray(image, dtype="<f4").tobytes()),
        "object_id": i(signed_id),
        "idx": i(int(idx)),
        "ra": b(np.float64(ra).astype("<f8").tobytes()),
        "dec": b(np.float64(dec).astype("<f8").tobytes()),
        "label": i(int(label)),
    }
    if variance is not None:
        features["variance"] = b(np.ascontiguousarray(variance, dtype="<f4").tobytes())
    if mask is not None:
        features["mask"] = b(np.ascontiguousarray(mask, dtype="<i4").tobytes())
    example = example_pb2.Example(features=feature_pb2.Features(feature=features))
    return example.SerializeToString()


def feature_spec(planes: tuple[str, ...] = ()) -> dict:
    """The tf.io parsing spec matching :func:`serialize_cutout` (``planes``: of ``PLANES``)."""
    import tensorflow as tf

    return {
        **{plane: tf.io.FixedLenFeature([], tf.string) for plane in planes},
        "image": tf.io.FixedLenFeature([], tf.string),
        "object_id": tf.io.FixedLenFeature([], tf.int64),
        "idx": tf.io.FixedLenFeature([], tf.int64),
        "ra": tf.io.FixedLenFeature([], tf.string),
        "dec": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64, default_value=NO_LABEL),
    }


def parse_cutouts(serialized, shape: tuple[int, int, int], planes: tuple[str, ...] = ()) -> dict:
    """Parse a batch (1-D string tensor) of serialized cutouts into a dict of tensors.

    Returns images float32 (B, H, W, C) raw flux, object_id uint64, idx int64, ra/dec float64, label
    int64, and for each of ``planes``: variance float32 (B, H, W, C) raw flux variance, mask int32
    (B, H, W, C) bits.
    """
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, feature_spec(planes))
    batch = parsed["idx"].shape  # static when the batch size is (drop_remainder=True)

    def pixels(key, dtype):
        values = tf.io.decode_raw(parsed[key], dtype, little_endian=True)
        return tf.ensure_shape(tf.reshape(values, [-1, *shape]), batch.concatenate(shape))

    images = pixels("image", tf.float32)

    def scalar(key):
        return tf.ensure_shape(tf.reshape(tf.io.decode_raw(parsed[key], tf.float64), [-1]), batch)

    return {
        "image": images,
        "object_id": tf.bitcast(parsed["object_id"], tf.uint64),
        "idx": parsed["idx"],
        "ra": scalar("ra"),
        "dec": scalar("dec"),
        "label": parsed["label"],
        **{
            plane: pixels(plane, tf.float32 if plane == "variance" else tf.int32)
            for plane in planes
        },
    }
