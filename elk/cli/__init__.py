"""The ``elk`` command line: one module per command family, all on top of the driver and studies."""
from elk.cli.main import main

__all__ = ["main"]
