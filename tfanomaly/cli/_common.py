"""What the command modules share: errors as one line on stderr, TensorFlow imported quietly and
only by the commands that need it, and small option parsers."""

from __future__ import annotations

import functools
import sys

import click

NO_CHECK_HELP = (
    "Write the network even when the check at the end of training finds it collapsed (a "
    "constant output, or no better than the mean image): for smoke tests of a pipeline with a "
    "few steps, never for a run you score with."
)


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


def _bands(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(b.strip() for b in value.split(",") if b.strip())
