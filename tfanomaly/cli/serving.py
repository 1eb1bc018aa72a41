"""Commands that put a trained run behind TensorFlow Serving's API: ``export`` and ``serve``."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.options import build_config, config_options, out_option
from tfanomaly.pipelines.config import ExportConfig, ServeConfig


@click.command("serve")
@click.argument("model_base", type=click.Path(file_okay=False, exists=True))
@config_options(ServeConfig)
@_friendly_errors
@_uses_tensorflow
def serve_command(model_base, **options):
    """Serve the newest version of each model under MODEL_BASE with TensorFlow Serving's API:
    gRPC PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus), and REST
    POST /v1/models/<name>:predict (row "instances" or columnar "inputs"), GET /v1/models/<name>
    and GET /v1/models/<name>/metadata.

    For laptops and tests; production runs the official tensorflow/serving image (see serving/).
    """
    from tfanomaly.serving.local import LocalServer

    config = build_config(ServeConfig, options)
    host = config.host
    server = LocalServer(
        model_base, host=host, grpc_port=config.grpc_port, rest_port=config.rest_port
    ).start()
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
@out_option("model_base", "Model base folder; the model goes to OUT/<name>/<next version>/.")
@click.option(
    "--scores",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of a scored reference catalog (its score_stats.json sets the sigma "
    "values; default RUN_DIR/scores).",
)
@config_options(ExportConfig)
@click.option(
    "--cae",
    "cae_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A `train cae` folder: adds the embed signature (CAE latents).",
)
@_friendly_errors
@_uses_tensorflow
def export_command(run_dir, model_base, scores, cae_dir, **options):
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

    config = build_config(ExportConfig, options)
    written = export(run_dir, model_base, config, scores_dir=scores, cae_dir=cae_dir)
    click.echo(f"exported version {written['version']} -> {written['path']}")
