"""`tfanomaly serve` and the clients: the TF Serving API over gRPC and REST, the same scores as
local scoring, and the statuses TF Serving gives to bad requests (while the server keeps serving)."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_scores_close
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfanomaly.pipelines.config import ScoreConfig
from tfanomaly.pipelines.score import score
from tfanomaly.results.catalog import read_results
from tfanomaly.serving.client import GrpcClient, RestClient, ServerError
from tfanomaly.serving.local import LocalServer

from .test_saved_model import exported  # noqa: F401  (the module-scoped export fixture)


@pytest.fixture(scope="module")
def server(exported):  # noqa: F811
    running = LocalServer(exported["path"].parent.parent, grpc_port=0, rest_port=0).start()
    yield running
    running.stop()


def rest(server, path, body=None):
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_grpc_and_rest_clients_score_like_local_scoring(exported, server, tmp_path):  # noqa: F811
    folder = exported["folder"]
    config = ScoreConfig(batch_size=16)
    for name, client in (
        ("grpc", GrpcClient(f"127.0.0.1:{server.grpc_port}")),
        ("rest", RestClient(f"http://127.0.0.1:{server.rest_port}")),
    ):
        score(
            None,
            folder / "ds",
            tmp_path / name,
            config,
            client=client,
            progress=False,
            echo=lambda *_: None,
        )
        remote, _ = read_results(tmp_path / name)
        local, _ = read_results(folder / "scores")
        order_r, order_l = np.argsort(remote["object_ids"]), np.argsort(local["object_ids"])
        # The server scores in other batches than local scoring did: equal to rounding.
        keys = ("anomaly_scores", "gen_scores", "disc_scores", "anomaly_scores_sigma")
        assert_scores_close(
            {k: remote[k][order_r] for k in keys},
            {k: local[k][order_l] for k in keys},
            keys,
            err_msg=name,
        )
        assert (tmp_path / name / "catalog.fits").exists()


def test_grpc_metadata_status_and_errors(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tfanomaly"
    metadata = stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "score_fast", "reconstruct", "generate"} <= set(
        signatures.signature_def
    )
    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "tfanomaly"
    status = status_stub.GetModelStatus(status_request, timeout=30)
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE

    def predict(model="tfanomaly", signature="", version=None, **inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return stub.Predict(request, timeout=60)

    images = np.zeros((2, 16, 16, 3), np.float32)
    cases = [
        (dict(model="nope", images=images), grpc.StatusCode.NOT_FOUND, "Latest(nope)"),
        (dict(version=99, images=images), grpc.StatusCode.NOT_FOUND, "Specific(tfanomaly, 99)"),
        (
            dict(signature="nope", images=images),
            grpc.StatusCode.FAILED_PRECONDITION,
            'signature key "nope" not found',
        ),
        (dict(pixels=images), grpc.StatusCode.INVALID_ARGUMENT, "alias not found in signature"),
        (
            dict(images=images.astype(np.float64)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "to be float but double is provided",
        ),
        (
            dict(images=np.zeros((2, 32, 32, 3), np.float32)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "this model scores 16x16 cutouts with 3 band(s)",
        ),
        (
            dict(images=np.zeros((2, 16), np.float32)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "must have rank 4",
        ),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(grpc.RpcError) as caught:
            predict(**kwargs)
        assert caught.value.code() == code and message in caught.value.details(), kwargs.keys()
    out = predict(images=images)  # still serving after the bad requests
    assert tf.make_ndarray(out.outputs["anomaly_score"]).shape == (2,)
    assert out.model_spec.version.value == 1


def test_rest_formats_status_metadata_and_errors(server):
    images = np.random.default_rng(0).normal(0, 0.1, (2, 16, 16, 3)).round(4).tolist()
    code, rows = rest(server, "/v1/models/tfanomaly:predict", {"instances": images})
    assert code == 200 and len(rows["predictions"]) == 2
    assert set(rows["predictions"][0]) >= {"anomaly_score", "anomaly_score_sigma", "reconstruction"}
    code, columns = rest(
        server,
        "/v1/models/tfanomaly/versions/1:predict",
        {"signature_name": "score_fast", "inputs": {"images": images}},
    )
    assert code == 200 and len(columns["outputs"]["disc_score"]) == 2
    code, single = rest(
        server,
        "/v1/models/tfanomaly:predict",
        {"signature_name": "generate", "inputs": [[0.0] * 8]},
    )
    assert code == 200 and np.asarray(single["outputs"]).shape == (1, 16, 16, 3)
    code, status = rest(server, "/v1/models/tfanomaly")
    assert code == 200 and status["model_version_status"][0]["state"] == "AVAILABLE"
    code, metadata = rest(server, "/v1/models/tfanomaly/metadata")
    assert (
        code == 200 and "serving_default" in metadata["metadata"]["signature_def"]["signatureDef"]
    )
    for path, body, expected_code, message in [
        ("/v1/models/tfanomaly:predict", b"{bad json", 400, "JSON Parse error"),
        (
            "/v1/models/tfanomaly:predict",
            {"instances": images, "inputs": images},
            400,
            "exactly one",
        ),
        ("/v1/models/nope:predict", {"instances": images}, 404, "Latest(nope)"),
        ("/v1/models/tfanomaly/versions/7:predict", {"instances": images}, 404, "Specific"),
        (
            "/v1/models/tfanomaly:predict",
            {"signature_name": "x", "instances": images},
            400,
            'signature key "x" not found',
        ),
        ("/v1/models/tfanomaly:predict", {"instances": [[1.0, 2.0]]}, 400, "must have rank 4"),
        (
            "/v1/models/tfanomaly:predict",
            {"instances": [[[["a"] * 3] * 16] * 16]},
            400,
            "must hold numbers",
        ),
        ("/v1/models/tfanomaly:nope", {"instances": images}, 404, "Malformed request"),
    ]:
        code, reply = rest(server, path, body)
        assert code == expected_code and message in reply["error"], (path, reply)
    assert rest(server, "/v1/models/tfanomaly")[0] == 200  # still serving


def test_clients_report_server_errors(server):
    grpc_client = GrpcClient(f"127.0.0.1:{server.grpc_port}", model="nope")
    with pytest.raises(ServerError, match="NOT_FOUND: Servable not found"):
        grpc_client.predict({"images": np.zeros((1, 16, 16, 3), np.float32)})
    rest_client = RestClient(f"127.0.0.1:{server.rest_port}", signature="nope")
    with pytest.raises(ServerError, match='HTTP 400: Serving signature key "nope" not found'):
        rest_client.predict({"images": np.zeros((1, 16, 16, 3), np.float32)})
