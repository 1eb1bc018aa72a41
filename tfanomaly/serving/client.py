"""Clients of a TensorFlow Serving endpoint (or of `tfanomaly serve`): score raw flux cutouts over
gRPC (PredictionService/Predict) or REST (``POST /v1/models/<name>:predict``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np

from tfanomaly.errors import TfanomalyError

MAX_MESSAGE_BYTES = 512 * 1024 * 1024  # image batches are large; gRPC's default is 4 MB
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class ServerError(TfanomalyError):
    """The server refused or failed a request; the message is the server's."""


class GrpcClient:
    """Calls a signature over gRPC with tensorflow-serving-api's PredictionService stub.

    Example:
        >>> client = GrpcClient("localhost:8500")  # doctest: +SKIP
        >>> out = client.predict({"images": raw_flux})   # dict of numpy arrays  # doctest: +SKIP
    """

    def __init__(
        self,
        target: str,
        model: str = "tfanomaly",
        signature: str = "serving_default",
        version: int | None = None,
        timeout: float = 300.0,
    ):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.model, self.signature, self.version, self.timeout = model, signature, version, timeout
        self.channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = self.signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ServerError(f"{exc.code().name}: {exc.details()}") from exc
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def close(self) -> None:
        self.channel.close()


class RestClient:
    """Calls a signature through TF Serving's REST API, columnar format ("inputs"/"outputs").

    Example:
        >>> out = RestClient("http://localhost:8501").predict({"images": raw_flux})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        model: str = "tfanomaly",
        signature: str = "serving_default",
        version: int | None = None,
        timeout: float = 300.0,
    ):
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.model, self.signature, self.version, self.timeout = model, signature, version, timeout

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        path = f"/v1/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        body = json.dumps(
            {
                "signature_name": self.signature,
                "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()},
            }
        )
        request = urllib.request.Request(
            f"{self.url}{path}:predict",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                payload = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail)["error"]
            except (ValueError, KeyError):
                pass
            raise ServerError(f"HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise ServerError(f"{self.url}: {exc.reason}") from exc
        outputs = payload["outputs"]
        if not isinstance(outputs, dict):
            outputs = {"output": outputs}
        return {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}

    def close(self) -> None:
        pass
