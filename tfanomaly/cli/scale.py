"""Commands that take scoring past one machine: ``beam-score`` (Apache Beam, any runner)."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.options import build_config, config_options, out_option
from tfanomaly.cli.scoring import _finish_note, _with_catalog_options
from tfanomaly.pipelines.beam_score import BeamScoreConfig


@click.command(
    "beam-score",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("data", type=click.Path(file_okay=False))
@click.option(
    "--model",
    "export_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="An export (MODEL_BASE/<name>/<version>, or MODEL_BASE/<name> for its newest version).",
)
@out_option("out", "Folder for results.h5, score_stats.json and the catalogs.")
@config_options(BeamScoreConfig, exclude=("catalog",))
@_with_catalog_options
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
@_friendly_errors
@_uses_tensorflow
def beam_score_command(data, export_dir, out, reference, beam_args, **options):
    """Score every cutout of the data set DATA with an export (`tfanomaly export`) on Apache
    Beam, and write the same results, statistics and catalogs as `score`.

    Every option this command does not know goes to Beam (--runner, --direct_num_workers 2
    --direct_running_mode multi_processing, --project, ...); without --runner it runs on the
    DirectRunner. The pipeline reads each TFRecord shard as its own source, scores with
    RunInference over the export's signature, writes raw scores as sharded Parquet, and this
    process then computes the sigma values and writes the catalogs. Needs `pip install
    'tfanomaly[beam]'`.
    """
    from tfanomaly.pipelines.beam_score import beam_score

    config = build_config(BeamScoreConfig, options)
    written = beam_score(
        export_dir,
        data,
        out,
        config,
        pipeline_args=beam_args,
        reference=reference,
        echo=click.echo,
    )
    click.echo(f"scored {written['count']} cutouts ({written['images_per_second']:.0f}/s on Beam)")
    if written["raw_scores"]:
        click.echo(f"raw scores {written['raw_scores']}")
    click.echo(_finish_note(written))
