"""TF Serving's gRPC services over a model registry: tensorflow.serving.PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus), with TF Serving's status codes."""

from __future__ import annotations

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfanomaly.serving.registry import ModelRegistry, ServingError, run_signature, status_servables


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
            outputs = run_signature(
                servable, request.model_spec.signature_name, inputs, list(request.output_filter)
            )
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
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Metadata field signature_def is the only one supported",
                )
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
            servables = status_servables(
                self.registry, request.model_spec.name, request.model_spec.version.value or None
            )
        except ServingError as exc:
            context.abort(exc.code, exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for servable in servables:
            status = response.model_version_status.add()
            status.version = servable.version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response
