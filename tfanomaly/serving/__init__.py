"""TensorFlow Serving: the SavedModel of a run (raw flux in, scores out), a local gRPC and REST
server, and clients (TensorFlow is imported only when a name that needs it is used)."""

from tfanomaly._lazy import lazy_exports

_HOMES = {
    "AnomalyScorer": "tfanomaly.serving.saved_model",
    "save_scorer": "tfanomaly.serving.saved_model",
    "save_version": "tfanomaly.serving.saved_model",
    "MODEL_NAME": "tfanomaly.serving.saved_model",
    "SIGNATURES": "tfanomaly.serving.signatures",
    "PLANES_SIGNATURE": "tfanomaly.serving.signatures",
    "GrpcClient": "tfanomaly.serving.client",
    "RestClient": "tfanomaly.serving.client",
    "ServerError": "tfanomaly.serving.client",
    "LocalServer": "tfanomaly.serving.local",
    "ModelRegistry": "tfanomaly.serving.registry",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
del lazy_exports
