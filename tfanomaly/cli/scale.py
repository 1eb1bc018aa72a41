"""Commands that take scoring past one machine: ``beam-score`` (Apache Beam, any runner)."""

from __future__ import annotations

import click

from tfanomaly.cli._common import _friendly_errors, _uses_tensorflow
from tfanomaly.cli.scoring import _finish_note, _with_catalog_options
from tfanomaly.pipelines.beam_score import SCORING_SIGNATURES, BeamScoreConfig
from tfanomaly.pipelines.config import CatalogConfig


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
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for results.h5, score_stats.json and the catalogs.",
)
@click.option(
    "--signature",
    type=click.Choice(SCORING_SIGNATURES),
    default=BeamScoreConfig.signature,
    show_default=True,
    help="Scoring signature (score_fast: encoder only; score_planes: with the data set's "
    "variance and mask planes, for the export of a run calibrated with them).",
)
@click.option(
    "--min-batch-size",
    default=BeamScoreConfig.min_batch_size,
    show_default=True,
    help="Smallest inference batch Beam's BatchElements forms.",
)
@click.option(
    "--max-batch-size",
    default=BeamScoreConfig.max_batch_size,
    show_default=True,
    help="Largest inference batch.",
)
@click.option(
    "--raw-scores",
    "raw_location",
    default=None,
    help="Where the workers write the raw-score Parquet shards (e.g. gs://bucket/tmp); "
    "default OUT/.beam-parts, removed at the end.",
)
@_with_catalog_options
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
@_friendly_errors
@_uses_tensorflow
def beam_score_command(
    data,
    export_dir,
    out,
    signature,
    min_batch_size,
    max_batch_size,
    raw_location,
    catalog_format,
    select_sigma,
    select_key,
    reference,
    beam_args,
):
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

    config = BeamScoreConfig(
        signature=signature,
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        raw_location=raw_location,
        catalog=CatalogConfig(catalog_format, select_sigma, select_key),
    )
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
