"""``streamsave view FILE``: show a file in the browser (see :mod:`streamsave._view`)."""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

from .._reader import open_reader
from ._common import EXIT_INTERRUPTED, CommandError

__all__ = ("add_parser", "run")

_EXTRA_HINT = "streamsave view needs the 'view' extra: pip install 'streamsave[view]'"


def add_parser(commands: Any) -> None:
    """Add ``view`` to the subcommands."""
    p = commands.add_parser(
        "view", help="show a file in the browser (tree, attributes, settings, plots; live while it is written)",
        description="Serve FILE to a web browser: its tree, attributes, detector settings, line and image "
                    "views of every channel, new frames while a writer records it, export of frames. "
                    "Prints the page's address as its first line and serves until Ctrl-C. Only FILE is "
                    "served; the server listens on loopback unless --host says otherwise.")
    p.add_argument("file", type=Path, metavar="FILE", help="the HDF5 file (any HDF5 file; live or closed)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                        "network, without any login)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; only print the address")


def run(args: argparse.Namespace) -> int:
    """Serve ``args.file`` until Ctrl-C."""
    try:
        from .._view import _server
        from .._view._confine import ServedFile
    except ImportError as exc:
        raise CommandError(f"{_EXTRA_HINT} (missing: {exc.name})") from None
    path: Path = args.file
    with open_reader(path):  # a file that is not HDF5, missing or unreadable fails here, in one line
        pass
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0 to 65535, got {args.port}")
    if not (_server.static_dir() / "index.html").is_file():
        raise CommandError(f"the viewer's page is missing from {str(_server.static_dir())!r}; rebuild it: "
                           "cd viewer && npm ci && npm run build")
    served = ServedFile(path)
    sock = _server.bind(args.host, args.port)
    url = _server.url_of(sock, args.host)
    app = _server.make_app(served, allowed_hosts=_server.hosts_for(args.host))
    print(url, flush=True)
    print(f"serving {str(path)!r}; press Ctrl-C to stop", file=sys.stderr, flush=True)
    if not args.no_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        _server.serve(app, sock)  # returns, or raises KeyboardInterrupt, after Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("stopped", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
