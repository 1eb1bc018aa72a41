"""The ``simulate`` stage: a labelled HSC Wide-like survey written to an HDF5 file.

The embedded default data set of the demo, tests and benchmarks, written in the paper's HDF5 layout.
The cutouts themselves come from ``tfanomaly.simulate`` (``simulate_stamps``); this stage runs it
in chunks, in worker processes if asked, and writes the file atomically.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from tfanomaly.data.planes import HSC_MASK_BITS
from tfanomaly.errors import ConfigError
from tfanomaly.fileio import atomic_path
from tfanomaly.pipelines.config import SimulateConfig
from tfanomaly.simulate.config import BANDS, KIND_NAMES, SurveyConfig, sky_sigma, survey_labels
from tfanomaly.simulate.render import TABLES, grid, install_tables
from tfanomaly.simulate.stamps import simulate_stamps

GENERATOR = "tfanomaly.simulate"
WRITE_CHUNK = 256  # objects simulated and written per step: memory stays flat for any N
_HDF5_CHUNK_BYTES = 1 << 17  # one to a few cutouts per HDF5 chunk, cheap random access


def _simulate_range(args: tuple[SurveyConfig, int, int]) -> dict[str, np.ndarray]:
    return simulate_stamps(*args)


def simulate_survey(
    path: str | os.PathLike,
    config: SurveyConfig,
    workers: int = SimulateConfig.workers,
    progress: bool = True,
    *,
    chunk_size: int = WRITE_CHUNK,
) -> dict:
    """Simulate the survey and write its HDF5 file at ``path`` atomically; return a summary.

    Args:
        path: output ``.h5`` file (paper layout plus ``labels``; with ``config.planes`` also
            ``variances`` and ``masks`` as ``images``, the bit names in the ``mask_bits``
            attribute).
        config: what to simulate.
        workers: processes (1: in this process; 0: one per CPU). The output does not depend on it.
        progress: show a tqdm progress bar.
        chunk_size: objects simulated and written per step (does not change the output).

    Returns:
        ``n_objects``, ``n_anomalies``, ``counts`` (objects per kind name), ``seconds``,
        ``stamps_per_second``, ``path``.

    Example:
        >>> simulate_survey("survey.h5", SurveyConfig(n_objects=500, size=48), workers=0)  # doctest: +SKIP
    """
    config.validate()
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"simulate: workers must be an integer >= 0, got {workers!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"simulate: chunk_size must be an integer >= 1, got {chunk_size!r}")
    workers = min(workers or os.cpu_count() or 1, config.n_objects)
    n, size, n_bands = config.n_objects, config.size, len(BANDS)
    if workers > 1:
        # Several chunks per worker keep them all busy to the end; the output does not change.
        chunk_size = min(chunk_size, max(16, -(-n // (4 * workers))))
    ranges = [(config, s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    workers = min(workers, len(ranges))
    per_chunk = max(1, min(n, 8, _HDF5_CHUNK_BYTES // (size * size * n_bands * 4)))
    started = time.perf_counter()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            shape, chunks = (n, size, size, n_bands), (per_chunk, size, size, 3)
            images = {"images": f.create_dataset("images", shape, np.float32, chunks=chunks)}
            if config.planes:
                for key, dtype in (("variances", np.float32), ("masks", np.int32)):
                    images[key] = f.create_dataset(key, shape, dtype, chunks=chunks)
                f.attrs["mask_bits"] = json.dumps(HSC_MASK_BITS)
            columns = {
                key: f.create_dataset(key, (n,), dtype)
                for key, dtype in (
                    ("idxs", np.int64),
                    ("object_ids", np.uint64),
                    ("ra", np.float64),
                    ("dec", np.float64),
                    ("labels", np.uint8),
                )
            }
            f.attrs["bands"] = ",".join(BANDS)
            f.attrs["kind_names"] = json.dumps(list(KIND_NAMES))
            f.attrs["pixel_scale"] = config.pixel_scale
            f.attrs["zeropoint"] = config.zeropoint
            f.attrs["seed"] = config.seed
            f.attrs["config"] = config.to_json()
            f.attrs["generator"] = GENERATOR
            f.attrs["sky_sigma"] = sky_sigma(config)
            with tqdm(total=n, unit="stamp", desc="simulate", disable=not progress) as bar:
                if workers == 1:
                    chunks = map(_simulate_range, ranges)
                    _write_chunks(chunks, ranges, images, columns, bar)
                else:
                    # spawn, not fork: the parent may hold TensorFlow's threads (the demo does).
                    context = multiprocessing.get_context("spawn")
                    grid(size, float(config.psf_beta))  # tables built once, shipped to workers
                    with context.Pool(workers, install_tables, (dict(TABLES),)) as pool:
                        chunks = pool.imap(_simulate_range, ranges)
                        _write_chunks(chunks, ranges, images, columns, bar)
    seconds = time.perf_counter() - started
    labels = survey_labels(config)
    counts = np.bincount(labels, minlength=len(KIND_NAMES))
    return {
        "n_objects": n,
        "n_anomalies": int(np.count_nonzero(labels)),
        "counts": {name: int(c) for name, c in zip(KIND_NAMES, counts, strict=True)},
        "seconds": seconds,
        "stamps_per_second": n / seconds if seconds > 0 else float("inf"),
        "path": str(Path(path)),
    }


def _write_chunks(chunks, ranges, images, columns, bar) -> None:
    for (_, start, stop), chunk in zip(ranges, chunks, strict=True):
        for key, dataset in images.items():
            dataset[start:stop] = chunk[key]
        for key, dataset in columns.items():
            dataset[start:stop] = chunk[key]
        bar.update(stop - start)
