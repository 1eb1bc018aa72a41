"""`train cae` on residual images (it learns, resumes, and refuses to write a collapsed network),
and `embed` (UMAP + HDBSCAN) of a results folder or a CAE folder joined into the catalog (the CAE
itself: tests/models/test_cae.py)."""

import dataclasses
import shutil

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from astropy.table import Table
from conftest import build_tiny_run, quiet

from tfanomaly.errors import ConfigError, InputError
from tfanomaly.models.cae import cae_encoder
from tfanomaly.models.score_config import InversionConfig
from tfanomaly.pipelines.characterise import embed, select_objects, train_cae
from tfanomaly.pipelines.config import CaeTrainConfig, EmbedConfig, ScoreConfig
from tfanomaly.pipelines.learning import NetworkCollapsedError
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import read_results


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A scored tiny16 catalog with image cubes."""
    folder = build_tiny_run(
        tmp_path_factory.mktemp("characterise"), 80, seed=3, anomaly_fraction=0.2
    )
    score(
        folder / "run",
        folder / "ds",
        folder / "scores",
        ScoreConfig(batch_size=32, store_images=True, inversion=InversionConfig(steps=2)),
        progress=False,
        echo=quiet,
    )
    score(
        folder / "run",
        folder / "ds",
        folder / "no_cubes",
        ScoreConfig(batch_size=32),
        progress=False,
        echo=quiet,
    )
    return folder


def test_selections(scored, tmp_path):
    columns, _ = read_results(scored / "scores")
    assert len(select_objects(columns, "all", "disc_scores_sigma")) == 80
    rows = select_objects(columns, "sigma:0.5", "disc_scores_sigma")
    assert (columns["disc_scores_sigma"][rows] > 0.5).all()
    assert len(rows) == (columns["disc_scores_sigma"] > 0.5).sum()
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in columns["object_ids"][:5]))
    assert sorted(select_objects(columns, f"ids:{ids}", "x")) == [0, 1, 2, 3, 4]
    ids.write_text("12345\n")
    with pytest.raises(InputError, match="1 of the ids are not in the scored catalog"):
        select_objects(columns, f"ids:{ids}", "x")
    with pytest.raises(ConfigError, match="keeps 0 object"):
        select_objects(columns, "sigma:99", "disc_scores_sigma")


def test_selections_auto_and_top(scored):
    columns, _ = read_results(scored / "scores")
    top = select_objects(columns, "top:7", "scores_sigma")
    assert (
        len(top) == 7 and columns["scores_sigma"][top].min() >= np.sort(columns["scores_sigma"])[-7]
    )
    # 80 objects: the 3-sigma cut keeps fewer than 300, so auto takes the top 500 (all 80).
    assert sorted(select_objects(columns, "auto", "scores_sigma")) == list(range(80))
    with pytest.raises(ConfigError, match="expected top:<count>"):
        select_objects(columns, "top:x", "scores_sigma")


def test_train_cae_learns_resumes_and_needs_cubes(scored, tmp_path):
    """The CAE reconstructs its residual images better than their mean image (the check at the
    end of `train cae`), and a second call resumes from the checkpoint."""
    config = CaeTrainConfig(selection="all", steps=60, batch_size=16, checkpoint_every=30)
    with pytest.raises(InputError, match="no 'residuals' image cube; score with --store-images"):
        train_cae(scored / "no_cubes", tmp_path / "cae0", config, progress=False, echo=quiet)
    first = train_cae(scored / "scores", tmp_path / "cae", config, progress=False, echo=quiet)
    assert first["steps"] == 60 and first["objects"] == 80
    assert first["check"]["ratio"] < 0.8
    messages = []
    again = train_cae(
        scored / "scores",
        tmp_path / "cae",
        dataclasses.replace(config, steps=90),
        progress=False,
        echo=messages.append,
    )
    assert again["steps"] == 90 and any("cae from step 60" in m for m in messages)
    assert again["check"]["mse"] < first["check"]["mse"]
    with pytest.raises(ConfigError, match="cae was trained with other options"):
        train_cae(
            scored / "scores",
            tmp_path / "cae",
            CaeTrainConfig(selection="sigma:1", steps=100, batch_size=16),
            progress=False,
        )


def test_train_cae_stops_when_the_network_collapses(scored, tmp_path):
    """A network that learned nothing (a learning rate of 1e-9; its output barely varies): the
    stage fails naming the cause and writes no cae.keras (the other failures:
    tests/pipelines/test_learning.py)."""
    config = CaeTrainConfig(selection="all", steps=4, batch_size=16, learning_rate=1e-9)
    with pytest.raises(NetworkCollapsedError, match="collapsed to a constant output"):
        train_cae(scored / "scores", tmp_path / "cae", config, progress=False, echo=quiet)
    assert not (tmp_path / "cae" / "cae.keras").exists()


@pytest.mark.slow
def test_embed_is_reproducible_and_joins_the_catalog(scored, tmp_path):
    folder = tmp_path / "scores"
    shutil.copytree(scored / "scores", folder)
    config = EmbedConfig(selection="sigma:-0.5")
    first = embed(folder, config, echo=quiet)
    assert first["embedding"] == folder / "embedding.h5" and first["space"] == EmbedConfig.space
    with h5py.File(first["embedding"]) as f:
        assert f["vectors"].shape[0] == first["objects"] and f.attrs["space"] == config.space
        umap_first = np.stack([f["umap_x"][:], f["umap_y"][:]], axis=1)
        embedded_ids = set(f["object_ids"][:].tolist())
        assert f["cluster"][:].min() >= -1
    # A labelled survey: how well the map groups the kinds comes with the result.
    assert 0 <= first["grouping"]["purity5"] <= 1 and first["grouping"]["anomalies"] >= 2
    embed(folder, config, echo=quiet)
    with h5py.File(first["embedding"]) as f:
        np.testing.assert_array_equal(
            np.stack([f["umap_x"][:], f["umap_y"][:]], axis=1), umap_first
        )
    table = Table.read(folder / "catalog.fits")
    assert {"umap_x", "umap_y", "cluster"} <= set(table.colnames)
    inside = np.array([int(i) in embedded_ids for i in table["object_id"]])
    umap_x = np.ma.filled(table["umap_x"], np.nan)  # astropy masks FITS NaNs on reading
    assert np.isfinite(umap_x[inside]).all() and np.isnan(umap_x[~inside]).all()
    assert (table["cluster"][~inside] == -1).all()
    with pytest.raises(ConfigError, match="unknown feature space 'pixels'"):
        embed(folder, EmbedConfig(space="pixels"))
    # Results scored before the default space's vectors: the next space the file has, said so.
    with h5py.File(folder / "results.h5", "a") as f:
        del f["residual_shape"], f["morphology"]
    messages = []
    older = embed(folder, config, echo=messages.append)
    assert older["space"] == "latents" and any("using latents" in m for m in messages)
    with pytest.raises(InputError, match="no 'residual_shape' vectors"):
        embed(folder, EmbedConfig(space="residual_shape"), echo=quiet)
    with pytest.raises(InputError, match="neither a results folder"):
        embed(tmp_path)


@pytest.mark.slow
def test_embed_of_a_cae_folder_uses_its_latents(scored, tmp_path):
    folder = tmp_path / "scores"
    shutil.copytree(scored / "scores", folder)
    config = CaeTrainConfig(selection="all", steps=60, batch_size=16, checkpoint_every=60)
    train_cae(folder, tmp_path / "cae", config, progress=False, echo=quiet)
    embedded = embed(tmp_path / "cae", echo=quiet)
    assert embedded["embedding"] == tmp_path / "cae" / "embedding.h5"
    assert embedded["space"] == "cae (residuals)" and embedded["objects"] == 80
    with h5py.File(embedded["embedding"]) as f:
        assert f["vectors"].shape == (80, 64)


def test_export_with_the_cae_adds_the_embed_signature(scored, tmp_path):
    from tfanomaly.pipelines.export import export

    config = CaeTrainConfig(selection="all", steps=60, batch_size=16, checkpoint_every=60)
    train_cae(scored / "scores", tmp_path / "cae", config, progress=False, echo=quiet)
    written = export(
        scored / "run", tmp_path / "models", scores_dir=scored / "scores", cae_dir=tmp_path / "cae"
    )
    assert "embed" in written["manifest"]["signatures"]
    model = tf.saved_model.load(str(written["path"]))
    with h5py.File(scored / "s.h5") as f:
        images = f["images"][:4]
    out = model.signatures["embed"](tf.constant(images))
    assert out["latent"].shape == (4, 64)
    # The same latents as the CAE's encoder on the stored residuals of these objects.
    columns, _ = read_results(scored / "scores", with_images=True)
    with h5py.File(scored / "s.h5") as f:
        ids = f["object_ids"][:4]
    rows = [int(np.flatnonzero(columns["object_ids"] == i)[0]) for i in ids]
    encoder = cae_encoder(keras.models.load_model(tmp_path / "cae" / "cae.keras"))
    expected = encoder(columns["residuals"][rows]).numpy()
    np.testing.assert_allclose(out["latent"].numpy(), expected, rtol=1e-3, atol=1e-4)
