"""Export a trained run as a SavedModel for TensorFlow Serving: the stretch, the latent inversion
and the sigma statistics in one graph of stock TF ops, under ``MODEL_BASE/<name>/<version>/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError
from tfanomaly.models.cae import cae_encoder
from tfanomaly.models.inverter import InversionConfig, LatentInverter, load_inverter
from tfanomaly.pipelines.train import load_run
from tfanomaly.results.catalog import SCORE_KEYS, SCORE_OUTPUTS, STATS_FILE, read_statistics

MODEL_NAME = "tfanomaly"
SIGNATURES = ("serving_default", "score_fast", "reconstruct", "generate")


class AnomalyScorer(tf.Module):
    """What the SavedModel holds: raw flux cutouts in, scores out.

    Every signature takes raw flux (N, H, W, C) float32 as the survey delivers it: non-finite
    pixels are set to 0 (the ingest default), the Lupton stretch runs in the graph, and a wrong
    image size or band count fails with INVALID_ARGUMENT and a message that says what was expected.
    """

    def __init__(self, inverter: LatentInverter, stats: dict, image_shape, stretch=None,
                 cae_encoder=None, cae_images: str = "residuals"):  # fmt: skip
        super().__init__(name="tfanomaly_scorer")
        self.cae_encoder, self.cae_images = cae_encoder, cae_images
        # Only a model with a CAE has the embed function (saving traces every tf.function).
        if cae_encoder is not None:
            self.embed = tf.function(
                self._embed, input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)]
            )
        self.inverter = inverter
        self.fast = LatentInverter(
            inverter.generator,
            inverter.critic,
            inverter.encoder,
            dataclasses.replace(inverter.config, steps=0),
            inverter.calibration,
        )
        self.stretch = stretch or LuptonStretch()
        self.image_shape = tuple(int(v) for v in image_shape)
        self.latent_dim = int(inverter.generator.input_shape[-1])
        self.means = {k: tf.constant(stats[k]["mean"], tf.float32) for k in SCORE_KEYS}
        self.stds = {k: tf.constant(stats[k]["std"] or 1.0, tf.float32) for k in SCORE_KEYS}

    def _prepare(self, images):
        """Check the shape, clean non-finite pixels, stretch."""
        height, width, bands = self.image_shape
        images = _checked(
            images,
            [height, width, bands],
            f"this model scores {height}x{width} cutouts with {bands} band(s): send raw flux as "
            f"a 4-D batch (N, {height}, {width}, {bands})",
        )
        images = tf.where(tf.math.is_finite(images), images, tf.zeros_like(images))
        return self.stretch(images)

    def _scores(self, out):
        result = {"reconstruction": out["reconstruction"]}
        for name, key in SCORE_OUTPUTS.items():
            result[name] = out[name]
            result[f"{name}_sigma"] = (out[name] - self.means[key]) / self.stds[key]
        return result

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def score(self, images):
        """The default score (and its terms) and the paper's scores, after the inversion the
        reference catalog was scored with (encoder start + in-graph Adam steps)."""
        return self._scores(self.inverter(self._prepare(images)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def score_fast(self, images):
        """The same scores from the encoder's z alone (no inversion steps)."""
        return self._scores(self.fast(self._prepare(images)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def reconstruct(self, images):
        """The stretched image, its reconstruction G(z), the residual and z."""
        stretched = self._prepare(images)
        out = self.inverter(stretched)
        return {"stretched": stretched, "reconstruction": out["reconstruction"],
                "residual": out["residual"], "z": out["z"]}  # fmt: skip

    def _embed(self, images):
        """The CAE latent of each image's residual (or of the image, for a CAE trained on reals),
        the input of UMAP and clustering, with the default score."""
        stretched = self._prepare(images)
        out = self.inverter(stretched)
        source = out["residual"] if self.cae_images == "residuals" else stretched
        return {"latent": self.cae_encoder(source), "score": out["score"]}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def generate(self, z):
        """Generated (stretched) images G(z) for latent vectors z (N, latent_dim)."""
        z = _checked(z, [self.latent_dim], f"z must have shape (N, {self.latent_dim})")
        return {"images": self.inverter.generator(z)}


def _checked(tensor, inner_shape: list[int], message: str):
    """``tensor`` with its static shape set to (None, *inner_shape), after an assertion that fails
    with INVALID_ARGUMENT and ``message`` otherwise. The assertion is a control dependency of the
    result, so it runs before any op that would fail on the shape with a less useful message."""
    rank = len(inner_shape) + 1
    shape = tf.shape(tensor)
    padded = tf.concat([shape, tf.zeros([rank], tf.int32)], axis=0)[1:rank]
    ok = tf.logical_and(
        tf.equal(tf.size(shape), rank), tf.reduce_all(tf.equal(padded, inner_shape))
    )
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, shape])]):
        tensor = tf.identity(tensor)
    return tf.ensure_shape(tensor, [None, *inner_shape])


def save_scorer(scorer: AnomalyScorer, path) -> None:
    """Write ``scorer`` as a SavedModel at ``path`` with the four signatures."""
    signatures = {
        "serving_default": scorer.score.get_concrete_function(),
        "score_fast": scorer.score_fast.get_concrete_function(),
        "reconstruct": scorer.reconstruct.get_concrete_function(),
        "generate": scorer.generate.get_concrete_function(),
    }
    if scorer.cae_encoder is not None:
        signatures["embed"] = scorer.embed.get_concrete_function()
    # Track the tf.Variables the graphs capture as such (as keras.export.ExportArchive does):
    # Keras 3 variables reached only through the models are restored by TF2's loader but not by
    # the graph-mode (TF1) session loader that TF Serving's C++ runtime uses.
    captured = {id(v): v for fn in signatures.values() for v in fn.variables}
    scorer.serving_variables = list(captured.values())
    tf.saved_model.save(scorer, str(path), signatures=signatures)


def next_version(model_dir: Path) -> int:
    """One more than the highest numeric version folder (TF Serving serves the highest)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export(run_dir, model_base, *, scores_dir=None, name: str = MODEL_NAME,
           steps: int | None = None, cae_dir=None) -> dict:  # fmt: skip
    """Write the run as ``model_base/name/<next version>/`` (a SavedModel) and return its path.

    The sigma statistics come from ``scores_dir/score_stats.json`` (a scored catalog; default:
    ``run_dir/scores`` if it exists), and so do the inversion settings, so that served scores
    mean what the catalog's mean (``steps`` overrides the number of inversion steps). The run's
    manifest (preset, training steps, data set, score statistics, inversion settings) is stored
    as the asset ``assets/tfanomaly.json``. With ``cae_dir`` (a ``train cae`` folder) the model
    also gets the ``embed`` signature.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    stats_path = Path(scores_dir) / STATS_FILE if scores_dir else run_dir / "scores" / STATS_FILE
    if not stats_path.exists():
        raise ConfigError(
            f"no {stats_path}: score a reference catalog first (`tfanomaly score`) and pass its "
            "folder with --scores, so that served sigma values mean the same as the catalog's"
        )
    stats = read_statistics(stats_path)
    saved = json.loads(stats_path.read_text())
    inversion = InversionConfig(**(saved.get("inversion") or {}))
    if steps is not None:
        inversion = dataclasses.replace(inversion, steps=steps)
    inverter = load_inverter(run_dir, inversion)
    model = run["model"]
    shape = (model["image_size"], model["image_size"], model["channels"])
    cae, cae_images = None, "residuals"
    if cae_dir is not None:
        cae_path = Path(cae_dir) / "cae.keras"
        if not cae_path.exists():
            raise ConfigError(f"{cae_dir}: no cae.keras; run `tfanomaly train cae` first")
        cae = cae_encoder(keras.models.load_model(cae_path, compile=False))
        cae_images = load_run(cae_dir)["cae"]["architecture"]["images"]
    scorer = AnomalyScorer(inverter, stats, shape, cae_encoder=cae, cae_images=cae_images)
    manifest = {
        "name": name,
        "run": str(run_dir.resolve()),
        "model": model,
        "training": {k: run[k] for k in ("gan", "encoder") if k in run},
        "data": run.get("data"),
        "score_statistics": stats,
        "statistics_from": str(stats_path.resolve()),
        "inversion": inversion.to_dict(),
        "default_score": {"settings": inverter.calibration.settings.to_dict(),
                          "calibration": inverter.calibration.info},
        "stretch": scorer.stretch.get_config(),
        "input": {"shape": ["N", *shape], "dtype": "float32", "units": "raw flux, bands "
                  + ",".join(run.get("data", {}).get("bands", []))},
        "signatures": list(SIGNATURES) + (["embed"] if cae is not None else []),
        "cae": str(Path(cae_dir).resolve()) if cae_dir is not None else None,
    }  # fmt: skip
    model_dir = Path(model_base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(model_dir)
    staging = model_dir / f".{version}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    asset_dir = Path(tempfile.mkdtemp(prefix="tfanomaly-export-"))
    asset_source = asset_dir / "tfanomaly.json"  # the asset keeps this name in assets/
    asset_source.write_text(json.dumps(manifest, indent=2))
    scorer.manifest = tf.saved_model.Asset(str(asset_source))
    try:
        save_scorer(scorer, staging)
        # TF Serving watches the base folder: the version appears whole, by one rename.
        staging.rename(model_dir / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(asset_dir, ignore_errors=True)
    return {"path": model_dir / str(version), "version": version, "manifest": manifest}
