"""``python -m tfanomaly.cli``: the same command line as ``tfanomaly``."""

from tfanomaly.cli import main

main()
