"""``python -m hessdistill``: the same command line as ``hessdistill``."""

from .cli import main

main()
