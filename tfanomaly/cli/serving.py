"""Commands that put a trained run behind TensorFlow Serving's API: ``export`` and ``serve``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.pipelines.config import ExportConfig, ServeConfig


@click.command("serve")
@click.argument("model_base", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--host",
    default=ServeConfig.host,
    show_default=True,
    help="Address to bind (0.0.0.0 exposes the server to the network).",
)
@click.option(
    "--grpc-port",
    default=ServeConfig.grpc_port,
    show_default=True,
    help="gRPC port (0: any free).",
)
@click.option(
    "--rest-port",
    default=ServeConfig.rest_port,
    show_default=True,
    help="REST port (0: any free).",
)
@_friendly_errors
@_uses_tensorflow
def serve_command(model_base, host, grpc_port, rest_port):
    """Serve the newest version of each model under MODEL_BASE with TensorFlow Serving's API:
    gRPC PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus), and REST
    POST /v1/models/<name>:predict (row "instances" or columnar "inputs"), GET /v1/models/<name>
    and GET /v1/models/<name>/metadata.

    For laptops and tests; production runs the official tensorflow/serving image (see serving/).
    """
    from tfanomaly.serving.local import LocalServer

    server = LocalServer(model_base, host=host, grpc_port=grpc_port, rest_port=rest_port).start()
    models = ", ".join(f"{n} v{max(v)}" for n, v in server.registry.servables.items())
    click.echo(
        f"serving {models}: gRPC {host}:{server.grpc_port}, REST "
        f"http://{host}:{server.rest_port} (Ctrl-C stops)"
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--out",
    "model_base",
    required=True,
    type=click.Path(file_okay=False),
    help="Model base folder; the model goes to OUT/<name>/<next version>/.",
)
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of a scored reference catalog (its score_stats.json sets the sigma "
    "values; default RUN_DIR/scores).",
)
@click.option(
    "--name", default=ExportConfig.name, show_default=True, help="Model name for TF Serving."
)
@click.option(
    "--steps",
    type=int,
    default=ExportConfig.steps,
    help="Inversion steps of serving_default (default: those of the reference catalog).",
)
@click.option(
    "--cae",
    "cae_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A `train cae` folder: adds the embed signature (CAE latents).",
)
@_friendly_errors
@_uses_tensorflow
def export_command(run_dir, model_base, scores, name, steps, cae_dir):
    """Export the run RUN_DIR as a SavedModel that TensorFlow Serving loads.

    Signatures (all take raw flux cutouts, float32 (N, H, W, C); the Lupton stretch runs in the
    graph): serving_default (the default score and its terms, the paper's anomaly/gen/disc
    scores, their sigma values, reconstruction), score_fast (the same, encoder only), reconstruct
    (stretched image, reconstruction, residual, z), generate (z -> images) and, with --cae, embed
    (CAE latents). A run calibrated with variance and mask planes also gets score_planes (flux,
    variance and int32 mask bits in: the scores with the planes, as the catalog has them). Each
    export is a new version; the run's manifest is stored as the asset assets/tfanomaly.json.
    """
    from tfanomaly.pipelines.export import export

    config = ExportConfig(name=name, steps=steps)
    written = export(run_dir, model_base, config, scores_dir=scores, cae_dir=cae_dir)
    click.echo(f"exported version {written['version']} -> {written['path']}")
