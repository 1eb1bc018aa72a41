"""Characterise anomalies: train the CAE on residual images of a scored catalog, embed its latents
with UMAP, cluster the embedding with HDBSCAN, and join the result into the catalog.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.fileio import atomic_path
from tfanomaly.models.cae import build_cae, cae_encoder
from tfanomaly.models.config import AUTO, ModelConfig, preset_for_data
from tfanomaly.pipelines.config import CaeTrainConfig, EmbedConfig
from tfanomaly.pipelines.loop import Stage, run_stage, save_keras
from tfanomaly.pipelines.run import (
    is_run,
    load_network,
    load_run,
    network_path,
    record_stage,
    stage_record,
)
from tfanomaly.results.catalog import (
    CATALOG_FORMATS,
    catalog_table,
    json_attr,
    read_results,
    write_catalog,
)
from tfanomaly.results.preview import tile


def select_objects(columns: dict, selection: str, key: str) -> np.ndarray:
    """Row indices of the results that ``selection`` picks (see :class:`CaeTrainConfig`)."""
    if selection == "all":
        return np.arange(len(columns["object_ids"]))
    if selection.startswith("sigma:"):
        if key not in columns:
            raise ConfigError(f"no results column '{key}' to cut on")
        try:
            cut = float(selection.split(":", 1)[1])
        except ValueError as exc:
            raise ConfigError(f"selection '{selection}': expected sigma:<number>") from exc
        rows = np.flatnonzero(columns[key] > cut)
    elif selection.startswith("ids:"):
        path = Path(selection.split(":", 1)[1])
        try:
            wanted = {int(line) for line in path.read_text().split() if line.strip()}
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: expected one object id per line ({exc})") from exc
        rows = np.flatnonzero(np.isin(columns["object_ids"], np.array(sorted(wanted), np.uint64)))
        missing = len(wanted) - len(rows)
        if missing:
            raise InputError(f"{path}: {missing} of the ids are not in the scored catalog")
    else:
        raise ConfigError(f"selection '{selection}': use all, sigma:<S> or ids:<file>")
    if len(rows) < 2:
        raise ConfigError(
            f"selection '{selection}' keeps {len(rows)} object(s); the CAE needs at least 2 "
            "(lower the sigma cut or use --select all)"
        )
    return rows


def _read_cube(scores_dir: Path, cube: str, rows: np.ndarray) -> np.ndarray:
    path = scores_dir / "results.h5"
    with h5py.File(path, "r") as f:
        if cube not in f:
            raise InputError(
                f"{path}: no '{cube}' image cube; score with --store-images to keep residuals"
            )
        return f[cube][np.sort(rows)].astype(np.float32)


def _model_config(attrs: dict, image_shape) -> ModelConfig:
    run = attrs.get("run")
    if is_run(run):
        return ModelConfig.from_dict(load_run(run)["model"])
    return preset_for_data(AUTO, image_shape, source="the scored image cubes")


def train_cae(scores_dir, out_dir, config: CaeTrainConfig, *, progress: bool = True,
              echo: Callable = print) -> dict:  # fmt: skip
    """Train (or resume) the CAE on image cubes of a scored catalog; write ``out_dir/cae.keras``."""
    config.validate()
    scores_dir, out_dir = Path(scores_dir), Path(out_dir)
    columns, attrs = read_results(scores_dir)
    rows = np.sort(select_objects(columns, config.selection, config.select_key))
    images = _read_cube(scores_dir, config.images, rows)
    model_config = _model_config(attrs, images.shape[1:])
    extra = {"model": model_config.to_dict(), "scores": str(scores_dir.resolve())}
    record_stage(out_dir, "cae", config, extra)
    keras.utils.set_random_seed(config.seed)
    cae = build_cae(model_config)
    cae.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    cae.optimizer.build(cae.trainable_variables)
    preview_images = images[:32]

    def preview():
        pairs = np.stack([preview_images, cae(preview_images).numpy()], axis=1)
        return tile(pairs.reshape(-1, *images.shape[1:]), columns=8)

    def make_dataset(step):
        data = tf.data.Dataset.from_tensor_slices(images)
        data = data.shuffle(len(images), seed=config.seed + step).repeat()
        return data.batch(config.batch_size).map(lambda x: (x, x)).prefetch(tf.data.AUTOTUNE)

    stage = Stage(
        name="cae",
        model=cae,
        checkpoint=tf.train.Checkpoint(cae=cae, optimizer=cae.optimizer),
        step=cae.optimizer.iterations,
        images_per_step=config.batch_size,
        preview=preview,
    )
    echo(f"CAE on {len(rows)} {config.images} ({config.selection}) of {scores_dir}")
    start = run_stage(stage, make_dataset, out_dir, config, progress, echo)
    save_keras(cae, network_path(out_dir, "cae"))
    return {"cae": network_path(out_dir, "cae"), "objects": len(rows), "resumed_from": start,
            "steps": int(cae.optimizer.iterations.numpy())}  # fmt: skip


def embed(
    cae_dir,
    scores_dir=None,
    *,
    selection: str | None = None,
    n_neighbors: int = EmbedConfig.n_neighbors,
    min_dist: float = EmbedConfig.min_dist,
    min_cluster_size: int = EmbedConfig.min_cluster_size,
    seed: int = EmbedConfig.seed,
) -> dict:
    """CAE latents -> UMAP 2-D -> HDBSCAN clusters for the objects the CAE was trained on (or
    ``selection``); writes ``cae_dir/embedding.h5`` and adds umap_x, umap_y, cluster (NaN / -1
    for objects not embedded) to the scored catalogs."""
    import umap
    from sklearn.cluster import HDBSCAN

    cae_dir = Path(cae_dir)
    run = load_run(cae_dir)
    if "cae" not in run or not network_path(cae_dir, "cae").exists():
        raise ConfigError(f"{cae_dir}: no trained CAE here; run `tfanomaly train cae` first")
    scores_dir = Path(scores_dir or run["scores"])
    architecture = stage_record(run, "cae")
    columns, attrs = read_results(scores_dir)
    rows = np.sort(select_objects(columns, selection or architecture["selection"],
                                  architecture["select_key"]))  # fmt: skip
    images = _read_cube(scores_dir, architecture["images"], rows)
    encoder = cae_encoder(load_network(cae_dir, "cae"))
    latents = encoder.predict(images, batch_size=256, verbose=0)
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(rows) - 1), min_dist=min_dist,
                        n_components=2, random_state=seed, n_jobs=1)  # fmt: skip
    embedding = reducer.fit_transform(latents)
    clusters = HDBSCAN(min_cluster_size=min(min_cluster_size, len(rows)), copy=True).fit_predict(
        embedding
    )
    with atomic_path(cae_dir / "embedding.h5") as tmp, h5py.File(tmp, "w") as f:
        f["latents"] = latents
        f["idxs"] = columns["idxs"][rows]
        f["object_ids"] = columns["object_ids"][rows]
        f["umap_x"], f["umap_y"] = embedding[:, 0], embedding[:, 1]
        f["cluster"] = clusters
        f.attrs["umap"] = json.dumps({"n_neighbors": n_neighbors, "min_dist": min_dist,
                                      "seed": seed})  # fmt: skip
    full = {
        "umap_x": np.full(len(columns["idxs"]), np.nan),
        "umap_y": np.full(len(columns["idxs"]), np.nan),
        "cluster": np.full(len(columns["idxs"]), -1, dtype=np.int64),
    }
    full["umap_x"][rows], full["umap_y"][rows], full["cluster"][rows] = (
        embedding[:, 0],
        embedding[:, 1],
        clusters,
    )
    table = catalog_table({**columns, **full}, json_attr(attrs.get("kind_names")))
    written = [write_catalog(table, path) for suffix in CATALOG_FORMATS
               for path in [scores_dir / f"catalog{suffix}"] if path.exists()]  # fmt: skip
    return {"embedding": cae_dir / "embedding.h5", "objects": len(rows), "catalogs": written,
            "clusters": int(clusters.max() + 1)}  # fmt: skip
