"""The ``tfanomaly`` command line: parses options and calls pipeline functions, nothing more.

One module per command group; errors the user can cause come out as one line on stderr and exit
status 1. Option defaults come from the stage configs (``tfanomaly.pipelines.config``).
"""

from __future__ import annotations

import click

from tfanomaly.cli.data import ingest, inspect, simulate
from tfanomaly.cli.demo import demo
from tfanomaly.cli.discovery import explore_command, labels_group
from tfanomaly.cli.scale import beam_score_command
from tfanomaly.cli.scoring import (
    embed_command,
    evaluate_command,
    merge_scores,
    report_command,
    rerank_command,
    score_command,
)
from tfanomaly.cli.serving import export_command, serve_command
from tfanomaly.cli.training import calibrate_command, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tfanomaly")
def main():
    """Find anomalous galaxies in imaging surveys with a WGAN-GP (Storey-Fisher et al. 2021).

    Typical flow: simulate (or bring your own cutouts) -> ingest -> train gan -> train encoder ->
    score -> evaluate (simulated surveys) -> train cae -> embed -> export -> serve.
    `tfanomaly demo` runs the core of it on a small simulated survey.
    """


for _command in (
    simulate,
    ingest,
    inspect,
    train,
    calibrate_command,
    score_command,
    merge_scores,
    beam_score_command,
    evaluate_command,
    embed_command,
    report_command,
    rerank_command,
    explore_command,
    labels_group,
    serve_command,
    export_command,
    demo,
):
    main.add_command(_command)

if __name__ == "__main__":
    main()
