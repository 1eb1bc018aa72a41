"""Exceptions a user can cause: the CLI prints them as one line on stderr and exits non-zero.

Anything else escaping a command is a bug in tfanomaly and keeps its traceback.
"""


class TfanomalyError(Exception):
    """Base class of every error caused by input, options or files the user gave."""


class InputError(TfanomalyError):
    """Bad input data: wrong shape, band count, dtype, duplicate ids, NaN pixels, ..."""


class UnreadableFileError(InputError):
    """A file that cannot be opened or is truncated."""


class DatasetError(TfanomalyError):
    """A TFRecord data set folder that is missing, incomplete or inconsistent with its manifest."""


class ConfigError(TfanomalyError):
    """An option or configuration value that makes no sense."""
