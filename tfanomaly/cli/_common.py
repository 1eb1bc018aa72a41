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
