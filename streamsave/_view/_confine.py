"""The one file a viewer serves, and how every request reaches it.

A request names its file in the ``file`` query parameter (h5grove's protocol). h5grove
would join it to a base directory and open whatever that names (``../`` and absolute
paths escape). Here the value is never used as a path: it must be exactly the served
file's name, and the file that is opened is the path the server was started with. Any
other value (another name, ``../x.h5``, an absolute path, a percent-encoded or NUL-laden
variant, a symlink beside the file) is refused before anything is opened.

Inside the file, nodes are reached through the reader's own walk
(:func:`streamsave._reader._member_at`): soft links resolve inside the file only;
external links, virtual datasets and datasets stored in external files are never
followed, so no request reads another file through the served one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import h5py

from .._errors import ReadError
from .._reader import Run, _member_at, _open, open_reader

__all__ = ("Refused", "ServedFile")

#: the most path components a request's ``path`` may have (a guard against absurd input)
_MAX_DEPTH: Final = 256


class Refused(Exception):
    """A request the server answers with an HTTP error: ``status`` and a ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServedFile:
    """The file a viewer was started on.

    :param path: the HDF5 file; its name (``path.name``) is what the page sends as
        ``file``.
    """

    def __init__(self, path: Path) -> None:
        #: the file as given on the command line (opened by this path on every request)
        self.path = path
        #: the only ``file`` value requests may send
        self.name = path.name
        # One request at a time opens the file: each sees it freshly opened, so a live
        # writer's last flush shows (HDF5 shares one open file between handles in a process,
        # and would otherwise keep an old view while requests overlap). h5py serialises its
        # calls anyway.
        self._lock = threading.Lock()

    def check(self, requested: str | None) -> None:
        """Accept ``requested`` only if it is the served file's name.

        :raises Refused: 403 for any other value.
        """
        if requested != self.name:
            raise Refused(403, f"this server shows only {self.name!r}; refused file={requested!r}")

    @contextlib.contextmanager
    def h5(self, requested: str | None) -> Iterator[h5py.File]:
        """The served file, open read-only (SWMR while a writer records it), for one request."""
        self.check(requested)
        with self._lock:
            try:
                file, _live = _open(self.path, None)
            except ReadError as exc:
                raise Refused(503, str(exc)) from None
            with file:
                yield file

    @contextlib.contextmanager
    def run(self, requested: str | None) -> Iterator[Run]:
        """The served file, opened by :func:`streamsave.open_reader`, for one request."""
        self.check(requested)
        with self._lock:
            try:
                run = open_reader(self.path)
            except ReadError as exc:
                raise Refused(503, str(exc)) from None
            with run:
                yield run


def node_at(file: h5py.File, path: str) -> Any:
    """The group, dataset or named datatype at ``path``, reached inside the file only,
    or ``None`` (missing, an external link on the way, data stored in other files)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if len(parts) > _MAX_DEPTH or ".." in parts:
        return None
    if not parts:
        return file["/"]
    return _member_at(file, "/" + "/".join(parts))


def link_at(file: h5py.File, path: str) -> Any:
    """The link object (``h5py.SoftLink``, ``ExternalLink``, ``HardLink``) at ``path``,
    looked up in its parent reached inside the file, or ``None``; the link is not followed."""
    parent, _, name = path.rstrip("/").rpartition("/")
    group = node_at(file, parent or "/")
    if not isinstance(group, h5py.Group) or not name:
        return None
    try:
        return group.get(name, getlink=True)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        return None
