"""Score every cutout of a data set: latent inversion in batches, streamed into part files that make
an interrupted run resumable, then the results HDF5, sigma statistics and catalogs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import tfanomaly
from tfanomaly.data.dataset import load_dataset, stretch_batch
from tfanomaly.data.manifest import MANIFEST, DatasetInfo
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError
from tfanomaly.fileio import atomic_path
from tfanomaly.pipelines.config import CatalogConfig, ScoreConfig
from tfanomaly.pipelines.loop import Ledger
from tfanomaly.pipelines.run import (
    CALIBRATION_FILE,
    check_run_takes,
    load_inverter,
    load_run,
    network_path,
    run_stretch,
)
from tfanomaly.results.catalog import (
    CATALOG_FORMATS,
    COLUMN_KEYS,
    SCORE_KEYS,
    SCORE_OUTPUTS,
    VECTOR_KEYS,
    VECTOR_OUTPUTS,
    finalize,
)
from tfanomaly.serving.signatures import PLANES_SIGNATURE

PARTS = ".parts"
# The results columns that come from the data set: results key -> key of a parsed batch
# (tfanomaly.data.schema.parse_cutouts).
BATCH_COLUMNS = {
    "idxs": "idx",
    "object_ids": "object_id",
    "ra": "ra",
    "dec": "dec",
    "labels": "label",
}


def _job_fingerprint(
    source, data_info: DatasetInfo, config: ScoreConfig, planes: bool = True
) -> str:
    """What the parts depend on: the networks' files (or the server), the data set, the options."""
    options = asdict(config)
    del options["catalog"], options["planes"]  # the catalogs are written after the parts
    entries = [options, planes]
    if isinstance(source, Path):
        files = [network_path(source, n) for n in ("generator", "critic", "encoder")]
        for path in [*files, source / CALIBRATION_FILE]:
            stat = path.stat()
            entries.append([path.name, stat.st_size, stat.st_mtime_ns])
    else:
        entries.append(describe_client(source))
    entries.append((data_info.path / MANIFEST).read_text())
    return hashlib.sha256(json.dumps(entries, default=str).encode()).hexdigest()


def _prepare_parts(out_dir: Path, fingerprint: str) -> Ledger:
    """The ledger of the parts folder: the finished parts of an identical earlier run (resume),
    or none in a fresh folder."""
    parts_dir = out_dir / PARTS
    ledger = Ledger(parts_dir / "job.json", {"fingerprint": fingerprint})
    ledger.resume("restart", clear=lambda: shutil.rmtree(parts_dir, ignore_errors=True))
    return ledger


def describe_client(client) -> dict:
    """Who scores remotely: protocol, address, model, signature and version."""
    address = getattr(client, "url", None) or getattr(client, "target", None)
    return {
        "client": type(client).__name__,
        "address": address,
        "model": client.model,
        "signature": client.signature,
        "version": client.version,
    }


def _local_scorer(inverter, stretch: LuptonStretch, planes: tuple[str, ...] = ()):
    """Scores from the in-process inverter: the batch's raw flux stretched as the run was
    trained (the morphology term reads the flux itself), with the data's ``planes`` (variance,
    mask) through the same stretch for the residual terms."""

    def call(batch):
        stretched = stretch_batch({key: batch[key] for key in ("image", *planes)}, stretch)
        out = inverter(
            stretched["image"], batch["image"], stretched.get("variance"), stretched.get("mask")
        )
        return {**out, "stretched": stretched["image"]}

    return call


def scoring_planes(calibration, info: DatasetInfo, planes: bool = True) -> tuple[str, ...]:
    """The data planes the default score uses: those the calibration was made with, where the
    data set has every one of them (and ``planes``); none otherwise (the calibrated scatter)."""
    wanted = calibration.planes if calibration is not None and planes else ()
    return wanted if all(name in info.planes for name in wanted) else ()


def _remote_scorer(
    client, store_images: bool, stretch: LuptonStretch, planes: tuple[str, ...] = ()
):
    """Scores from a TF Serving endpoint: raw flux goes out (with the ``planes``, for the
    ``score_planes`` signature), the model stretches in its graph. ``stretch``: the data set's,
    for the stored image cubes only."""

    def call(batch):
        raw = batch["image"].numpy()
        inputs = {"images": raw}
        if planes:
            # The data pipeline has turned the mask bits into masked or not: every bit set (-1)
            # on a masked pixel, so that whatever bits the model leaves out, it leaves it out.
            inputs["mask"] = np.where(batch["mask"].numpy(), np.int32(-1), np.int32(0))
            inputs["variance"] = (
                batch["variance"].numpy() if "variance" in batch else np.zeros_like(raw)
            )
        out = client.predict(inputs)
        result = {k: out[k] for k in SCORE_OUTPUTS}
        if store_images:
            stretched = stretch(raw).numpy()
            result.update(
                stretched=stretched,
                reconstruction=out["reconstruction"],
                residual=np.abs(stretched - out["reconstruction"]),
            )
        return result

    return call


def remote_planes(signature: str, info: DatasetInfo, planes: bool = True) -> tuple[str, ...]:
    """The planes a remote scorer (a client, or Beam's RunInference) sends with the flux: the
    data set's, for the ``score_planes`` signature (which needs a mask plane), none for every
    other signature."""
    if signature != PLANES_SIGNATURE:
        return ()
    if not planes:
        raise ConfigError(
            f"--signature {PLANES_SIGNATURE} scores with the planes: drop --no-planes"
        )
    if "mask" not in info.planes:
        raise ConfigError(
            f"{info.path} has no mask plane, which --signature {PLANES_SIGNATURE} needs: use the "
            "default signature (the calibrated scatter)"
        )
    return tuple(info.planes)


def score(
    run_dir,
    data_dir,
    out_dir,
    config: ScoreConfig | None = None,
    *,
    client=None,
    reference=None,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Score the data set ``data_dir`` with the run ``run_dir``; write into ``out_dir``.

    The residual terms use the data set's variance and mask planes where the run was calibrated
    with them and the data set has them (``config.planes=False``: never); otherwise the calibrated
    scatter (the fallback, also what a served model computes). ``n_masked`` (masked pixels per
    object, over all bands; 0 without a mask plane) goes into the results and the catalog.

    Writes ``results.h5`` (the default score, its residual and feature terms, the paper's
    anomaly/gen/disc scores, all with sigma values; idxs, object_ids, ra, dec, labels, optional
    image cubes), ``score_stats.json`` and ``catalog.<fits|csv|parquet>``
    (plus the sigma selection; ``config.catalog``). Parts are written as they finish; rerunning after an interrupt
    continues from the last finished part and gives the same result as an uninterrupted run.

    With ``client`` (a :class:`~tfanomaly.serving.client.GrpcClient` or ``RestClient``) the
    scores come from a TF Serving endpoint instead of ``run_dir`` (which may then be None); the
    outputs are the same files.
    """
    config = config or ScoreConfig()
    config.validate()
    check_catalog_format(config.catalog.suffix)
    planes = config.planes
    out_dir = Path(out_dir)
    info = DatasetInfo.from_folder(data_dir)
    if client is None:
        run_dir = Path(run_dir)
        run = load_run(run_dir)
        check_run_takes(run, info)
        inverter = load_inverter(run_dir, config.inversion)
        used = scoring_planes(inverter.calibration, info, planes)
        if planes and inverter.calibration.planes and not used:
            echo(
                f"note: {run_dir} was calibrated with the {' and '.join(inverter.calibration.planes)}"
                f" plane(s), which {data_dir} lacks: the residual terms use the calibrated "
                "scatter"
            )
        scorer = _local_scorer(inverter, run_stretch(run), used)
        source = run_dir
        weights = inverter.calibration.weights_record()
    else:
        scorer = _remote_scorer(
            client, config.store_images, info.stretch, remote_planes(client.signature, info, planes)
        )
        source = client
        weights = None  # what the served model was calibrated with is in its export's manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    ledger = _prepare_parts(out_dir, _job_fingerprint(source, info, config, planes))
    done = [out_dir / PARTS / unit["file"] for unit in ledger.units]
    if done:
        echo(f"resuming: {len(done)} part(s) already scored in {out_dir / PARTS}")
    # Raw flux: the served model stretches in its graph, the local scorer in _local_scorer.
    dataset = load_dataset(data_dir, config.batch_size, shard=config.shard, stretch=None)
    batches = iter(dataset.skip(len(done) * config.part_batches))
    total = (
        info.count
        if config.shard is None
        else len(range(config.shard[0], info.count, config.shard[1]))
    )
    parts = list(done)
    started, scored = time.perf_counter(), 0
    with tqdm(
        total=total,
        initial=min(total, len(done) * config.part_batches * config.batch_size),
        unit="cutout",
        desc="score",
        disable=not progress,
    ) as bar:
        while True:
            chunk = _score_part(scorer, batches, config, bar)
            if chunk is None:
                break
            part = out_dir / PARTS / f"part-{len(parts):06d}.npz"
            with atomic_path(part) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **chunk)
            ledger.add({"file": part.name, "count": len(chunk["object_ids"])})
            parts.append(part)
            scored += len(chunk["object_ids"])
    seconds = time.perf_counter() - started
    columns = _gather_columns(parts)
    written = write_scores(
        out_dir,
        columns,
        info,
        str(run_dir.resolve()) if client is None else json.dumps(describe_client(client)),
        config.inversion.to_dict() if client is None else {},
        parts=parts,
        shard=config.shard,
        reference=reference,
        catalog=config.catalog,
        default_score=weights,
    )
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)
    written.update(
        count=len(columns["object_ids"]),
        seconds=seconds,
        images_per_second=scored / seconds if scored else 0.0,
    )
    return written


def check_catalog_format(catalog_format: str) -> None:
    """Refuse an unknown catalog suffix before anything is scored."""
    if catalog_format not in CATALOG_FORMATS:
        raise ConfigError(f"catalog format must be one of {', '.join(CATALOG_FORMATS)}")


def write_scores(
    out_dir,
    columns: dict[str, np.ndarray],
    info: DatasetInfo,
    source: str,
    inversion: dict,
    *,
    parts: Sequence[Path] = (),
    shard: tuple[int, int] | None = None,
    reference=None,
    catalog: CatalogConfig | None = None,
    default_score: dict | None = None,
) -> dict:
    """The last step of every scorer (in process, remote, on Beam): the sigma statistics,
    ``results.h5``, ``score_stats.json`` and the catalogs from the raw score ``columns`` of the
    data set ``info``; ``source`` names what scored (a run folder, or a JSON description) and
    ``inversion`` its inversion settings; ``parts`` hold the image cubes, if any;
    ``default_score``: the default score's ``term_weights`` (term -> weight it scored with) and
    ``degenerate_terms`` (term -> why left out) (``Calibration.weights_record``), stored as
    attributes of the same names where known."""
    attrs = {
        "run": source,
        "data": str(Path(info.path).resolve()),
        "inversion": inversion,
        "kind_names": json.dumps(list(info.kind_names)) if info.kind_names else "",
        "tfanomaly_version": tfanomaly.__version__,
        **(default_score or {}),
    }
    if shard is not None:
        attrs["shard"] = f"{shard[0]}/{shard[1]}"
    catalog = catalog or CatalogConfig()
    return finalize(
        out_dir,
        columns,
        list(parts),
        attrs,
        reference,
        catalog.suffix,
        catalog.select_sigma,
        catalog.select_key,
    )


def _score_part(scorer, batches, config: ScoreConfig, bar) -> dict | None:
    """Score up to ``part_batches`` batches; None when the data set is exhausted."""
    pieces: dict[str, list] = {}
    for _ in range(config.part_batches):
        try:
            batch = next(batches)
        except StopIteration:
            break
        out = scorer(batch)
        values = {key: out[name] for name, key in SCORE_OUTPUTS.items()}
        values.update({key: batch[name] for key, name in BATCH_COLUMNS.items()})
        values["n_masked"] = (
            np.asarray(batch["mask"]).reshape(len(values["idxs"]), -1).sum(axis=1, dtype=np.int32)
            if "mask" in batch
            else np.zeros(len(values["idxs"]), np.int32)
        )
        # The feature vectors of the local scorer (a served model returns only scores).
        values.update({key: out[name] for name, key in VECTOR_OUTPUTS.items() if name in out})
        if config.store_images:
            values.update(
                reals=out["stretched"],
                reconstructed=out["reconstruction"],
                residuals=out["residual"],
            )
        for key, value in values.items():
            pieces.setdefault(key, []).append(np.asarray(value))
        bar.update(len(values["idxs"]))
    if not pieces:
        return None
    return {k: np.concatenate(v) for k, v in pieces.items()}


def _gather_columns(parts: list[Path]) -> dict[str, np.ndarray]:
    columns: dict[str, list] = {}
    for part in parts:
        with np.load(part) as data:
            for key in (*SCORE_KEYS, *COLUMN_KEYS, *VECTOR_KEYS):
                if key in data.files:
                    columns.setdefault(key, []).append(data[key])
    if not columns:
        raise ConfigError("nothing to score: the data set (or this shard of it) is empty")
    return {k: np.concatenate(v) for k, v in columns.items()}
