"""The ``streamsave`` command, one module per subcommand (the public entry point is
:func:`streamsave.cli.main`)."""

from __future__ import annotations

from ._main import main

__all__ = ("main",)
