"""The SavedModel that TensorFlow Serving loads: raw flux in, the stretch, the latent inversion and
the sigma scores in one graph of stock TF ops, written as ``MODEL_BASE/<name>/<version>/``."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfanomaly.data.dataset import apply_mask, stretch_batch
from tfanomaly.data.stretch import LuptonStretch
from tfanomaly.errors import ConfigError
from tfanomaly.models.inverter import LatentInverter
from tfanomaly.results.catalog import SCORE_KEYS, SCORE_OUTPUTS, VECTOR_OUTPUTS
from tfanomaly.serving.signatures import PLANES_SIGNATURE

MODEL_NAME = "tfanomaly"


class AnomalyScorer(tf.Module):
    """What the SavedModel holds: raw flux cutouts in, scores out.

    Every signature takes raw flux (N, H, W, C) float32 as the survey delivers it: non-finite
    pixels are set to 0 (the ingest default), the Lupton stretch runs in the graph, and a wrong
    image size or band count fails with INVALID_ARGUMENT and a message that says what was expected.

    Where the run was calibrated with variance and mask planes, ``masked_bits`` (the mask bits
    its data set leaves out, the manifest's ``masked_value``) must be given and the model gets
    the ``score_planes`` signature: raw flux, variance and mask planes in, as the survey
    delivers them, the scores the catalog has for a data set with planes out.
    """

    def __init__(
        self,
        inverter: LatentInverter,
        stats: dict,
        image_shape,
        stretch=None,
        cae_encoder=None,
        cae_images: str = "residuals",
        masked_bits: int | None = None,
    ):
        super().__init__(name="tfanomaly_scorer")
        self.cae_encoder, self.cae_images = cae_encoder, cae_images
        self.planes = inverter.calibration.planes if inverter.calibration is not None else ()
        if self.planes:
            if masked_bits is None:
                raise ValueError("a run calibrated with planes needs masked_bits to export")
            self.masked_bits = int(masked_bits)
            plane = tf.TensorSpec([None, None, None, None], tf.float32)
            self.score_planes = tf.function(
                self._score_planes,
                input_signature=[plane, plane, tf.TensorSpec([None, None, None, None], tf.int32)],
            )
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
        # A LuptonStretch, or a manifest's stretch record (None: the paper's); see
        # pipelines.run.run_stretch.
        self.stretch = (
            stretch if isinstance(stretch, LuptonStretch) else LuptonStretch.from_config(stretch)
        )
        self.image_shape = tuple(int(v) for v in image_shape)
        self.latent_dim = int(inverter.generator.input_shape[-1])
        self.means = {k: tf.constant(stats[k]["mean"], tf.float32) for k in SCORE_KEYS}
        self.stds = {k: tf.constant(stats[k]["std"] or 1.0, tf.float32) for k in SCORE_KEYS}

    def _checked_batch(self, tensor, what: str):
        """``tensor`` checked to be a batch of this model's cutouts (INVALID_ARGUMENT otherwise,
        with a message that starts with ``what`` to send and names the expected shape)."""
        height, width, bands = self.image_shape
        return _checked(
            tensor, [height, width, bands], f"{what} as a 4-D batch (N, {height}, {width}, {bands})"
        )

    def _flux(self, images):
        height, width, bands = self.image_shape
        return self._checked_batch(
            images,
            f"this model scores {height}x{width} cutouts with {bands} band(s): send raw flux",
        )

    def _prepare(self, images):
        """Check the shape, clean non-finite pixels, stretch: (stretched, flux)."""
        images = self._flux(images)
        images = tf.where(tf.math.is_finite(images), images, tf.zeros_like(images))
        return self.stretch(images), images

    def _prepare_planes(self, images, variance, mask):
        """What ingest and the data pipeline do to a cutout with planes, in the graph: pixels
        with a masked bit, non-finite flux or (with a variance plane) a variance that is not a
        positive number are masked (ingest's invalid pixels), made harmless as the data pipeline
        does (``apply_mask``), then stretched with their variance (``stretch_batch``).
        Returns (stretched, flux, stretched variance or None, stretched mask)."""
        images = self._flux(images)
        variance = self._checked_batch(variance, "variance: send the flux variance")
        mask = self._checked_batch(mask, "mask: send the int32 mask bits")
        finite = tf.math.is_finite(images)
        masked = tf.logical_or(
            tf.not_equal(tf.bitwise.bitwise_and(mask, self.masked_bits), 0), tf.logical_not(finite)
        )
        batch = {"image": tf.where(finite, images, tf.zeros_like(images))}
        if "variance" in self.planes:
            good = tf.logical_and(tf.math.is_finite(variance), variance > 0)
            masked = tf.logical_or(masked, tf.logical_not(good))
            batch["variance"] = variance
        batch = apply_mask({**batch, "mask": masked})
        stretched = stretch_batch(batch, self.stretch)
        return stretched["image"], batch["image"], stretched.get("variance"), stretched["mask"]

    def _score_planes(self, images, variance, mask):
        """The default score with the data's variance and mask planes (the plane path of the
        residual terms), its terms and the paper's scores, after the full inversion. ``variance``:
        raw flux squared (ignored where the calibration has no variance plane); ``mask``: the
        survey's int32 mask bits, those of ``masked_bits`` left out."""
        stretched, flux, variance, mask = self._prepare_planes(images, variance, mask)
        return self._scores(self.inverter(stretched, flux, variance, mask))

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
        return self._scores(self.inverter(*self._prepare(images)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def score_fast(self, images):
        """The same scores from the encoder's z alone (no inversion steps)."""
        return self._scores(self.fast(*self._prepare(images)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def reconstruct(self, images):
        """The stretched image, its reconstruction G(z), the residual and z."""
        stretched, flux = self._prepare(images)
        out = self.inverter(stretched, flux)
        return {
            "stretched": stretched,
            "reconstruction": out["reconstruction"],
            "residual": out["residual"],
            "z": out["z"],
        }

    def describe(self, images) -> dict:
        """What ``score`` returns and the per-object vectors the score stage stores
        (``results.catalog.VECTOR_OUTPUTS``: z, the critic feature axes, the residual's shape, the
        morphology parameters), for cutouts compared with a scored catalog in this process (an
        example from a file, "find more like this"). Not a signature of the SavedModel."""
        out = self.inverter(*self._prepare(images))
        result = self._scores(out)
        result.update({name: out[name] for name in VECTOR_OUTPUTS if name in out})
        return result

    def _embed(self, images):
        """The CAE latent of each image's residual (or of the image, for a CAE trained on reals),
        the input of UMAP and clustering, with the default score."""
        stretched, flux = self._prepare(images)
        out = self.inverter(stretched, flux)
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


def call_in_batches(function, batch_size: int, *arrays) -> dict:
    """``function`` (a scorer's signature or method, tensors in, a dict of tensors out) over
    ``arrays`` (NumPy, the same length) in batches of ``batch_size``: its outputs' arrays,
    concatenated (none for empty arrays)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    pieces: dict[str, list] = {}
    for start in range(0, len(arrays[0]), batch_size):
        out = function(*(tf.constant(a[start : start + batch_size]) for a in arrays))
        for key, value in out.items():
            pieces.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in pieces.items()}


def save_scorer(scorer: AnomalyScorer, path) -> None:
    """Write ``scorer`` as a SavedModel at ``path`` with the four signatures (and ``embed``,
    ``score_planes`` where it has them)."""
    signatures = {
        "serving_default": scorer.score.get_concrete_function(),
        "score_fast": scorer.score_fast.get_concrete_function(),
        "reconstruct": scorer.reconstruct.get_concrete_function(),
        "generate": scorer.generate.get_concrete_function(),
    }
    if scorer.cae_encoder is not None:
        signatures["embed"] = scorer.embed.get_concrete_function()
    if scorer.planes:
        signatures[PLANES_SIGNATURE] = scorer.score_planes.get_concrete_function()
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


def save_version(scorer: AnomalyScorer, model_dir, manifest: dict) -> int:
    """Write ``scorer`` as the next version of ``model_dir`` (``model_dir/<version>/``), with
    ``manifest`` as the asset ``assets/tfanomaly.json``, and return the version number."""
    model_dir = Path(model_dir)
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
    return version
