"""The tf.data pipeline over an ingested data set: interleaved shard reads, batched parsing, the
Lupton stretch in TF ops, shuffling and prefetching.
"""

from __future__ import annotations

from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.data.schema import parse_cutouts
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError

PAPER_STRETCH = LuptonStretch()  # Q=15, stretch=0.5, minimum=0


def load_dataset(
    data_dir,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    stretch: LuptonStretch | None = PAPER_STRETCH,
    drop_remainder: bool = False,
    shuffle_buffer: int = 8192,
    parallel_reads: int = 4,
    deterministic: bool | None = None,
    shard: tuple[int, int] | None = None,
):
    """A ``tf.data.Dataset`` of batches (dicts) from an ingested data set folder.

    Each element is a dict: ``image`` float32 (B, H, W, C) (stretched to [0, 1] by ``stretch``, or
    raw flux when ``stretch`` is None), ``object_id`` uint64, ``idx`` int64, ``ra``/``dec`` float64,
    ``label`` int64 (-1 when unknown). Channel order after the stretch is red to blue (see
    :class:`LuptonStretch`).

    Args:
        data_dir: folder written by ``tfanomaly ingest``.
        batch_size: cutouts per batch.
        shuffle: shuffle shard order and records (through a buffer of ``shuffle_buffer``).
        seed: makes shuffling reproducible; with a seed (or without shuffling) the pipeline is
            deterministic: the same order on every run.
        repeat: cycle forever (training); shards are reshuffled every pass.
        deterministic: force order determinism on or off (default: on unless shuffling unseeded).
        shard: (i, n) keeps every n-th cutout starting at the i-th (in the deterministic record
            order), for scoring a data set in n independent jobs.

    Example:
        >>> ds = load_dataset("survey_tfrecords", batch_size=32, shuffle=True, seed=0)
        >>> batch = next(iter(ds)); batch["image"].shape
        TensorShape([32, 96, 96, 3])
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    info = DatasetInfo.from_folder(data_dir)
    if deterministic is None:
        deterministic = not shuffle or seed is not None
    files = tf.data.Dataset.from_tensor_slices(list(info.files))
    if shuffle:
        files = files.shuffle(len(info.files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(parallel_reads, len(info.files))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if shard is not None:
        records = records.shard(shard[1], shard[0])
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    batches = records.batch(batch_size, drop_remainder=drop_remainder)

    # XLA fuses the stretch's dozen element-wise ops into one kernel: 2.3x the read throughput
    # (benchmarks/bench_data.py). The SavedModel keeps the plain ops, which TF Serving runs anywhere.
    compiled = tf.function(stretch.__call__, jit_compile=True) if stretch is not None else None

    def decode(serialized):
        parsed = parse_cutouts(serialized, info.shape)
        if compiled is not None:
            parsed["image"] = compiled(parsed["image"])
        return parsed

    batches = batches.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def image_dataset(data_dir, batch_size: int = 64, **kwargs):
    """Like :func:`load_dataset` but yields only the (stretched) image batches, for Keras ``fit``."""
    return load_dataset(data_dir, batch_size, **kwargs).map(lambda batch: batch["image"])
