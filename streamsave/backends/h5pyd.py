"""A domain of an HSDS service (the HDF Group's REST service for HDF5) through h5pyd.

HSDS stores HDF5 data as objects (one per chunk) on POSIX storage, S3 or Azure,
served by a service node and any number of data nodes, so a recording can outgrow
one machine's disk. The path is the domain, ``/home/USER/run.h5``; the connection
comes from ``backend_options`` (``endpoint``, ``username``, ``password``, and
``bucket``, ``api_key``) or, for what they leave out, from h5pyd's own conventions:
the environment (``HS_ENDPOINT``, ``HS_USERNAME``, ``HS_PASSWORD``) and ``~/.hscfg``.
Credentials never appear in an error message, a repr or a log line of streamsave.

What HSDS and h5pyd (1.0) can and cannot do, and how this backend deals with it:

- No direct chunk write: the engine hands whole frames as rows, and HSDS's data
  nodes compress each chunk as they store it, with blosc (``lz4``, ``lz4hc``,
  ``blosclz``) or deflate (``zlib``, stored as HSDS's ``gzip``), at the level asked.
  zstd and hdf5plugin's filters are refused by the service; HSDS stores bit shuffle
  as byte shuffle, so only byte shuffle or none is offered.
- No SWMR: a reader in another process sees what the writer's flushes sent.
- h5pyd keeps every write in the client until a flush, then sends one request per
  write. Rows are therefore joined here into requests of about ``batch_bytes``
  (consecutive rows of one dataset; a row written again replaces the earlier
  version before anything is sent): one frame per request ran at about 49 MB/s,
  20 frames (10 MiB) per request at about 150 MB/s. A request is never larger than
  the service accepts (``max_request_size``, 100 MiB by default).
- Errors show only at flush (h5pyd sends nothing before): every failure of h5pyd,
  requests or the service becomes a :class:`~streamsave.StorageError`, which the
  engine hands to producers.

Durable, here, means (see :meth:`H5pydBackend.flush`): after a flush, the service
has acknowledged every write (its data nodes hold them; they write them to storage
within about two seconds). With ``sync`` (the saver's ``fsync="flush"``) the flush
also waits until the data nodes have written them to the service's storage, so a
service that is killed loses none of them. In every flush the rows of datasets
that grow (frames, timestamps) are sent, and with ``sync`` stored, before rows
rewritten in place in fixed-size datasets (streamsave's journal), so after a crash
the journal never counts frames that are not stored.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import logging
import os
import socket
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError, ReadError, StorageError
from ._base import AttrValue, Backend, DatasetSpec

try:
    import h5pyd
    import requests
except ImportError as exc:  # the registry turns this into a ConfigError naming the extra
    raise ImportError(f"the h5pyd backend needs h5pyd: pip install 'streamsave[hsds]' ({exc})",
                      name=exc.name) from exc

__all__ = ("DEFAULT_BATCH_BYTES", "HSDS_MAX_REQUEST", "H5pydBackend")

log = logging.getLogger(__name__)

#: the largest request an HSDS service accepts unless configured otherwise (``max_request_size``)
HSDS_MAX_REQUEST: Final = 100 * 2**20
#: rows of one dataset joined into one request, bytes (measured: 10 MiB requests ran 3x faster than 0.5 MiB)
DEFAULT_BATCH_BYTES: Final = 16 * 2**20
#: streamsave codec -> HSDS compressor (HSDS's ``gzip`` is deflate at a level, as zlib)
_COMPRESSOR: Final = {"lz4": "lz4", "lz4hc": "lz4hc", "blosclz": "blosclz", "zlib": "gzip"}
_ERRORS: Final = (OSError, requests.RequestException, KeyError, ValueError, TypeError, RuntimeError)


class H5pydBackend(Backend):
    """One HSDS domain, written through h5pyd.

    :param path: the domain, e.g. ``"/home/USER/run.h5"`` (its folder must exist).
    :param mode: ``"w-"`` create, failing if the domain exists; ``"w"`` create or
        replace; ``"r+"`` open an existing domain for update.
    :param swmr: must be false (HSDS has no SWMR mode).
    :param endpoint: the service's URL (``http://host:5101``, ``http+unix://...``);
        default ``HS_ENDPOINT`` or ``~/.hscfg``.
    :param username: default ``HS_USERNAME`` or ``~/.hscfg``.
    :param password: default ``HS_PASSWORD`` or ``~/.hscfg``.
    :param bucket: the storage bucket, default the service's.
    :param api_key: for services that authenticate with an API key.
    :param batch_bytes: rows joined into one request, at most (capped at the
        service's largest request).
    :raises ~streamsave.StorageError: the service cannot be reached, refuses the
        credentials, or the domain cannot be created or opened.
    """

    name = "h5pyd"
    supports_direct_chunk_write = False
    supports_swmr = False
    codecs = frozenset(_COMPRESSOR)
    shuffles = frozenset({"none", "byte"})
    max_request_bytes = HSDS_MAX_REQUEST
    local = False
    extra = "hsds"

    def __init__(self, path: os.PathLike[str] | str, mode: Literal["w-", "w", "r+"] = "w-", *,
                 swmr: bool = False, endpoint: str | None = None, username: str | None = None,
                 password: str | None = None, bucket: str | None = None, api_key: str | None = None,
                 batch_bytes: int = DEFAULT_BATCH_BYTES) -> None:
        if swmr:
            raise ConfigError(f"backend {self.name!r} has no SWMR mode; open the saver with swmr=False")
        if isinstance(batch_bytes, bool) or not isinstance(batch_bytes, int) or batch_bytes < 1:
            raise ConfigError(f"batch_bytes must be a positive number of bytes, got {batch_bytes!r}")
        self.path = os.fspath(path)
        self._secrets = tuple(s for s in (password, api_key) if s)
        self._batch = min(batch_bytes, self.max_request_bytes)
        self._datasets: dict[str, Any] = {}
        self._runs: dict[str, _Run] = {}
        self._grown: set[str] = set()  # datasets whose extent this backend changed
        self._file: Any = None
        connection = _connection(endpoint=endpoint, username=username, password=password, bucket=bucket,
                                 api_key=api_key)
        with self._storage_errors(f"open the domain {self.path!r} (mode {mode!r})"):
            self._file = _open_file(self.path, mode, connection)
            _replace_attributes(self._file)

    def __repr__(self) -> str:
        return f"<H5pydBackend {self.path!r}{' closed' if self._file is None else ''}>"

    # ------------------------------------------------------------------ reading
    @classmethod
    def open_readonly(cls, path: str, **backend_options: Any) -> Any:
        """Open a domain read-only (an ``h5pyd.File``) for :func:`~streamsave.open_reader`.

        :raises ~streamsave.ReadError: the domain is missing, or the service cannot be
            reached or refuses the credentials (the message never shows them).
        """
        unknown = sorted(set(backend_options) - {"endpoint", "username", "password", "bucket", "api_key"})
        if unknown:
            raise ConfigError(f"backend {cls.name!r} does not take the backend_options {unknown} for reading; "
                              "it takes endpoint, username, password, bucket and api_key")
        secrets = tuple(str(backend_options[k]) for k in ("password", "api_key") if backend_options.get(k))
        try:
            return _open_file(path, "r", _connection(**backend_options))
        except FileNotFoundError:
            raise ReadError(errno.ENOENT, f"the HSDS domain {path!r} does not exist") from None
        except _ERRORS as exc:
            raise ReadError(f"the HSDS domain {path!r} cannot be read: {_reason(exc, secrets)}") from None

    # ------------------------------------------------------------------ errors
    @contextlib.contextmanager
    def _storage_errors(self, action: str) -> Iterator[None]:
        """Turn what h5pyd, requests or the service raise into a StorageError that says
        what failed and why, with the credentials taken out of the text."""
        try:
            yield
        except StorageError:
            raise
        except ConfigError:
            raise
        except FileExistsError:
            raise StorageError(errno.EEXIST, f"cannot {action}: the domain exists; pass mode='w' to replace it, "
                               "or choose another name") from None
        except _ERRORS as exc:
            _collect_quietly()
            code = getattr(exc, "errno", None)
            err = StorageError(f"HSDS: could not {action}: {_reason(exc, self._secrets)}")
            err.errno = code if isinstance(code, int) else errno.EIO
            raise err from None

    @property
    def file(self) -> Any:
        """The open ``h5pyd.File``."""
        if self._file is None:
            raise StorageError(errno.EBADF, f"the HSDS domain {self.path!r} is closed")
        return self._file

    # ------------------------------------------------------------------ the tree
    def create_group(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        with self._storage_errors(f"create the group {path!r}"):
            group = self.file.create_group(path)
            _set_attrs(group, attrs)

    def create_dataset(self, path: str, spec: DatasetSpec) -> None:
        kwargs: dict[str, Any] = {}
        c = spec.compression
        if c is not None and spec.chunks is not None:
            if c.codec not in _COMPRESSOR or c.shuffle not in self.shuffles:
                raise ConfigError(f"backend {self.name!r} cannot store compression={c.name!r}; codecs "
                                  f"{sorted(self.codecs)} with shuffle {sorted(self.shuffles)}")
            kwargs.update(compression=_COMPRESSOR[c.codec], compression_opts=c.level, shuffle=c.shuffle == "byte")
        dtype: Any = h5pyd.vlen_dtype(np.uint8) if spec.dtype == "vlen-uint8" else spec.dtype
        with self._storage_errors(f"create the dataset {path!r}"):
            dset = self.file.create_dataset(path, shape=spec.shape, maxshape=spec.maxshape, dtype=dtype,
                                            chunks=spec.chunks, data=spec.data, **kwargs)
            _set_attrs(dset, spec.attrs)
        self._datasets[path] = dset

    def set_attrs(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        with self._storage_errors(f"set attributes of {path!r}"):
            _set_attrs(self.file[path], attrs)

    def delete(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for key in [k for k in self._datasets if k == path or k.startswith(prefix)]:
            self._datasets.pop(key)
            self._runs.pop(key, None)
            self._grown.discard(key)
        parent, _, name = path.rstrip("/").rpartition("/")
        with self._storage_errors(f"delete {path!r}"):
            del self.file[parent or "/"][name]
            # sent at once: h5pyd would send a node made again under the same name as a new
            # link, which HSDS refuses while the old one is there (the layout does that)
            self.file.flush()

    def _dataset(self, path: str) -> Any:
        dset = self._datasets.get(path)
        if dset is None:
            with self._storage_errors(f"open the dataset {path!r}"):
                dset = self._datasets[path] = self.file[path]
        return dset

    # ------------------------------------------------------------------ writing
    def resize(self, path: str, length: int) -> None:
        dset = self._dataset(path)
        run = self._runs.get(path)
        if run is not None and run.end > length:  # rows beyond the new end are gone
            run.truncate(length)
        with self._storage_errors(f"resize {path!r} to {length} rows"):
            dset.resize((length, *dset.shape[1:]))
        self._grown.add(path)

    def write_chunk(self, path: str, offset: Sequence[int], data: bytes | memoryview, filter_mask: int = 0) -> None:
        raise NotImplementedError(f"backend {self.name!r} has no direct chunk write: the engine writes rows")

    def write_rows(self, path: str, start: int, values: npt.NDArray[Any]) -> None:
        """Queue a copy of rows ``start:start+len(values)``; they are sent, joined with
        the rows next to them, when about ``batch_bytes`` have gathered or at the next
        flush."""
        if not len(values):
            return
        run = self._runs.get(path)
        if run is not None and not run.joins(start, values):
            self._send(path, run)
            run = None
        if run is None:
            run = self._runs[path] = _Run(start)
        run.add(start, values)
        if run.nbytes >= self._batch:  # send the full requests, keep the rest for the next
            rows = run.end - run.start
            per_request = max(1, self._batch // max(1, run.nbytes // rows))
            cut = run.start + rows // per_request * per_request
            tail = run.split(cut)
            self._send(path, run)
            if tail is not None:
                self._runs[path] = tail

    def _send(self, path: str, run: _Run) -> None:
        """Hand a run of rows to h5pyd (which keeps it until the next flush, then sends
        one request per piece), in pieces of at most ``batch_bytes`` (or one row)."""
        self._runs.pop(path, None)
        if run.end <= run.start:
            return
        dset = self._dataset(path)
        values = run.values()
        row_bytes = max(1, values[0].nbytes)
        step = max(1, min(len(values), self._batch // row_bytes))
        with self._storage_errors(f"write rows {run.start}:{run.end} of {path!r}"):
            for i in range(0, len(values), step):
                dset[run.start + i:run.start + min(len(values), i + step)] = values[i:i + step]

    def start_swmr(self) -> None:
        raise ConfigError(f"backend {self.name!r} has no SWMR mode")

    def flush(self, *, sync: bool = False) -> None:
        """Send every write and wait until the service acknowledged them all; with
        ``sync``, also until its data nodes wrote them to its storage.

        Rows of datasets that grew go first (and, with ``sync``, are stored) before
        rows rewritten in place in fixed-size datasets (a journal), which are sent
        last: such a journal never counts rows the service does not hold.

        :raises ~streamsave.StorageError: a request failed (the service is gone,
            refused a write, or ran out of space); the message says which.
        """
        fixed = [path for path in self._runs if path not in self._grown]
        for path in [p for p in self._runs if p in self._grown]:
            self._send(path, self._runs[path])
        with self._storage_errors("flush (send the writes since the last flush)"):
            self.file.flush()
        if sync:
            self._store()
        if fixed:
            for path in fixed:
                self._send(path, self._runs[path])
            with self._storage_errors("flush (send the writes since the last flush)"):
                self.file.flush()

    def _store(self) -> None:
        """Ask the service to write everything it holds of this domain to its storage
        (HSDS's domain flush) and wait for it."""
        with self._storage_errors("flush the domain to the service's storage"):
            response = self.file.id.db.plugin.http_conn.PUT("/", params={"flush": 1})
            if response.status_code not in (200, 204):
                raise OSError(errno.EIO, f"the service answered {response.status_code} {response.reason}")

    # ------------------------------------------------------------------ closing
    def abandon(self) -> None:
        """Drop every write not yet sent and release the connection: the domain stays
        as the last successful flush left it (closing normally would send the rest)."""
        file, self._file = self._file, None
        self._runs.clear()
        self._datasets.clear()
        if file is None:
            return
        with contextlib.suppress(Exception):
            plugin = file.id.db.plugin
            plugin.http_conn.close()

    def close(self, *, fsync: bool = False) -> None:
        """Send what is left, wait until the service acknowledged it (with ``fsync``,
        until it is on the service's storage), and close. Safe to call again; after a
        failure it drops what could not be sent."""
        if self._file is None:
            return
        try:
            self.flush(sync=fsync)
        except BaseException:
            self.abandon()
            raise
        file, self._file = self._file, None
        self._datasets.clear()
        with self._storage_errors("close the domain"):
            file.close()


class _Run:
    """Consecutive rows of one dataset waiting to be sent (a row written again
    replaces its earlier version)."""

    __slots__ = ("end", "nbytes", "parts", "start")

    def __init__(self, start: int) -> None:
        self.start = self.end = start
        self.parts: list[tuple[int, npt.NDArray[Any]]] = []
        self.nbytes = 0

    def joins(self, start: int, values: npt.NDArray[Any]) -> bool:
        """The rows continue this run, or rewrite some of its last rows."""
        return self.start <= start <= self.end and (not self.parts or values.shape[1:] == self.parts[0][1].shape[1:])

    def truncate(self, end: int) -> None:
        kept: list[tuple[int, npt.NDArray[Any]]] = []
        for first, part in self.parts:
            if first < end:
                kept.append((first, part[:end - first]))
        self.parts = kept
        self.end = max(self.start, min(self.end, end))
        self.nbytes = sum(part.nbytes for _, part in kept)

    def add(self, start: int, values: npt.NDArray[Any]) -> None:
        if start < self.end:
            self.truncate(start)
        self.parts.append((start, np.array(values, copy=True)))  # the caller may reuse its buffer
        self.end = start + len(values)
        self.nbytes += values.nbytes

    def split(self, at: int) -> _Run | None:
        """Keep rows before ``at``; return the rows from ``at`` on as a run (or None)."""
        if at >= self.end:
            return None
        values = self.values()
        tail = _Run(at)
        tail.parts, tail.end = [(at, values[at - self.start:])], self.end
        tail.nbytes = tail.parts[0][1].nbytes
        self.parts, self.end = [(self.start, values[:at - self.start])], at
        self.nbytes = self.parts[0][1].nbytes
        return tail

    def values(self) -> npt.NDArray[Any]:
        if len(self.parts) == 1 and len(self.parts[0][1]) == self.end - self.start:
            return self.parts[0][1]
        return np.concatenate([part for _, part in self.parts])


def _connection(*, endpoint: str | None = None, username: str | None = None, password: str | None = None,
                bucket: str | None = None, api_key: str | None = None) -> dict[str, str]:
    """h5pyd's connection keywords: those given, the rest from ``HS_*`` / ``~/.hscfg``."""
    given = {"endpoint": endpoint, "username": username, "password": password, "bucket": bucket,
             "api_key": api_key}
    for key, value in given.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"backend_options[{key!r}] must be a string, got a {type(value).__name__}")
    return {key: value for key, value in given.items() if value}


def _open_file(path: str, mode: str, connection: Mapping[str, str]) -> Any:
    """``h5pyd.File(path, mode, ...)``, without the connections h5pyd leaves open.

    h5pyd's ``"w-"`` asks ``h5pyd.is_hdf5`` first, which never closes its connection,
    and a refused open does not close its own either; the existence check is made
    here with a file that is closed, and after a failure the abandoned connections
    are collected at once (quietly: their sockets are h5pyd's to close).
    """
    try:
        if mode in ("w-", "x"):
            try:
                h5pyd.File(path, "r", **connection).close()
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(errno.EEXIST, "the domain exists", path)
            mode = "w"
        return h5pyd.File(path, mode, **connection)
    except BaseException:
        _collect_quietly()
        raise


def _collect_quietly() -> None:
    """Collect the sockets a failed request left behind, without their ResourceWarning:
    requests-unixsocket does not close a socket whose connect failed (a service that
    is gone), and h5pyd does not close a connection whose open was refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _keep_the_root_loggers_level() -> None:
    """Make ``h5pyd.File()`` leave the root logger's level alone.

    h5pyd (1.0) sets the root logger to ERROR whenever a ``File`` object is made: on
    every open, and whenever a node's ``.file`` is looked up; that would silence the
    program's own logging. The constructor is wrapped once, process-wide, to put the
    level back.
    """
    init = h5pyd.File.__init__
    if getattr(init, "_keeps_root_level", False):
        return

    @functools.wraps(init)
    def keeping_level(self: Any, *args: Any, **kwargs: Any) -> None:
        root = logging.getLogger()
        level = root.level
        try:
            init(self, *args, **kwargs)
        finally:
            root.setLevel(level)

    keeping_level._keeps_root_level = True  # type: ignore[attr-defined]
    h5pyd.File.__init__ = keeping_level


def _close_refused_unix_sockets() -> None:
    """Make requests-unixsocket close the socket of a connect that failed (a service
    that is gone); it leaves it open, to be found unclosed by the garbage collector.
    Its ``connect`` is replaced once, process-wide, by the same steps with the close."""
    try:
        from requests_unixsocket.adapters import UnixHTTPConnection
    except ImportError:
        return
    if getattr(UnixHTTPConnection.connect, "_closes_on_failure", False):
        return

    def connect(self: Any) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(urllib.parse.unquote(urllib.parse.urlparse(self.unix_socket_url).netloc))
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    connect._closes_on_failure = True  # type: ignore[attr-defined]
    UnixHTTPConnection.connect = connect


_keep_the_root_loggers_level()
_close_refused_unix_sockets()


def _replace_attributes(file: Any) -> None:
    """Make the file's connection send attributes with ``replace=1``.

    h5pyd (1.0) sends a changed attribute as a new one, which HSDS refuses (409
    Conflict) once the first version was flushed; streamsave rewrites attributes
    (``shape``, ``default``, ...) at every flush and at close. HSDS replaces them when
    asked to.
    """
    conn = file.id.db.plugin.http_conn
    put = conn.PUT

    def put_replacing(req: str, body: Any = None, format: str = "json", params: Any = None,
                      headers: Any = None) -> Any:
        if req.endswith("/attributes"):
            params = {**(params or {}), "replace": 1}
        return put(req, body=body, format=format, params=params, headers=headers)

    conn.PUT = put_replacing


def _set_attrs(node: Any, attrs: Mapping[str, AttrValue]) -> None:
    for key, value in attrs.items():
        node.attrs[key] = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _reason(exc: BaseException, secrets: Sequence[str]) -> str:
    """The first line of an error, with every credential replaced by ``***``."""
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    if isinstance(exc, OSError) and exc.errno in (401, 403):
        text = f"the service refused the credentials ({exc.errno})"
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
