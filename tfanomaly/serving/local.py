"""A local server with TensorFlow Serving's API, for laptops and tests: the gRPC and REST APIs over
one model registry, in background threads. Production uses TF Serving itself (serving/)."""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import ThreadingHTTPServer

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfanomaly.serving.client import GRPC_OPTIONS
from tfanomaly.serving.grpc_api import ModelStatusServicer, PredictionServicer
from tfanomaly.serving.registry import ModelRegistry
from tfanomaly.serving.rest_api import rest_handler


class LocalServer:
    """gRPC and REST servers over one model registry, started in background threads.

    Example:
        >>> server = LocalServer("models", grpc_port=8500, rest_port=8501).start()  # doctest: +SKIP
        >>> server.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        model_base,
        host: str = "127.0.0.1",
        grpc_port: int = 8500,
        rest_port: int = 8501,
        workers: int = 8,
    ):
        self.registry = ModelRegistry(model_base)
        self.host = host
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers), options=GRPC_OPTIONS
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.registry), self.grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelStatusServicer(self.registry), self.grpc
        )
        self.grpc_port = self.grpc.add_insecure_port(f"{host}:{grpc_port}")
        self.http = ThreadingHTTPServer((host, rest_port), rest_handler(self.registry))
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
