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
from tfanomaly.models.cae import CAE, cae_encoder
from tfanomaly.models.config import AUTO, ModelConfig, preset_for_data
from tfanomaly.pipelines.config import (
    AUTO_FLOOR,
    AUTO_SELECTION,
    AUTO_SIGMA,
    AUTO_TOP,
    CaeTrainConfig,
    EmbedConfig,
)
from tfanomaly.pipelines.learning import check_reconstruction
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
from tfanomaly.results.clusters import EMBEDDING_FILE
from tfanomaly.results.grouping import grouping_quality
from tfanomaly.results.preview import tile
from tfanomaly.results.spaces import DEFAULT_SPACE, choose_space, space_vectors


def select_objects(columns: dict, selection: str, key: str) -> np.ndarray:
    """Row indices of the results that ``selection`` picks (see :class:`CaeTrainConfig`)."""
    if selection == "all":
        return np.arange(len(columns["object_ids"]))
    ranked = selection == AUTO_SELECTION or selection.startswith(("top:", "sigma:"))
    if ranked and key not in columns:
        raise ConfigError(f"no results column '{key}' to cut on")
    if selection == AUTO_SELECTION:
        rows = np.flatnonzero(columns[key] > AUTO_SIGMA)
        if len(rows) < AUTO_FLOOR:
            rows = np.argsort(-columns[key], kind="stable")[:AUTO_TOP]
    elif selection.startswith("top:"):
        count = _selection_number(selection, int, "top:<count>")
        rows = np.argsort(-columns[key], kind="stable")[:count]
    elif selection.startswith("sigma:"):
        rows = np.flatnonzero(columns[key] > _selection_number(selection, float, "sigma:<number>"))
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
        raise ConfigError(
            f"selection '{selection}': use {AUTO_SELECTION}, all, sigma:<S>, top:<N> or ids:<file>"
        )
    if len(rows) < 2:
        raise ConfigError(
            f"selection '{selection}' keeps {len(rows)} object(s); at least 2 are needed "
            "(lower the sigma cut or use --select all)"
        )
    return rows


def _selection_number(selection: str, kind, form: str):
    """The number after the colon of ``top:N`` or ``sigma:S`` (ConfigError naming ``form``)."""
    try:
        return kind(selection.split(":", 1)[1])
    except ValueError as exc:
        raise ConfigError(f"selection '{selection}': expected {form}") from exc


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


def train_cae(
    scores_dir, out_dir, config: CaeTrainConfig, *, progress: bool = True, echo: Callable = print
) -> dict:
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
    offset, scale = band_statistics(images)
    cae = CAE(model_config, band_offset=offset, band_scale=scale)
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
    check = check_reconstruction(
        "train cae",
        images,
        cae.predict(images, batch_size=256, verbose=0),
        advice="try more --steps or a lower --learning-rate; nothing was written to "
        f"{network_path(out_dir, 'cae')}",
        enforce=config.check,
    )
    save_keras(cae, network_path(out_dir, "cae"))
    return {
        "cae": network_path(out_dir, "cae"),
        "objects": len(rows),
        "resumed_from": start,
        "steps": int(cae.optimizer.iterations.numpy()),
        "check": check,
    }


def band_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of image cubes (N, H, W, C), the CAE's
    standardisation (a band with no spread gets a scale of 1)."""
    flat = images.reshape(-1, images.shape[-1]).astype(np.float64)
    std = flat.std(axis=0)
    return flat.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()


def map_and_cluster(vectors: np.ndarray, config: EmbedConfig) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D UMAP map (N, 2) of ``vectors`` (N, D) and its HDBSCAN clusters (N,), -1 for
    noise, with ``config``'s settings (bounded by N)."""
    import umap
    from sklearn.cluster import HDBSCAN

    count = len(vectors)
    embedding = umap.UMAP(
        n_neighbors=min(config.n_neighbors, count - 1),
        min_dist=config.min_dist,
        n_components=2,
        random_state=config.seed,
        n_jobs=1,
    ).fit_transform(vectors)
    clusters = HDBSCAN(
        min_cluster_size=min(config.min_cluster_size, count),
        min_samples=min(config.min_samples, count),
        copy=True,
    ).fit_predict(embedding)
    return embedding, clusters


def embed(
    source,
    config: EmbedConfig | None = None,
    *,
    scores_dir=None,
    progress: bool = True,
    echo: Callable = print,
) -> dict:
    """Map the high-anomaly sample of a scored catalog to 2-D with UMAP, cluster the map with
    HDBSCAN and join both into the catalogs.

    ``source`` is either a results folder (``tfanomaly score``'s output): the objects are compared
    in the feature space ``config.space`` (default: the residual's shape descriptors beside the
    encoder's z, chosen by measurement, see the docs' characterisation results) and the result is
    ``source/embedding.h5``; or a ``train cae`` folder: the paper's way, the CAE's latents of the
    image cubes it was trained on (of ``scores_dir``, default the catalog it was trained on), and
    the result is ``source/embedding.h5``. ``embedding.h5`` holds ``vectors`` (what UMAP saw),
    ``idxs``, ``object_ids``, ``umap_x``, ``umap_y``, ``cluster``; objects not embedded get NaN /
    -1 in the catalogs. Returns the paths and counts (and, for a labelled survey, how well the
    map groups the anomaly kinds: ``grouping``).
    """
    config = config or EmbedConfig()
    config.validate()
    source = Path(source)
    if is_run(source) and "cae" in load_run(source):
        if not network_path(source, "cae").exists():
            raise ConfigError(f"{source}: the CAE is not trained yet; run `tfanomaly train cae`")
        run = load_run(source)
        scores_dir = Path(scores_dir or run["scores"])
        trained = stage_record(run, "cae")
        columns, attrs = read_results(scores_dir)
        selection = (
            config.selection
            if config.selection != EmbedConfig.selection
            else (trained["selection"])
        )
        rows = np.sort(select_objects(columns, selection, trained["select_key"]))
        images = _read_cube(scores_dir, trained["images"], rows)
        encoder = cae_encoder(load_network(source, "cae"))
        vectors = encoder.predict(images, batch_size=256, verbose=0)
        space = f"cae ({trained['images']})"
    elif (source / "results.h5").exists():
        if scores_dir is not None and Path(scores_dir) != source:
            raise ConfigError("--scores is for a CAE folder; give the results folder itself")
        scores_dir = source
        columns, attrs = read_results(scores_dir, with_vectors=True)
        requested = None if config.space == DEFAULT_SPACE else config.space
        space, fell_back = choose_space(requested, columns, scores_dir / "results.h5", "--space")
        if fell_back:
            echo(
                f"embed: {scores_dir} has no vectors for the default space {DEFAULT_SPACE}; "
                f"using {space} (score again with this tfanomaly version for the default)"
            )
        rows = np.sort(select_objects(columns, config.selection, config.select_key))
        vectors = space_vectors(lambda key: columns[key], space)[rows]
    else:
        raise InputError(
            f"{source}: neither a results folder (results.h5) nor a trained CAE "
            "folder; run `tfanomaly score` or `tfanomaly train cae` first"
        )
    echo(f"embed: {len(rows)} objects in the space {space} -> UMAP -> HDBSCAN")
    embedding, clusters = map_and_cluster(vectors, config)
    out_path = source / EMBEDDING_FILE
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        f["vectors"] = vectors
        f["idxs"] = columns["idxs"][rows]
        f["object_ids"] = columns["object_ids"][rows]
        f["umap_x"], f["umap_y"] = embedding[:, 0], embedding[:, 1]
        f["cluster"] = clusters
        f.attrs["space"] = space
        f.attrs["umap"] = json.dumps(
            {
                "n_neighbors": config.n_neighbors,
                "min_dist": config.min_dist,
                "seed": config.seed,
                "min_cluster_size": config.min_cluster_size,
                "min_samples": config.min_samples,
            }
        )
    n = len(columns["idxs"])
    full = {
        "umap_x": np.full(n, np.nan),
        "umap_y": np.full(n, np.nan),
        "cluster": np.full(n, -1, dtype=np.int64),
    }
    full["umap_x"][rows], full["umap_y"][rows] = embedding[:, 0], embedding[:, 1]
    full["cluster"][rows] = clusters
    kind_names = json_attr(attrs.get("kind_names"))
    table = catalog_table({**columns, **full}, kind_names)
    written = [
        write_catalog(table, path)
        for suffix in CATALOG_FORMATS
        for path in [scores_dir / f"catalog{suffix}"]
        if path.exists()
    ]
    result = {
        "embedding": out_path,
        "objects": len(rows),
        "catalogs": written,
        "space": space,
        "clusters": int(clusters.max() + 1),
    }
    if "labels" in columns and kind_names and (columns["labels"][rows] > 0).sum() >= 2:
        result["grouping"] = grouping_quality(
            vectors, clusters, columns["labels"][rows], kind_names
        )
    return result
