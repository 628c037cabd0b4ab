"""The web application and the server behind ``streamsave view``.

Routes (``file`` must be the served file's name, see :mod:`._confine`):

* ``/api/meta``, ``/api/attr``, ``/api/data``, ``/api/stats``, ``/api/paths``: h5grove's
  protocol, which H5Web's ``H5GroveProvider`` speaks (data as ``json`` or ``bin`` only);
* ``/api/export``: frames of a channel as .npy, .tif, .csv, .txt or .h5, written by the
  reader's export;
* ``/api/summary``: channels, frame counts, whether a writer is recording, detector settings;
* ``/``: the built front end (:file:`static/`).

Every request opens the file afresh (an SWMR reader while a writer records it), so the
page sees each new flush. Nothing is cached between requests; nothing a file contains is
evaluated or unpickled.
"""

from __future__ import annotations

import shutil
import socket
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final

import h5py
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from h5grove.content import DatasetContent, ResolvedEntityContent
from h5grove.encoders import encode
from h5grove.utils import QueryArgumentError
from starlette.background import BackgroundTask
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .._reader import _Walk
from ._confine import Refused, ServedFile, node_at
from ._content import MAX_READ_BYTES, content_at, dataset_at, selected_bytes
from ._export import export_frames, frames_from, summary

__all__ = ("LOOPBACK", "bind", "hosts_for", "make_app", "serve", "static_dir", "url_of")

#: where the server listens unless told otherwise
LOOPBACK: Final = "127.0.0.1"
#: what ``/api/data`` encodes (H5Web asks for these two; npy would pickle object arrays)
_DATA_FORMATS: Final = ("json", "bin")


def static_dir() -> Path:
    """The built front end inside the package."""
    return Path(str(resources.files("streamsave._view") / "static"))


def make_app(served: ServedFile, *, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The application serving ``served``.

    :param allowed_hosts: host names the ``Host`` header may carry (a page elsewhere that
        rebinds its own name to this machine is refused); ``None``: any.
    """
    app = FastAPI(title="streamsave view", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def no_caching(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path.startswith("/api/"):  # a live file changes under the same URL
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    @app.exception_handler(QueryArgumentError)
    async def bad_query(request: Request, exc: QueryArgumentError) -> Response:
        return JSONResponse({"message": str(exc)}, status_code=422)

    @app.get("/api/")
    def root() -> Response:
        return Response("ok")

    @app.get("/api/meta")
    def meta(file: str | None = None, path: str = "/") -> Response:
        with served.h5(file) as h5:
            return _encoded(content_at(h5, path).metadata())

    @app.get("/api/attr")
    def attr(file: str | None = None, path: str = "/",
             attr_keys: Annotated[list[str] | None, Query()] = None) -> Response:
        with served.h5(file) as h5:
            content = content_at(h5, path)
            if not isinstance(content, ResolvedEntityContent):
                raise Refused(404, f"{path} is a link that is not followed: it has no attributes here")
            try:
                return _encoded(content.attributes(attr_keys))
            except KeyError as exc:
                raise Refused(404, f"no attribute {exc} at {path}") from None

    @app.get("/api/data")
    def data(file: str | None = None, path: str = "/", dtype: str = "origin", format: str = "json",
             flatten: bool = False, selection: str | None = None) -> Response:
        if format not in _DATA_FORMATS:
            raise Refused(422, f"format={format!r}: /api/data sends {' or '.join(_DATA_FORMATS)}; "
                               "exports go through /api/export")
        with served.h5(file) as h5:
            content = _readable(dataset_at(h5, path), selection)
            return _encoded(content.data(selection, flatten, dtype), format)

    @app.get("/api/stats")
    def stats(file: str | None = None, path: str = "/", selection: str | None = None) -> Response:
        with served.h5(file) as h5:
            return _encoded(_readable(dataset_at(h5, path), selection).data_stats(selection))

    @app.get("/api/paths")
    def paths(file: str | None = None, path: str = "/") -> Response:
        with served.h5(file) as h5:
            return _encoded(_paths(h5, path))

    @app.get("/api/summary")
    def overview(file: str | None = None) -> Response:
        with served.run(file) as run:
            return _encoded(summary(run))

    @app.get("/api/export")
    def export(file: str | None = None, path: str = "/", format: str = "npy", selection: str | None = None,
               frames: str | None = None) -> Response:
        with served.run(file) as run:
            out, name = export_frames(run, path, format, frames_from(selection, frames))
        return FileResponse(out, filename=name, media_type="application/octet-stream",
                            background=BackgroundTask(shutil.rmtree, out.parent, ignore_errors=True))

    @app.get("/api/served")
    def served_name() -> Response:
        return _encoded({"file": served.name})

    app.mount("/", StaticFiles(directory=static_dir(), html=True, check_dir=False), name="static")
    return app


def _encoded(content: Any, fmt: str = "json") -> Response:
    encoded = encode(content, fmt)
    return Response(content=encoded.content, headers=encoded.headers)


def _readable(content: DatasetContent, selection: str | None) -> DatasetContent:
    size = selected_bytes(content._h5py_entity, selection)
    if size > MAX_READ_BYTES:
        raise Refused(413, f"{content.path}[{selection or ':'}] is {size:,} bytes; one request reads at most "
                           f"{MAX_READ_BYTES:,} (select fewer frames)")
    return content


def _paths(h5: h5py.File, base: str) -> list[str]:
    """Every path under ``base`` reached inside the file (h5grove's ``/paths``, for the search box)."""
    top = node_at(h5, base)
    if not isinstance(top, h5py.Group):
        raise Refused(422, f"{base} is not a group in the file")
    found = [base]
    walk, queue = _Walk(), [(base.rstrip("/"), top)]
    walk.seen.add(top)
    while queue and walk.budget > 0:
        prefix, group = queue.pop(0)
        for name in walk.names(group):
            path = f"{prefix}/{name}"
            found.append(path)
            node = walk.member(group, name)
            if isinstance(node, h5py.Group) and node not in walk.seen:
                walk.seen.add(node)
                queue.append((path, node))
    return found


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one).

    :raises OSError: the address is taken or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The page's address for a socket from :func:`bind`."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def hosts_for(host: str) -> list[str] | None:
    """The ``Host`` names a server on ``host`` answers: loopback names on loopback, any
    otherwise (the user asked for the network)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return ["127.0.0.1", "localhost", "[::1]", "::1"]
    return None


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve on ``sock`` until interrupted (uvicorn re-raises Ctrl-C as :class:`KeyboardInterrupt`)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
