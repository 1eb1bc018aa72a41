"""Ingest survey cutouts into a folder of sharded TFRecord files plus ``manifest.json``.

Shards are written one at a time and renamed into place; a data set is complete only once its
manifest exists, and an interrupted ingest resumes from its last finished shard. Variance and mask
planes travel with the flux; cutouts can be brought to one size; the stretch can be fitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import tfanomaly
from tfanomaly.data.health import DuplicateFinder, data_health, findings
from tfanomaly.data.manifest import FORMAT, FORMAT_VERSION, MANIFEST, STATE
from tfanomaly.data.planes import INVALID, bitmask, flag_invalid, invalid_bit, selected_bits
from tfanomaly.data.readers import open_source
from tfanomaly.data.resize import resize, resized_shape
from tfanomaly.data.schema import FEATURES, serialize_cutout
from tfanomaly.data.sources import CutoutBatch, CutoutSource, check_unique_ids
from tfanomaly.data.stretch import REFERENCE_INTENSITY_SIGMA, LuptonStretch, auto_stretch, sky_sigma
from tfanomaly.errors import DatasetError, InputError
from tfanomaly.fileio import atomic_path, sha256_file, write_json_atomic
from tfanomaly.pipelines.config import IngestConfig
from tfanomaly.pipelines.loop import Ledger


def shard_name(index: int, total: int) -> str:
    return f"cutouts-{index:05d}-of-{total:05d}.tfrecord"


def apply_nan_policy(batch: CutoutBatch, config: IngestConfig) -> tuple[CutoutBatch, dict]:
    """Apply the NaN/inf policy to a batch; return the batch to write and what was done."""
    finite = np.isfinite(batch.images)
    bad_objects = np.flatnonzero(~finite.all(axis=(1, 2, 3)))
    counts = {"objects_with_nonfinite": len(bad_objects), "pixels_filled": 0, "dropped_ids": []}
    if not len(bad_objects):
        return batch, counts
    if config.nan_policy == "error":
        k = bad_objects[0]
        n_bad = int((~finite[k]).sum())
        raise InputError(
            f"{batch.origins[k]}: {n_bad} NaN/inf pixel(s); use --nan fill to replace them with "
            f"{config.fill_value:g} or --nan drop to leave such cutouts out"
        )
    if config.nan_policy == "fill":
        counts["pixels_filled"] = int((~finite).sum())
        batch.images[~finite] = config.fill_value
        return batch, counts
    keep = np.ones(len(batch), dtype=bool)
    keep[bad_objects] = False
    counts["dropped_ids"] = [int(i) for i in batch.object_ids[bad_objects]]
    return batch.subset(keep), counts


class PlanePolicy:
    """What ingest does with an input's variance and mask planes: which planes the data set gets
    (a variance plane always comes with a mask plane, which carries the invalid pixels), the bit
    table, the bits left out, and the per-batch work (flag invalid pixels, count them)."""

    def __init__(self, source: CutoutSource, config: IngestConfig):
        self.variance = source.has_variance
        self.mask = source.has_mask or source.has_variance
        explicit = config.mask_bits is not None
        if explicit and not source.has_mask:
            raise InputError(f"{source.path}: --mask-bits given but the input has no mask planes")
        # Without a mask in the input, the plane only carries the invalid pixels.
        self.bits = dict(source.mask_bits) if source.has_mask else {}
        self.invalid = invalid_bit(self.bits)
        chosen = selected_bits(config.chosen_mask_bits, self.bits, str(source.path), explicit)
        self.masked = {**chosen, INVALID: self.invalid} if self.mask else {}
        self.masked_value = bitmask(self.masked)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("variance", self.variance), ("mask", self.mask)) if on)

    def flag(self, batch: CutoutBatch) -> tuple[CutoutBatch, dict]:
        """Set the invalid bit on non-finite flux and non-positive variances (zeroed)."""
        if not self.mask:
            return batch, {"variance_nonpositive": 0}
        batch.masks, bad = flag_invalid(batch.images, batch.variances, batch.masks, self.invalid)
        return batch, {"variance_nonpositive": bad}

    def masked_pixels(self, batch: CutoutBatch) -> int:
        if not self.mask:
            return 0
        return int(np.count_nonzero(batch.masks & np.int32(self.masked_value)))

    def record(self, shards: list[dict]) -> dict:
        """The manifest's ``planes``: which exist, the bit table and what was left out."""
        planes = {}
        if self.variance:
            planes["variance"] = {
                "dtype": "float32",
                "units": "raw flux squared, as the input's variance",
                "nonpositive_pixels": sum(s.get("variance_nonpositive", 0) for s in shards),
                "policy": "zero, negative or non-finite variances are set to 0 and their pixels "
                f"masked with {INVALID}",
            }
        if self.mask:
            planes["mask"] = {
                "dtype": "int32",
                "bits": {**self.bits, INVALID: self.invalid},
                "masked": list(self.masked),
                "masked_value": self.masked_value,
                "masked_pixels": sum(s.get("masked_pixels", 0) for s in shards),
                "invalid_meaning": "non-finite flux or a variance that is not a positive number",
            }
        return planes


def _prepare_batch(source, start: int, stop: int, config: IngestConfig, planes: PlanePolicy):
    """Read cutouts start..stop-1 and make them what the shard holds: invalid pixels flagged,
    the NaN policy applied, resized."""
    batch, plane_counts = planes.flag(source.read(start, stop))
    batch, counts = apply_nan_policy(batch, config)
    batch.images, batch.variances, batch.masks = resize(
        batch.images, batch.variances, batch.masks, config.size, config.resize
    )
    return batch, {**counts, **plane_counts, "masked_pixels": planes.masked_pixels(batch)}


def _sample(source, config: IngestConfig, planes: PlanePolicy):
    """The first ``stretch_sample`` cutouts as they are stored, and their left-out pixels."""
    batch, _ = _prepare_batch(source, 0, min(source.count, config.stretch_sample), config, planes)
    masked = None if batch.masks is None else (batch.masks & np.int32(planes.masked_value)) != 0
    return batch, masked


def choose_stretch(
    source, config: IngestConfig, planes: PlanePolicy, sample=None, health: dict | None = None
) -> dict:
    """The manifest's ``stretch`` record: the paper's, or under ``auto`` the softening fitted to
    the sky noise of the first ``stretch_sample`` cutouts (as they are stored: resized, masked
    and invalid pixels left out). Where no band's noise can be measured there (noise-free or
    fully masked images), ``auto`` falls back to the paper's stretch and says why in the record's
    ``fallback``.

    ``health`` (``data_health`` of that sample) sets the noise model: a band whose background is
    clipped has its noise measured without the pixels at their image's minimum, a band's noise
    (also one measured as 0, where the rounding hides it) is never taken below its quantisation
    step, nor the intensity's below the largest step; the record's ``noise_model`` says what was
    changed and why."""
    if config.stretch == "paper":
        return {"mode": "paper", **LuptonStretch().get_config()}
    batch, masked = sample if sample is not None else _sample(source, config, planes)
    sigma = sky_sigma(batch.images, masked) if len(batch) else np.full(len(source.bands), np.nan)
    noise_model = {}
    if health is not None and len(batch):
        sigma, noise_model = _health_noise(batch.images, masked, sigma, health, source.bands)
    measured = np.where(np.isfinite(sigma), sigma, 0.0)
    if not np.any(measured > 0):
        return {
            "mode": "paper",
            **LuptonStretch().get_config(),
            "fallback": (
                f"--stretch auto measured no sky noise in any band of the first "
                f"{len(batch)} cutouts of {source.path} (got {np.round(sigma, 6).tolist()}); "
                "the paper's stretch is used"
            ),
        }
    steps = [health["bands"][str(b)]["step"] for b in source.bands] if health else [0.0]
    intensity = float(np.sqrt(np.sum(measured**2)) / len(measured))
    if intensity < max(steps):
        noise_model["intensity"] = (
            f"intensity sigma {intensity:.4g} below the quantisation step {max(steps):.4g}: "
            "floored at the step"
        )
        intensity = max(steps)
    stretch = auto_stretch(measured, floor=max(steps))
    return {
        "mode": "auto",
        **stretch.get_config(),
        "sky_sigma": {band: float(v) for band, v in zip(source.bands, sigma, strict=True)},
        "intensity_sigma": intensity,
        "reference_intensity_sigma": REFERENCE_INTENSITY_SIGMA,
        "sample_cutouts": len(batch),
        **({"noise_model": noise_model} if noise_model else {}),
    }


def _health_noise(images, masked, sigma, health: dict, bands) -> tuple[np.ndarray, dict]:
    """The per-band sky noise under the data's health: remeasured without the clipped pixels
    (those at their image's minimum) where the background is clipped, floored at the band's
    quantisation step; and the reasons, by band."""
    sigma = np.array(sigma, np.float64)
    reasons = {}
    for b, band in enumerate(bands):
        record = health["bands"][str(band)]
        why = []
        if record["clipped"]:
            x = images[..., b : b + 1]
            clipped = x == np.nanmin(x, axis=(1, 2, 3), keepdims=True)
            left_out = clipped if masked is None else clipped | masked[..., b : b + 1]
            again = float(sky_sigma(x, left_out)[0])
            why.append(
                f"{record['at_minimum']:.0%} of pixels at the minimum (clipped background): "
                f"noise {sigma[b]:.4g} remeasured without them: {again:.4g}"
            )
            sigma[b] = again
        step = record["step"]
        if step > 0 and not sigma[b] >= step:  # 0 or NaN too: noise hidden by the rounding
            why.append(f"noise {sigma[b]:.4g} below the quantisation step {step:.4g}: the step")
            sigma[b] = step
        if why:
            reasons[str(band)] = "; ".join(why)
    return sigma, reasons


def _write_shard(path: Path, batch: CutoutBatch, planes: PlanePolicy) -> None:
    import tensorflow as tf

    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for k in range(len(batch)):
                writer.write(
                    serialize_cutout(
                        batch.images[k],
                        batch.object_ids[k],
                        batch.idxs[k],
                        batch.ra[k],
                        batch.dec[k],
                        batch.labels[k],
                        variance=batch.variances[k] if planes.variance else None,
                        mask=batch.masks[k] if planes.mask else None,
                    )
                )


def _prepare_output(out_dir: Path, overwrite: bool, job: dict) -> Ledger:
    """Check the output folder; return its ledger, holding the shards already finished by an
    identical earlier run."""
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        if not overwrite:
            raise DatasetError(
                f"{out_dir}: already holds a complete data set ({MANIFEST}); "
                "pass --overwrite to replace it"
            )
        manifest_path.unlink()  # from here on the folder no longer looks complete
    if out_dir.exists():
        ours = {MANIFEST, STATE}
        foreign = [
            p.name
            for p in out_dir.iterdir()
            if p.name not in ours and not (p.name.startswith("cutouts-") or p.name.startswith("."))
        ]
        if foreign:
            raise DatasetError(
                f"{out_dir}: folder is not empty and not a tfanomaly data set "
                f"(holds {', '.join(sorted(foreign)[:3])}); choose another output folder"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        (out_dir / STATE).unlink(missing_ok=True)

    def clear():
        for stale in out_dir.glob("cutouts-*.tfrecord"):
            stale.unlink()

    ledger = Ledger(out_dir / STATE, job)
    ledger.resume("restart", clear=clear)
    return ledger


def ingest(
    source_path,
    out_dir,
    config: IngestConfig | None = None,
    *,
    bands=None,
    object_ids_path=None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Ingest cutouts from ``source_path`` (HDF5, .npy/.npz, FITS folder) into ``out_dir``.

    Variance and mask planes of the input travel along (see ``PlanePolicy``), ``config.size``
    resizes, ``config.stretch`` chooses the stretch the data set is seen through.

    Returns the manifest (also written to ``out_dir/manifest.json``). Rerunning after an interrupt
    resumes from the last finished shard when the input and options are unchanged.

    Example:
        >>> manifest = ingest("survey.h5", "survey_tfrecords", IngestConfig(shard_size=1024))  # doctest: +SKIP
    """
    config = config or IngestConfig()
    config.validate()
    started = time.perf_counter()
    source = open_source(source_path, bands=bands, object_ids_path=object_ids_path)
    check_unique_ids(source.object_ids(), str(source.path))
    out_dir = Path(out_dir)
    shape = resized_shape(source.shape, config.size, config.resize)
    planes = PlanePolicy(source, config)
    sample = _sample(source, config, planes)
    health = data_health(sample[0].images, sample[0].object_ids, sample[1], source.bands)
    stretch = choose_stretch(source, config, planes, sample, health)
    n_shards = math.ceil(source.count / config.shard_size)
    job = {
        "source": source.fingerprint(),
        "config": asdict(config),
        "shape": list(shape),
        "bands": list(source.bands),
    }
    ledger = _prepare_output(out_dir, overwrite, job)
    done = list(ledger.units)
    done_files = {s["file"] for s in done}
    bar = tqdm(
        total=source.count,
        unit="cutout",
        desc=f"ingest {Path(source_path).name}",
        disable=not progress,
        initial=sum(s["input_count"] for s in done),
    )
    duplicates = DuplicateFinder()  # over every cutout, as they stream by
    for index in range(n_shards):
        name = shard_name(index, n_shards)
        if name in done_files:  # written by an earlier run: only hashed
            start, stop = (
                index * config.shard_size,
                min(source.count, (index + 1) * config.shard_size),
            )
            batch, _ = _prepare_batch(source, start, stop, config, planes)
            duplicates.add(batch.images, batch.object_ids)
            continue
        start, stop = index * config.shard_size, min((index + 1) * config.shard_size, source.count)
        batch, counts = _prepare_batch(source, start, stop, config, planes)
        duplicates.add(batch.images, batch.object_ids)
        _write_shard(out_dir / name, batch, planes)
        ledger.add(
            {
                "file": name,
                "count": len(batch),
                "input_count": stop - start,
                "bytes": (out_dir / name).stat().st_size,
                "sha256": sha256_file(out_dir / name),
                "has_labels": bool((batch.labels >= 0).any()),
                "label_counts": _label_counts(batch.labels),
                "has_sky_positions": bool(np.isfinite(batch.ra).any()),
                **counts,
            }
        )
        bar.update(stop - start)
    bar.close()
    shards = sorted(ledger.units, key=lambda s: s["file"])
    manifest = _manifest(source, config, shards, time.perf_counter() - started)
    health["duplicates"] = duplicates.result()
    health["findings"] = findings(health)
    manifest.update(
        shape=list(shape),
        features=list(FEATURES) + list(planes.names),
        planes=planes.record(shards),
        stretch=stretch,
        health=health,
        resize=(
            {"size": config.size, "method": config.resize, "input_shape": list(source.shape)}
            if config.size is not None
            else None
        ),
    )
    write_json_atomic(out_dir / MANIFEST, manifest)
    ledger.close()
    return manifest


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels[labels >= 0], return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def _manifest(source, config: IngestConfig, shards: list[dict], seconds: float) -> dict:
    dropped = [i for s in shards for i in s["dropped_ids"]]
    count = sum(s["count"] for s in shards)
    label_counts: dict[str, int] = {}
    for shard in shards:
        for label, n in shard["label_counts"].items():
            label_counts[label] = label_counts.get(label, 0) + n
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": count,
        "shape": list(source.shape),
        "layout": "HWC",
        "bands": list(source.bands),
        "dtype": "float32",
        "units": "raw flux as in the input (not stretched)",
        "features": list(FEATURES),
        "has_labels": any(s["has_labels"] for s in shards),
        "kind_names": source.kind_names,
        "label_counts": dict(sorted(label_counts.items(), key=lambda item: int(item[0]))),
        "has_sky_positions": any(s["has_sky_positions"] for s in shards),
        "shards": [
            {k: s[k] for k in ("file", "count", "bytes", "sha256")} for s in shards if s["count"]
        ],
        "source": {**source.describe(), "fingerprint": source.fingerprint()},
        "ingest": {
            **asdict(config),
            "nan": {
                "policy": config.nan_policy,
                "objects_with_nonfinite": sum(s["objects_with_nonfinite"] for s in shards),
                "pixels_filled": sum(s["pixels_filled"] for s in shards),
                "objects_dropped": len(dropped),
                "dropped_object_ids": dropped,
            },
            "seconds": round(seconds, 3),
        },
        "tfanomaly_version": tfanomaly.__version__,
    }
