"""``python -m streamsave``: the same as the ``streamsave`` command (see :mod:`streamsave.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
