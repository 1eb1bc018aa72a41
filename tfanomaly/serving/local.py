"""A local server with TensorFlow Serving's API, for laptops and tests: PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus) over gRPC, and the REST predict, status and
metadata endpoints with TF Serving's JSON formats. Production uses TF Serving itself (serving/).
"""

from __future__ import annotations

import json
import re
import threading
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfanomaly.errors import ConfigError
from tfanomaly.serving.client import GRPC_OPTIONS

# TF Serving's mapping of error codes to HTTP statuses (http_rest_api_handler).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


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
        return Servable(model_dir.name, version, path, dict(loaded.signatures),
                        dict(meta.signature_def), loaded)  # fmt: skip

    def get(self, name: str, version: int | None = None) -> Servable:
        versions = self.servables.get(name)
        if not versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")  # fmt: skip
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Specific({name}, {version})")  # fmt: skip
        return versions[version]


def _signature(servable: Servable, name: str):
    name = name or "serving_default"
    if name not in servable.signatures:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{name}" not found.')  # fmt: skip
    return name, servable.signatures[name], servable.signature_defs[name]


def run_signature(servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
                  output_filter=()) -> dict[str, np.ndarray]:  # fmt: skip
    """Check inputs against the signature as TF Serving does, run it, return numpy outputs."""
    name, function, signature_def = _signature(servable, signature_name)
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
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Missing input tensor alias(es): {', '.join(missing)}")  # fmt: skip
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
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output tensor alias not found in signature: {', '.join(unknown)}")  # fmt: skip
    keep = set(output_filter) or set(outputs)
    return {k: v.numpy() for k, v in outputs.items() if k in keep}


def _type_name(dtype: tf.DType) -> str:
    """TF's own name of a dtype as TF Serving prints it (DT_FLOAT -> float, DT_DOUBLE -> double)."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)[3:].lower()


def _clean(message: str) -> str:
    """The model's own assertion text, without TF's graph-execution wrapping."""
    found = re.search(r"assertion failed: \[(.*?)\]", message, re.S)
    return found.group(1) if found else message.strip().splitlines()[-1]


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService: Predict and GetModelMetadata."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def _servable(self, spec):
        version = spec.version.value if spec.HasField("version") else None
        return self.registry.get(spec.name, version)

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            servable = self._servable(request.model_spec)
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = run_signature(servable, request.model_spec.signature_name, inputs,
                                    list(request.output_filter))  # fmt: skip
        except ServingError as exc:
            context.abort(exc.code, exc.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            servable = self._servable(request.model_spec)
            if list(request.metadata_field) != ["signature_def"]:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "Metadata field signature_def is the only one supported")  # fmt: skip
        except ServingError as exc:
            context.abort(exc.code, exc.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelStatusServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            servables = _status_servables(self.registry, request.model_spec.name,
                                          request.model_spec.version.value or None)  # fmt: skip
        except ServingError as exc:
            context.abort(exc.code, exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for servable in servables:
            status = response.model_version_status.add()
            status.version = servable.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


def _status_servables(registry: ModelRegistry, name: str, version: int | None):
    if version is not None:
        return [registry.get(name, version)]
    registry.get(name)
    return list(registry.servables[name].values())


# ---- REST ------------------------------------------------------------------------------------

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>.*)$")


def _rows_to_columns(instances, aliases: list[str]) -> dict[str, np.ndarray]:
    """TF Serving's row format: a list of instances, each a value (one input) or a dict."""
    if not isinstance(instances, list) or not instances:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        keys = set(instances[0])
        if any(set(row) != keys for row in instances):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Failed to process element: all instances need the same inputs")  # fmt: skip
        return {k: np.asarray([row[k] for row in instances]) for k in keys}
    if len(aliases) != 1:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "instances must be objects naming the inputs of this signature")  # fmt: skip
    return {aliases[0]: np.asarray(instances)}


def _as_input(value: np.ndarray, signature_def, alias: str) -> np.ndarray:
    """JSON numbers arrive as float64/int64: cast to the signature's dtype, as TF Serving does."""
    if alias not in signature_def.inputs:
        return value
    dtype = tf.dtypes.as_dtype(signature_def.inputs[alias].dtype).as_numpy_dtype
    if value.dtype.kind not in "fiub":
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input '{alias}' must hold numbers, got {value.dtype}")  # fmt: skip
    return value.astype(dtype)


def rest_predict(registry: ModelRegistry, name: str, version, body: bytes) -> dict:
    """POST /v1/models/<name>[/versions/<v>]:predict, row ("instances") or columnar ("inputs")."""
    try:
        request = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {exc}") from exc
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "Missing 'instances' or 'inputs' key (exactly one is needed)")  # fmt: skip
    servable = registry.get(name, version)
    signature_name, _, signature_def = _signature(servable, request.get("signature_name"))
    aliases = sorted(signature_def.inputs)
    if "instances" in request:
        columns = _rows_to_columns(request["instances"], aliases)
    else:
        inputs = request["inputs"]
        columns = ({k: np.asarray(v) for k, v in inputs.items()} if isinstance(inputs, dict)
                   else {aliases[0]: np.asarray(inputs)})  # fmt: skip
    try:
        columns = {k: _as_input(v, signature_def, k) for k, v in columns.items()}
    except ValueError as exc:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
    outputs = run_signature(servable, signature_name, columns)
    if "instances" in request:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def rest_status(registry: ModelRegistry, name: str, version) -> dict:
    return {
        "model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
            for s in _status_servables(registry, name, version)
        ]
    }  # fmt: skip


def rest_metadata(registry: ModelRegistry, name: str, version) -> dict:
    servable = registry.get(name, version)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(value)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map)},
    }


def _rest_handler(registry: ModelRegistry):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: one line per request is noise for clients
            pass

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str):
            match = _PATH.match(self.path)
            try:
                if not match:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.path}")
                name, rest = match["name"], match["rest"]
                version = int(match["version"]) if match["version"] else None
                if method == "POST" and rest == ":predict":
                    length = int(self.headers.get("Content-Length") or 0)
                    payload = rest_predict(registry, name, version, self.rfile.read(length))
                elif method == "GET" and rest == "":
                    payload = rest_status(registry, name, version)
                elif method == "GET" and rest == "/metadata":
                    payload = rest_metadata(registry, name, version)
                else:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Malformed request: {method} {self.path}")  # fmt: skip
                self._reply(HTTPStatus.OK, payload)
            except ServingError as exc:
                self._reply(
                    HTTP_STATUS.get(exc.code, HTTPStatus.BAD_REQUEST), {"error": exc.message}
                )
            except Exception as exc:  # the server keeps serving whatever one request does
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})

        def do_GET(self):  # noqa: N802
            self._route("GET")

        def do_POST(self):  # noqa: N802
            self._route("POST")

    return Handler


class LocalServer:
    """gRPC and REST servers over one model registry, started in background threads.

    Example:
        >>> server = LocalServer("models", grpc_port=8500, rest_port=8501).start()
        >>> ...
        >>> server.stop()
    """

    def __init__(self, model_base, host: str = "127.0.0.1", grpc_port: int = 8500,
                 rest_port: int = 8501, workers: int = 8):  # fmt: skip
        self.registry = ModelRegistry(model_base)
        self.host = host
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                options=GRPC_OPTIONS)  # fmt: skip
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.registry), self.grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelStatusServicer(self.registry), self.grpc
        )
        self.grpc_port = self.grpc.add_insecure_port(f"{host}:{grpc_port}")
        self.http = ThreadingHTTPServer((host, rest_port), _rest_handler(self.registry))
        self.rest_port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def start(self) -> LocalServer:
        self.grpc.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.grpc.stop(grace=1)
        self.http.shutdown()
        self.http.server_close()

    def wait(self) -> None:
        self.grpc.wait_for_termination()
