"""The tf.data pipeline over an ingested data set: interleaved shard reads, batched parsing, masked
pixels filled, the Lupton stretch (and the variance through it) in TF ops, shuffling and prefetching.
"""

from __future__ import annotations

from tfanomaly.data.manifest import DatasetInfo
from tfanomaly.data.schema import parse_cutouts
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError

PAPER_STRETCH = LuptonStretch()  # Q=15, stretch=0.5, minimum=0
# ``stretch=`` default of load_dataset: the stretch the data set's manifest records (``ingest
# --stretch``; the paper's for data sets ingested without one).
DATASET_STRETCH = "dataset"
FILL_WINDOW = 5  # masked pixels get the mean of the unmasked ones in this square, same band


def dataset_stretch(data_dir) -> LuptonStretch:
    """The Lupton stretch recorded in the manifest of the data set ``data_dir``."""
    return DatasetInfo.from_folder(data_dir).stretch


def fill_masked(images, masks):
    """Masked pixels (``masks`` bool, True = left out) of (B, H, W, C) raw flux set to the mean of
    the unmasked pixels of their ``FILL_WINDOW`` x ``FILL_WINDOW`` neighbourhood in the same band,
    or to 0 (the sky level of sky-subtracted cutouts) where that whole neighbourhood is masked."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    valid = tf.cast(tf.logical_not(masks), tf.float32)
    total, count = _box_sum(images * valid), _box_sum(valid)
    local = total / tf.maximum(count, 1.0)  # 0 where no neighbour is valid
    return images * valid + local * (1.0 - valid)


def apply_mask(batch: dict, fill: bool = True) -> dict:
    """A batch of raw flux whose ``mask`` is bool (True = left out) with the masked pixels made
    harmless: their flux filled from their neighbours (:func:`fill_masked`, where ``fill``) and
    their ``variance``, if any, set to 0. What the data pipeline does after reading a shard, and
    the SavedModel's ``score_planes`` does to what a client sends."""
    import tensorflow as tf

    out = dict(batch)
    if fill:
        out["image"] = fill_masked(batch["image"], batch["mask"])
    if "variance" in batch:
        out["variance"] = tf.where(batch["mask"], 0.0, batch["variance"])
    return out


def stretch_batch(batch: dict, stretch: LuptonStretch) -> dict:
    """A batch of ``load_dataset(..., stretch=None)`` (raw flux, masked pixels already filled) in
    the units ``stretch`` gives: ``image`` stretched, ``variance`` through the stretch
    (:meth:`LuptonStretch.variance`), ``mask`` in the stretched channel order (red to blue).
    What ``load_dataset`` does with a stretch; for stages that need the raw flux as well."""
    import tensorflow as tf

    out = dict(batch)
    if "variance" in batch:
        out["variance"] = stretch.variance(batch["image"], batch["variance"])
    if "mask" in batch:
        out["mask"] = tf.reverse(batch["mask"], axis=[-1])
    out["image"] = stretch(batch["image"])
    return out


def _box_sum(x):
    """Sums over the ``FILL_WINDOW`` square around each pixel (zero outside): shifted slices that
    XLA fuses into one loop (a 5x5 depthwise convolution runs 10x slower on CPU)."""
    import tensorflow as tf

    half = FILL_WINDOW // 2
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    x = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]])
    rows = tf.add_n([x[:, k : k + height] for k in range(FILL_WINDOW)])
    return tf.add_n([rows[:, :, k : k + width] for k in range(FILL_WINDOW)])


def load_dataset(
    data_dir,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    stretch: LuptonStretch | str | None = DATASET_STRETCH,
    drop_remainder: bool = False,
    shuffle_buffer: int = 8192,
    parallel_reads: int = 4,
    deterministic: bool | None = None,
    shard: tuple[int, int] | None = None,
    fill: bool = True,
):
    """A ``tf.data.Dataset`` of batches (dicts) from an ingested data set folder.

    Each element is a dict: ``image`` float32 (B, H, W, C) (stretched to [0, 1] by ``stretch``, or
    raw flux when ``stretch`` is None), ``object_id`` uint64, ``idx`` int64, ``ra``/``dec`` float64,
    ``label`` int64 (-1 when unknown). Channel order after the stretch is red to blue (see
    :class:`LuptonStretch`). Data sets ingested with planes also give ``mask`` bool (B, H, W, C)
    (True = pixel left out: one of the mask bits chosen at ingest is set) and ``variance`` float32
    (B, H, W, C): the per-pixel variance of ``image``, in its units (through the stretch by
    :meth:`LuptonStretch.variance`; raw flux variance when ``stretch`` is None), 0 at masked
    pixels. Both are in the image's channel order.

    Args:
        data_dir: folder written by ``tfanomaly ingest``.
        batch_size: cutouts per batch.
        stretch: a :class:`LuptonStretch`, ``DATASET_STRETCH`` (default: the one the manifest
            records) or None (raw flux).
        fill: fill masked pixels of ``image`` (see :func:`fill_masked`) before the stretch.
        shuffle: shuffle shard order and records (through a buffer of ``shuffle_buffer``).
        seed: makes shuffling reproducible; with a seed (or without shuffling) the pipeline is
            deterministic: the same order on every run.
        repeat: cycle forever (training); shards are reshuffled every pass.
        deterministic: force order determinism on or off (default: on unless shuffling unseeded).
        shard: (i, n) keeps every n-th cutout starting at the i-th (in the deterministic record
            order), for scoring a data set in n independent jobs.

    Example:
        >>> ds = load_dataset("survey_tfrecords", batch_size=32, shuffle=True, seed=0)  # doctest: +SKIP
        >>> batch = next(iter(ds)); batch["image"].shape  # doctest: +SKIP
        TensorShape([32, 96, 96, 3])
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    info = DatasetInfo.from_folder(data_dir)
    if isinstance(stretch, str):
        if stretch != DATASET_STRETCH:
            raise ConfigError(f"stretch must be a LuptonStretch, None or '{DATASET_STRETCH}'")
        stretch = info.stretch
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

    masked_bits = tf.constant(info.masked_bits, tf.int32)

    def prepare(parsed):
        parsed = dict(parsed)
        if "mask" in parsed:
            parsed["mask"] = tf.not_equal(tf.bitwise.bitwise_and(parsed["mask"], masked_bits), 0)
            parsed = apply_mask(parsed, fill)
        return parsed if stretch is None else stretch_batch(parsed, stretch)

    # XLA fuses the stretch's dozen element-wise ops into one kernel: 2.3x the read throughput
    # (benchmarks/bench_data.py). The SavedModel keeps the plain ops, which TF Serving runs anywhere.
    compiled = tf.function(prepare, jit_compile=True)
    plain = stretch is None and not info.planes

    def decode(serialized):
        parsed = parse_cutouts(serialized, info.shape, info.planes)
        if plain:
            return parsed
        parsed.update(compiled({key: parsed[key] for key in ("image", *info.planes)}))
        return parsed

    batches = batches.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def image_dataset(data_dir, batch_size: int = 64, **kwargs):
    """Like :func:`load_dataset` but yields only the (stretched) image batches, for Keras ``fit``."""
    return load_dataset(data_dir, batch_size, **kwargs).map(lambda batch: batch["image"])
