"""The models a server holds (the newest version of each under a model base) and how a signature
runs on them: TF Serving's input checks and error codes, shared by the gRPC and REST APIs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from tfanomaly.errors import ConfigError


class ServingError(Exception):
    """An error with the status code TF Serving would answer with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Servable:
    """One loaded version of a model."""

    name: str
    version: int
    path: Path
    signatures: dict
    signature_defs: dict  # name -> SignatureDef proto (as in saved_model.pb)
    loaded: object = None  # the loaded SavedModel, kept alive with its variables


class ModelRegistry:
    """The newest version of each model under a model base (``BASE/<name>/<version>/``)."""

    def __init__(self, model_base):
        self.base = Path(model_base)
        if not self.base.is_dir():
            raise ConfigError(f"{self.base}: no such model base folder")
        self.servables: dict[str, dict[int, Servable]] = {}
        for model_dir in sorted(p for p in self.base.iterdir() if p.is_dir()):
            versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
            if versions:
                self.servables[model_dir.name] = {versions[-1]: self._load(model_dir, versions[-1])}
        if not self.servables:
            raise ConfigError(f"{self.base}: no model versions (expected {self.base}/<name>/<n>/)")

    @staticmethod
    def _load(model_dir: Path, version: int) -> Servable:
        path = model_dir / str(version)
        loaded = tf.saved_model.load(str(path))
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
        meta = next(m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags)
        return Servable(
            model_dir.name, version, path, dict(loaded.signatures), dict(meta.signature_def), loaded
        )

    def get(self, name: str, version: int | None = None) -> Servable:
        versions = self.servables.get(name)
        if not versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})"
            )
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({name}, {version})",
            )
        return versions[version]


def signature(servable: Servable, name: str):
    """The signature ``name`` ("" or None: serving_default): its name, function and SignatureDef."""
    name = name or "serving_default"
    if name not in servable.signatures:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.'
        )
    return name, servable.signatures[name], servable.signature_defs[name]


def run_signature(
    servable: Servable, signature_name: str, inputs: dict[str, np.ndarray], output_filter=()
) -> dict[str, np.ndarray]:
    """Check inputs against the signature as TF Serving does, run it, return numpy outputs."""
    name, function, signature_def = signature(servable, signature_name)
    expected = dict(signature_def.inputs)
    unknown = sorted(set(inputs) - set(expected))
    if unknown:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input tensor alias not found in signature: {', '.join(unknown)}. Inputs expected to "
            f"be in the set {{{','.join(sorted(expected))}}}.",
        )
    missing = sorted(set(expected) - set(inputs))
    if missing:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Missing input tensor alias(es): {', '.join(missing)}",
        )
    feeds = {}
    for alias, value in inputs.items():
        shape = expected[alias].tensor_shape
        if not shape.unknown_rank and np.ndim(value) != len(shape.dim):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{alias}' must have rank {len(shape.dim)}, got shape {np.shape(value)}",
            )
        dtype = tf.dtypes.as_dtype(expected[alias].dtype)
        given = tf.dtypes.as_dtype(np.asarray(value).dtype)
        if given != dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg[0] ({alias}) to be {_type_name(dtype)} but {_type_name(given)} is "
                "provided",
            )
        feeds[alias] = tf.constant(value)
    try:
        outputs = function(**feeds)
    except tf.errors.InvalidArgumentError as exc:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, _clean(exc.message)) from exc
    unknown = sorted(set(output_filter) - set(outputs))
    if unknown:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"output tensor alias not found in signature: {', '.join(unknown)}",
        )
    keep = set(output_filter) or set(outputs)
    return {k: v.numpy() for k, v in outputs.items() if k in keep}


def _type_name(dtype: tf.DType) -> str:
    """TF's own name of a dtype as TF Serving prints it (DT_FLOAT -> float, DT_DOUBLE -> double)."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)[3:].lower()


def _clean(message: str) -> str:
    """The model's own assertion text, without TF's graph-execution wrapping."""
    found = re.search(r"assertion failed: \[(.*?)\]", message, re.S)
    return found.group(1) if found else message.strip().splitlines()[-1]


def status_servables(registry: ModelRegistry, name: str, version: int | None):
    """The servables a status request names: one version, or every loaded version of the model."""
    if version is not None:
        return [registry.get(name, version)]
    registry.get(name)
    return list(registry.servables[name].values())
