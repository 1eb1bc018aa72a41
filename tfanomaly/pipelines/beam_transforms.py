"""The Beam side of ``beam-score`` (needs the ``beam`` extra): the ModelHandler that runs an
export's scoring signature, and the pipeline from a data set's TFRecord shards to raw-score Parquet.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.parquetio import WriteToParquet
from apache_beam.io.tfrecordio import ReadAllFromTFRecord
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from tfanomaly.data.schema import parse_cutouts
from tfanomaly.pipelines.score import BATCH_COLUMNS
from tfanomaly.results.catalog import SCORE_KEYS, SCORE_OUTPUTS

# One Parquet row per object, under the results file's keys: the raw scores as the graph returns
# them (float32) and the data set's columns with their exact types (uint64 ids, float64 ra/dec).
RAW_SCHEMA = pa.schema(
    [
        ("object_ids", pa.uint64()),
        ("idxs", pa.int64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("labels", pa.int64()),
        ("n_masked", pa.int32()),
        *[(key, pa.float32()) for key in SCORE_KEYS],
    ]
)


class _Signature:
    """A loaded SavedModel's scoring function, holding the loaded object so that the variables
    the function captures stay alive."""

    def __init__(self, loaded, signature: str):
        self.loaded, self.function = loaded, loaded.signatures[signature]

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        out = self.function(**inputs)
        return {key: out[name].numpy() for name, key in SCORE_OUTPUTS.items()}


# The signature inputs each parsed cutout carries, under the data set's feature names.
SIGNATURE_INPUTS = {"images": "image", "variance": "variance", "mask": "mask"}


class ExportHandler(ModelHandler):
    """RunInference's handler for a ``tfanomaly export``: parsed cutouts in, raw scores out.

    Loads the SavedModel with ``tf.saved_model.load`` (Beam's stock TensorFlow handlers load
    through Keras, which cannot read a plain SavedModel under Keras 3) and calls one of its
    scoring signatures (``serving_default`` or ``score_fast``) on a stacked batch of raw flux;
    ``score_planes`` also gets the cutouts' variance and mask planes (the shards' mask bits).

    Args:
        export_dir: the version folder (``MODEL_BASE/<name>/<version>``); any path TF's file
            systems read (``gs://`` on Dataflow).
        signature: the signature to call.
        min_batch_size, max_batch_size: bounds of the batches Beam's ``BatchElements`` forms
            inside ``RunInference``.
    """

    def __init__(self, export_dir: str, signature: str, min_batch_size: int, max_batch_size: int):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)
        self.export_dir, self.signature = str(export_dir), signature
        self.min_batch_size, self.max_batch_size = min_batch_size, max_batch_size

    def load_model(self) -> _Signature:
        from tfanomaly._tf import import_tensorflow_quietly

        tf = import_tensorflow_quietly()
        return _Signature(tf.saved_model.load(self.export_dir), self.signature)

    def run_inference(self, batch, model: _Signature, inference_args=None):
        inputs = {
            alias: np.stack([cutout[key] for cutout in batch])
            for alias, key in SIGNATURE_INPUTS.items()
            if key in batch[0]
        }
        scores = model(**inputs)
        return [
            PredictionResult(cutout, {key: values[i] for key, values in scores.items()})
            for i, cutout in enumerate(batch)
        ]

    def get_num_bytes(self, batch) -> int:
        return sum(
            cutout[key].nbytes
            for cutout in batch
            for key in SIGNATURE_INPUTS.values()
            if key in cutout
        )

    def get_metrics_namespace(self) -> str:
        return "tfanomaly"


def parse_records(
    records: list[bytes],
    shape: tuple[int, int, int],
    masked_bits: int = 0,
    send_planes: tuple[str, ...] = (),
):
    """(object id, cutout) for each serialized cutout of a batch, parsed by the data set's schema
    (tfanomaly.data.schema, in one TF call per batch): raw flux, the catalog columns and
    ``n_masked``, the pixels with any of ``masked_bits`` set (0 without a mask plane), as the
    in-process scorer counts them. ``send_planes``: the planes that travel on to the export
    (``score_planes``: the variance and the mask bits as the shards hold them); the others only
    score the flux."""
    from tfanomaly._tf import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    # The planes sent always include the mask (beam_score checks), which n_masked reads.
    planes = send_planes or (("mask",) if masked_bits else ())
    parsed = {
        key: value.numpy()
        for key, value in parse_cutouts(tf.constant(records), shape, planes).items()
    }
    masks = parsed.get("mask") if "mask" in send_planes else parsed.pop("mask", None)
    parsed["n_masked"] = (
        np.zeros(len(parsed["idx"]), np.int32)
        if masks is None
        else ((masks & np.int32(masked_bits)) != 0).reshape(len(masks), -1).sum(1, dtype=np.int32)
    )
    for i, object_id in enumerate(parsed["object_id"].tolist()):
        yield object_id, {key: value[i] for key, value in parsed.items()}


def raw_row(keyed: tuple[int, PredictionResult]) -> dict:
    """The Parquet row of one scored object."""
    object_id, result = keyed
    row = {key: result.example[name].item() for key, name in BATCH_COLUMNS.items()}
    row["object_ids"] = object_id
    row["n_masked"] = int(result.example["n_masked"])
    row.update({key: float(value) for key, value in result.inference.items()})
    return row


def add_scoring(
    pipeline,
    files: list[str],
    shape: tuple[int, int, int],
    handler: ModelHandler,
    raw_prefix: str,
    parse_batch_size: int,
    masked_bits: int = 0,
    send_planes: tuple[str, ...] = (),
):
    """Add read -> parse -> RunInference -> Parquet to ``pipeline``.

    The manifest's shard list goes through ``ReadAllFromTFRecord``: each shard is its own source
    (TFRecord files are not splittable, so the shard is the unit of parallelism and of retry),
    and the shards are spread over the workers and streamed into the scoring in one fused stage.
    (A ``ReadFromTFRecord`` per shard, flattened, makes the DirectRunner run the shards one after
    the other and hold every record between its stages: at 10^5 cutouts 2.4x the peak memory and
    half the throughput, benchmarks/bench_beam.py.) Serialized records are batched (up to
    ``parse_batch_size``) for parsing only; the inference batches are formed inside
    ``RunInference`` by the handler's bounds.
    """
    return (
        pipeline
        | "Shard list" >> beam.Create(files)
        | "Read shards" >> ReadAllFromTFRecord(compression_type=CompressionTypes.UNCOMPRESSED)
        | "Batch records" >> beam.BatchElements(min_batch_size=1, max_batch_size=parse_batch_size)
        | "Parse" >> beam.FlatMap(parse_records, shape, masked_bits, send_planes)
        | "Score" >> RunInference(KeyedModelHandler(handler))
        | "Rows" >> beam.Map(raw_row)
        | "Write raw scores" >> WriteToParquet(raw_prefix, RAW_SCHEMA, file_name_suffix=".parquet")
    )
