"""A local HSDS for the h5pyd scenario, started by the benchmark process that runs it
(each benchmark runs in a process of its own) and stopped when that process ends.

It is the test suite's service (``tests/_hsds.py``): POSIX storage under the work
directory, Unix sockets only, two data nodes. Without hsds and h5pyd installed the
scenario is skipped, saying so.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from ._common import Skip

__all__ = ("connection", "domain")

_server: Any = None


def connection(workdir: Path) -> dict[str, str]:
    """``backend_options`` for the service, started on first use."""
    global _server
    if _server is None:
        try:
            import h5pyd  # noqa: F401

            from tests._hsds import HsdsServer, HsdsUnavailable
        except ImportError as exc:
            raise Skip(f"HSDS is not available ({exc}); pip install 'streamsave[hsds]'") from exc
        server = HsdsServer(workdir / "hsds")
        try:
            server.start()
        except HsdsUnavailable as exc:
            server.cleanup()
            raise Skip(f"HSDS would not start: {str(exc).splitlines()[0]}") from exc
        atexit.register(server.cleanup)
        _server = server
    options: dict[str, str] = _server.connection()
    return options


def domain(name: str) -> str:
    """The domain a scenario records to, in the service's home folder."""
    if _server is None:
        raise Skip("HSDS was not started")
    return f"{_server.home}{name}.h5"
