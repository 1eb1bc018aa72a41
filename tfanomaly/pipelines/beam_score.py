"""Batch scoring on Apache Beam: a data set through an export's scoring signature on any Beam
runner, raw scores as sharded Parquet, then the same results and catalogs as ``score`` writes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.pipelines.config import CatalogConfig, ClientConfig
from tfanomaly.serving.signatures import FLUX_SCORING_SIGNATURES, SCORING_SIGNATURES

EXPORT_MANIFEST = "assets/tfanomaly.json"  # written by tfanomaly.serving.saved_model
BEAM_PARTS = ".beam-parts"


@dataclass(frozen=True)
class BeamScoreConfig:
    """Options of ``tfanomaly beam-score``.

    Args:
        signature: the export's scoring signature (``score_fast``: encoder only;
            ``score_planes``: with the data set's variance and mask planes, for the export of a
            run calibrated with them).
        min_batch_size, max_batch_size: bounds of the inference batches (Beam's
            ``BatchElements`` inside ``RunInference`` adapts within them); on CPUs bounds of 32,
            128 and 512 score within 10% of one another (benchmarks/bench_beam.py).
        parse_batch_size: serialized cutouts parsed per TF call.
        raw_location: where the raw-score Parquet shards go (a path or URL the workers can
            write, e.g. ``gs://bucket/tmp``); default ``OUT/.beam-parts``, removed at the end.
        catalog: how the catalogs are written (as ``score``'s).
    """

    signature: str = field(
        default=ClientConfig.signature,
        metadata={
            "help": "Scoring signature (score_fast: encoder only; score_planes: with the "
            "data set's variance and mask planes, for the export of a run "
            "calibrated with them).",
            "choices": SCORING_SIGNATURES,
        },
    )
    min_batch_size: int = field(
        default=16, metadata={"help": "Smallest inference batch Beam's BatchElements forms."}
    )
    max_batch_size: int = field(default=128, metadata={"help": "Largest inference batch."})
    parse_batch_size: int = 256
    raw_location: str | None = field(
        default=None,
        metadata={
            "help": "Where the workers write the raw-score Parquet shards (e.g. "
            "gs://bucket/tmp); default OUT/.beam-parts, removed at the end.",
            "flag": "--raw-scores",
        },
    )
    catalog: CatalogConfig = field(default_factory=CatalogConfig)

    def validate(self) -> None:
        if self.signature not in SCORING_SIGNATURES:
            raise ConfigError(
                f"signature must be one of {', '.join(SCORING_SIGNATURES)}, got {self.signature!r}"
            )
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ConfigError(
                f"batch sizes must satisfy 1 <= min ({self.min_batch_size}) <= max "
                f"({self.max_batch_size})"
            )
        if self.parse_batch_size < 1:
            raise ConfigError(f"parse batch size must be at least 1, got {self.parse_batch_size}")


def _newest_version(folder: Path) -> Path | None:
    versions = [p for p in folder.iterdir() if p.name.isdigit() and p.is_dir()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def resolve_export(path) -> Path:
    """The SavedModel folder of an export: ``path`` itself, or the newest version under a model
    folder (``MODEL_BASE/<name>``) or under a model base that holds one model."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such export folder (run `tfanomaly export` first)")
    if (path / "saved_model.pb").exists():
        return path
    newest = _newest_version(path)
    models = [p for p in path.iterdir() if p.is_dir() and _newest_version(p) is not None]
    if newest is None and len(models) == 1:
        newest = _newest_version(models[0])
    if newest is None or not (newest / "saved_model.pb").exists():
        raise InputError(
            f"{path}: not a SavedModel (no saved_model.pb); give the folder `tfanomaly export` "
            "wrote, MODEL_BASE/<name>/<version> (or MODEL_BASE/<name> for its newest version)"
        )
    return newest


def read_export_manifest(export_dir: Path) -> dict:
    path = export_dir / EXPORT_MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{export_dir}: not a tfanomaly export (no readable {EXPORT_MANIFEST})"
        ) from exc


def gather_raw_scores(pattern: str) -> dict[str, np.ndarray]:
    """The raw-score columns of every Parquet shard matching ``pattern`` (any Beam file system)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    tables = []
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as handle:
            tables.append(pq.read_table(handle))
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _checked_complete(columns: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """The columns in the data set's running-index order, after checking that every object came
    out exactly once (a retried bundle must not leave its first attempt's rows behind)."""
    ids = columns.get("object_ids", np.zeros(0, np.uint64))
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any() or len(ids) != count:
        raise RuntimeError(
            f"the Beam job wrote {len(ids)} rows for {len(unique)} objects of {count}: "
            "its output is incomplete or has duplicates"
        )
    order = np.argsort(columns["idxs"], kind="stable")
    return {key: values[order] for key, values in columns.items()}


def beam_score(
    export_dir,
    data_dir,
    out_dir,
    config: BeamScoreConfig | None = None,
    *,
    pipeline_args: Sequence[str] = (),
    handler=None,
    reference=None,
    echo: Callable = print,
) -> dict:
    """Score the data set ``data_dir`` with the export ``export_dir`` on a Beam runner; write
    ``results.h5``, ``score_stats.json`` and the catalogs into ``out_dir`` as ``score`` does.

    The pipeline reads the TFRecord shards (one source each), parses them, scores them with
    ``RunInference`` over the export's ``config.signature`` (keyed by object id) and writes the
    raw scores as sharded Parquet; then this process gathers them, checks that every object came
    out once, and runs the finishing step of ``score`` (sigma statistics over this catalog or
    ``reference``). ``pipeline_args`` are Beam's own options (``--runner``,
    ``--direct_num_workers``, ...; default the DirectRunner). ``handler`` replaces the
    :class:`~tfanomaly.pipelines.beam_transforms.ExportHandler` (tests). Rows are in the data
    set's running-index order; no image cubes and no feature vectors (an export returns scores).
    """
    from tfanomaly.data.manifest import DatasetInfo
    from tfanomaly.pipelines.run import check_run_takes
    from tfanomaly.pipelines.score import check_catalog_format, remote_planes, write_scores

    config = config or BeamScoreConfig()
    config.validate()
    check_catalog_format(config.catalog.suffix)
    export_dir = resolve_export(export_dir)
    manifest = read_export_manifest(export_dir)
    # An export's manifest lists its signatures (older ones: the two flux-only scorers).
    if config.signature not in manifest.get("signatures", FLUX_SCORING_SIGNATURES):
        raise ConfigError(f"{export_dir} has no signature {config.signature!r}")
    info = DatasetInfo.from_folder(data_dir)
    check_run_takes(manifest, info)  # the export's manifest carries the run's model shape
    send_planes = remote_planes(config.signature, info)
    if info.count == 0:
        raise ConfigError("nothing to score: the data set is empty")
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        from tfanomaly.pipelines.beam_transforms import ExportHandler, add_scoring
    except ImportError as exc:
        raise ConfigError(
            f"beam-score needs Apache Beam: pip install 'tfanomaly[beam]' ({exc})"
        ) from exc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    local_raw = config.raw_location is None
    raw_root = str(out_dir / BEAM_PARTS) if local_raw else config.raw_location.rstrip("/")
    # A folder per job: shards of an earlier, failed job are never gathered into this one.
    raw_prefix = f"{raw_root}/job-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}/raw_scores"
    if handler is None:
        handler = ExportHandler(
            str(export_dir.resolve()),
            config.signature,
            config.min_batch_size,
            config.max_batch_size,
        )
    options = PipelineOptions(list(pipeline_args))
    echo(
        f"beam-score: {info.count} cutouts in {len(info.files)} shard(s), export {export_dir} "
        f"({config.signature}), runner {options.get_all_options()['runner'] or 'DirectRunner'}"
    )
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        add_scoring(
            pipeline,
            list(info.files),
            tuple(info.shape),
            handler,
            raw_prefix,
            config.parse_batch_size,
            info.masked_bits if "mask" in info.planes else 0,
            send_planes,
        )
    seconds = time.perf_counter() - started
    columns = _checked_complete(gather_raw_scores(f"{raw_prefix}*.parquet"), info.count)
    source = {
        "engine": "beam",
        "export": str(export_dir.resolve()),
        "model": manifest.get("name"),
        "version": int(export_dir.name) if export_dir.name.isdigit() else None,
        "signature": config.signature,
        "run": manifest.get("run"),
    }
    inversion = dict(manifest.get("inversion") or {})
    if config.signature == "score_fast" and inversion:
        inversion["steps"] = 0
    written = write_scores(
        out_dir,
        columns,
        info,
        json.dumps(source),
        inversion,
        reference=reference,
        catalog=config.catalog,
        # The export's graph scores with the weights its manifest records (older exports: none).
        default_score={
            key: value
            for key, value in (manifest.get("default_score") or {}).items()
            if key in ("term_weights", "degenerate_terms")
        },
    )
    if local_raw:
        shutil.rmtree(out_dir / BEAM_PARTS, ignore_errors=True)
    written.update(
        count=info.count,
        seconds=seconds,
        images_per_second=info.count / seconds,
        raw_scores=None if local_raw else f"{raw_prefix}*.parquet",
    )
    return written
