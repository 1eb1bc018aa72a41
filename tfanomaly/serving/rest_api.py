"""TF Serving's REST API over a model registry: POST /v1/models/<name>[/versions/<v>]:predict (row
and columnar JSON), GET .../<name> (status) and GET .../metadata, with TF Serving's HTTP statuses."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tfanomaly.serving.registry import (
    ModelRegistry,
    ServingError,
    run_signature,
    signature,
    status_servables,
)

# TF Serving's mapping of error codes to HTTP statuses (http_rest_api_handler).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>.*)$")


def _rows_to_columns(instances, aliases: list[str]) -> dict[str, np.ndarray]:
    """TF Serving's row format: a list of instances, each a value (one input) or a dict."""
    if not isinstance(instances, list) or not instances:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        keys = set(instances[0])
        if any(set(row) != keys for row in instances):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Failed to process element: all instances need the same inputs",
            )
        return {k: np.asarray([row[k] for row in instances]) for k in keys}
    if len(aliases) != 1:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "instances must be objects naming the inputs of this signature",
        )
    return {aliases[0]: np.asarray(instances)}


def _as_input(value: np.ndarray, signature_def, alias: str) -> np.ndarray:
    """JSON numbers arrive as float64/int64: cast to the signature's dtype, as TF Serving does."""
    if alias not in signature_def.inputs:
        return value
    dtype = tf.dtypes.as_dtype(signature_def.inputs[alias].dtype).as_numpy_dtype
    if value.dtype.kind not in "fiub":
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{alias}' must hold numbers, got {value.dtype}",
        )
    return value.astype(dtype)


def rest_predict(registry: ModelRegistry, name: str, version, body: bytes) -> dict:
    """POST /v1/models/<name>[/versions/<v>]:predict, row ("instances") or columnar ("inputs")."""
    try:
        request = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {exc}") from exc
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing 'instances' or 'inputs' key (exactly one is needed)",
        )
    servable = registry.get(name, version)
    signature_name, _, signature_def = signature(servable, request.get("signature_name"))
    aliases = sorted(signature_def.inputs)
    if "instances" in request:
        columns = _rows_to_columns(request["instances"], aliases)
    else:
        inputs = request["inputs"]
        columns = (
            {k: np.asarray(v) for k, v in inputs.items()}
            if isinstance(inputs, dict)
            else {aliases[0]: np.asarray(inputs)}
        )
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
            {
                "version": str(s.version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for s in status_servables(registry, name, version)
        ]
    }


def rest_metadata(registry: ModelRegistry, name: str, version) -> dict:
    servable = registry.get(name, version)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(value)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": json_format.MessageToDict(signature_map)},
    }


def rest_handler(registry: ModelRegistry):
    """The request handler class for an HTTP server that serves ``registry``."""

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
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}"
                    )
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
