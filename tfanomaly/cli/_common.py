"""What the command modules share: errors as one line on stderr, TensorFlow imported quietly and
only by the commands that need it (the options: ``cli.options``)."""

from __future__ import annotations

import functools
import sys

import click


def _friendly_errors(command):
    """Turn project errors into one clear line and an exit code instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfanomaly.errors import TfanomalyError

        try:
            return command(*args, **kwargs)
        except TfanomalyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: nothing finished was lost; rerun the command to resume", err=True
            )
            sys.exit(130)

    return wrapper


def _uses_tensorflow(command):
    """Import TensorFlow quietly before a command that needs it."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from tfanomaly._tf import import_tensorflow_quietly

        import_tensorflow_quietly()
        return command(*args, **kwargs)

    return wrapper


def example_options(command):
    """The options of a ranking's cold start, one home for ``rerank`` and ``explore``: ``--like``
    (ids of example objects), ``--like-cutouts`` (a file of example cutouts not in the catalog)
    and ``--run`` (the run that scores them)."""
    for option in reversed(
        (
            click.option(
                "--like",
                default=None,
                metavar="ID[,ID...]",
                help="Object ids of examples of what you look for (a cold start): ranked as "
                "interesting labels, so that objects like them come first.",
            ),
            click.option(
                "--like-cutouts",
                type=click.Path(exists=True),
                default=None,
                help="A file of example cutouts of what you look for that are not in the "
                "catalog (HDF5, .npy/.npz or a folder of FITS files, as ingest reads them; raw "
                "flux at the run's size and bands): scored by the run and ranked as interesting "
                "examples, like --like.",
            ),
            click.option(
                "--run",
                "run_dir",
                type=click.Path(file_okay=False, exists=True),
                default=None,
                help="The run that scores --like-cutouts [default: the run that scored RESULTS].",
            ),
        )
    ):
        command = option(command)
    return command


def parse_like(like: str | None) -> list[int]:
    """The ids of ``--like ID[,ID...]``."""
    from tfanomaly.results.labels import parse_object_id

    return [parse_object_id(i.strip()) for i in (like or "").split(",") if i.strip()]
