"""Opening a recorded file for reading: its channels, live or closed.

:func:`open_reader` opens any HDF5 file read-only. A file streamsave or PyMoDAQ wrote
is read as its detectors and channels (``"Detector/channel"``); any other file as
generic channels, one per dataset (keyed by its path, frames along axis 0). A file a
writer is still recording is opened as an SWMR reader automatically, and
``refresh()`` shows what the writer has flushed since.

Nothing in a file is executed: attribute envelopes are parsed as literals, settings
XML by a parser that refuses entities. Nothing outside the file is read: external
links, virtual datasets and datasets stored in external files are not followed, and
soft links are resolved only inside the file. Hostile shapes meet guards: each group
is walked once, the walk has a budget, and reads refuse what would allocate or touch
too much (see :mod:`streamsave._channel_reader`).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import itertools
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter and the other codecs)
import numpy as np

from ._attrs import MAX_ATTR_TEXT, attr, envelope, settings_from_json, settings_from_xml, text
from ._channel_reader import ChannelReader, axis_from_node
from ._errors import ReadError
from ._hdf5 import set_property
from ._layout import JOURNAL_FRAMES, JOURNAL_GROUP, JOURNAL_WRITING
from ._log import LOG_DURABLE, LOG_ENDS, LOG_LEVELS, LOG_TEXT, LOG_TIMES, LOGGER, LogMessage
from ._log_reader import read_log
from ._nodes import KINDS, accept, external_data
from ._scan_reader import ScanReader, discover_scans
from ._spec import Axis
from .backends import Backend
from .backends._registry import backend_class, capabilities

__all__ = ("Run", "open_reader")

_MAX_NODES: Final = 100_000  # a file with more nodes than this is not walked further
_DIM_GROUPS: Final = ("Data0D", "Data1D", "Data2D", "DataND")


def open_reader(path: str | os.PathLike[str], *, swmr: bool | None = None,
                backend: str | Callable[..., Backend] = "h5py",
                backend_options: Mapping[str, Any] | None = None) -> Run:
    """Open a recorded HDF5 file for reading (``with streamsave.open_reader(p) as run:``).

    :param path: the file (for a service such as HSDS, its domain).
    :param swmr: ``None`` (default): a plain reader, or an SWMR reader if a writer
        has the file open in SWMR mode; ``True``/``False`` to insist on one.
    :param backend: where the file is: ``"h5py"`` (default) and ``"tables"`` are local
        HDF5 files, both read with h5py; ``"h5pyd"`` a domain of an HSDS service; or a
        backend class.
    :param backend_options: keywords for a service's backend (its endpoint and
        credentials), never shown in errors; local files need none.
    :raises ~streamsave.ReadError: the file is missing, not HDF5, damaged, or being
        written without SWMR (then only the writer can read it until it closes).
    :raises ~streamsave.ConfigError: an unknown backend, or one whose library is missing.
    """
    factory = backend_class(backend)
    if not capabilities(factory).local:
        opener = getattr(factory, "open_readonly")  # noqa: B009  (factories are Backend classes here)
        file = opener(str(path), **dict(backend_options or {}))
        try:
            return Run(Path(path), file, live=False)
        except BaseException:
            file.close()
            raise
    file_path = Path(path)
    if not file_path.exists():
        raise ReadError(errno.ENOENT, f"{str(file_path)!r} does not exist")
    if file_path.is_dir():
        raise ReadError(errno.EISDIR, f"{str(file_path)!r} is a directory, not an HDF5 file")
    if not file_path.is_file():  # a FIFO would block the open, a device never end
        raise ReadError(f"{str(file_path)!r} is not a regular file (a device, pipe or socket), not an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(file_path)
    except OSError as exc:
        raise ReadError(f"{str(file_path)!r} cannot be read: {_first_line(exc)}") from None
    if not is_hdf5:
        raise ReadError(f"{str(file_path)!r} is not an HDF5 file (it does not start with the HDF5 signature)")
    file, live = _open(file_path, swmr)
    try:
        return Run(file_path, file, live=live)
    except _H5_ERRORS as exc:  # a file too damaged to walk
        file.close()
        raise ReadError(f"{str(file_path)!r} cannot be read: {_first_line(exc)} (if its writer crashed, "
                        "`streamsave recover` makes a readable copy)") from None


def _open(path: Path, swmr: bool | None) -> tuple[h5py.File, bool]:
    attempts = [False, True] if swmr is None else [swmr]
    errors: list[str] = []
    for as_swmr in attempts:
        if as_swmr:
            _refuse_truncated(path)  # HDF5 does not check it for SWMR readers
        try:
            if not as_swmr:
                return h5py.File(path, "r"), False
            flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
            return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=_swmr_access())), True
        except _H5_ERRORS as exc:
            errors.append(_first_line(exc))
            if "truncated file" in errors[-1]:
                _refuse_truncated(path)
    if any("unable to lock" in e for e in errors):
        raise ReadError(f"{str(path)!r} is open for writing by another program without SWMR (a streamsave "
                        "saver lets SWMR readers in once its first frame is written; with swmr=False only once "
                        "it is closed): try again later")
    if any("already open for write" in e for e in errors):
        raise ReadError(f"{str(path)!r} is marked as open for writing, but not for SWMR readers: its writer "
                        "crashed, or still has it open without SWMR; make a clean copy with `streamsave recover`")
    raise ReadError(f"{str(path)!r} cannot be opened: {errors[-1]} (if its writer crashed, `streamsave recover` "
                    "makes a readable copy)")


#: how often an SWMR reader reads metadata whose checksum fails before giving up. A live
#: writer's torn metadata is whole again within microseconds; HDF5's default (100, with
#: doubling sleeps) makes a damaged or truncated file stall a reader for hours.
_SWMR_READ_ATTEMPTS: Final = 20


def _swmr_access() -> h5py.h5p.PropFAID:
    """File access properties of an SWMR reader that gives up on bad metadata after
    :data:`_SWMR_READ_ATTEMPTS` reads (h5py does not wrap the setting: it is called in
    the HDF5 library h5py loaded)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    set_property(fapl, "H5Pset_metadata_read_attempts", ctypes.c_uint, _SWMR_READ_ATTEMPTS)
    return fapl


_SIGNATURE: Final = b"\x89HDF\r\n\x1a\n"
#: how far an SWMR writer's file may end before the end its superblock records (space
#: HDF5 allocated before a flush and writes after it; measured during recordings: none)
_SWMR_SLACK: Final = 64 << 10


def _refuse_truncated(path: Path, slack: int = _SWMR_SLACK) -> None:
    """Raise :class:`ReadError` if the file is shorter than its superblock says."""
    try:
        size, end = path.stat().st_size, _recorded_end(path)
    except OSError:
        return  # HDF5 says what is wrong when it opens it
    if end is not None and size + slack < end:
        raise ReadError(f"{str(path)!r} is truncated: it has {size:,} bytes, but its HDF5 superblock says it "
                        f"ends at {end:,} (an incomplete copy, or a full disk?)")


def _recorded_end(path: Path) -> int | None:
    """Where the superblock says the file ends (its end-of-file address), or ``None`` if
    it cannot tell. The superblock is at 0, 512, 1024, 2048, ... bytes."""
    with open(path, "rb") as fh:
        offset = 0
        while True:
            fh.seek(offset)
            head = fh.read(96)
            if len(head) < 48:
                return None
            if head[:8] == _SIGNATURE:
                break
            offset = 512 if offset == 0 else offset * 2
    version = head[8]
    if version >= 2:
        width, at = head[9], 12
    elif version in (0, 1):
        width, at = head[13], 24 if version == 0 else 28
    else:
        return None
    if width not in (2, 4, 8) or at + 3 * width > len(head):
        return None
    eof = int.from_bytes(head[at + 2 * width:at + 3 * width], "little")
    return None if eof == (1 << (8 * width)) - 1 else eof  # HDF5 compares it with the file size as it is


def _held_for_writing(file: h5py.File) -> bool:
    """This process also has the file open for writing (HDF5 then shares one open
    file between the writer and this reader, and reports the writer's access)."""
    try:
        return bool(file.id.get_intent() & h5py.h5f.ACC_RDWR)
    except (OSError, ValueError, RuntimeError, AttributeError):  # AttributeError: not h5py (a service's file)
        return False


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]


class Run:
    """A recorded file opened by :func:`open_reader`.

    ``run.channels`` maps ``"Detector/channel"`` to a :class:`ChannelReader`;
    ``print(run)`` shows the tree. Close it (or use ``with``) to release the file.
    """

    def __init__(self, path: Path, file: h5py.File, *, live: bool) -> None:
        #: the file
        self.path = path
        self._file = file
        accept(file)
        #: :meth:`close` was called
        self.closed = False
        #: a writer may still be adding frames: opened as an SWMR reader, or opened in the
        #: writer's own process (HDF5 shares the open file, which it holds for writing)
        self.live = live or _held_for_writing(file)
        self._swmr = live
        if not self.live and not isinstance(file, h5py.File):  # a service's file: live while its writer says so
            self.live = self._flag() is True
        self._lock = threading.Lock()
        self._journal: np.ndarray[Any, Any] | None = None
        self._journal_columns: list[str] = []
        # the writer never marked the file closed (it is still writing, or it was killed): only
        # what the journal says its last flush made durable is whole
        self._unclosed = self.live or self._flag() is not False
        self._read_journal()
        self._is_streamsave = isinstance(_member_at(file, "/RawData"), KINDS.group)
        #: the scans (``ScanNNN`` groups) by title, see :class:`~streamsave.ScanReader`
        self.scans: Mapping[str, ScanReader] = discover_scans(self, file) if self._is_streamsave else {}
        self.channels: Mapping[str, ChannelReader] = self._discover()

    # ------------------------------------------------------------------ context and text
    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (channels cannot read after this: they raise
        :class:`~streamsave.ReadError`). Closing twice is harmless."""
        with self._lock:
            self.closed = True
            self._file.close()

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise ReadError(f"{what}: {str(self.path)!r} was closed (open it again with streamsave.open_reader)")

    def __repr__(self) -> str:
        return f"<Run {str(self.path)!r} channels={list(self.channels)}{' live' if self.live else ''}>"

    def __str__(self) -> str:
        state = ("  (being written: SWMR reader)" if self._swmr else "  (being written)") if self.writing else ""
        lines = [f"{self.path}{state}"]
        width = max([len(k) for k in self.channels] + [7])
        for key, ch in self.channels.items():
            shape = "scalar" if not ch.frame_shape else "x".join(map(str, ch.frame_shape))
            extra = f"  {ch.units}" if ch.units else ""
            comp = f"  {ch.compression}" if ch.compression else ""
            lines.append(f"  {key:<{width}}  {len(ch):>10,} frames  {shape} {ch.dtype}{extra}{comp}")
        for scan_name, scan in self.scans.items():
            kind = "adaptive" if scan.adaptive else "x".join(map(str, scan.shape))
            lines.append(f"  scan {scan_name!r} ({kind}): {', '.join(scan.channels)}")
        if not self.channels and not self.scans:
            lines.append("  (no channels)")
        return "\n".join(lines)

    @property
    def log(self) -> tuple[LogMessage, ...]:
        """The file's log messages (``saver.log``, a saver's ``LogHandler``), in order,
        each a :class:`~streamsave.LogMessage` ``(time, level, text)``; in a file being
        written, those its last flush made durable. For a PyMoDAQ file, the rows of its
        Logger that hold a string (time NaN, level 0). Nothing is unpickled.

        :raises ~streamsave.ReadError: the log cannot be read (a damaged file).
        """
        with self._lock:
            self._check_open("log")
            nodes = {key: _member_at(self._file, path) for key, path in (
                ("times", LOG_TIMES), ("levels", LOG_LEVELS), ("ends", LOG_ENDS), ("text", LOG_TEXT),
                ("durable", LOG_DURABLE), ("logger", LOGGER))}
            try:
                return read_log(nodes, bounded=self._unclosed, live=self.live)
            except _H5_ERRORS as exc:
                raise ReadError(f"{str(self.path)!r}: its log cannot be read: {_first_line(exc)}") from None

    # ------------------------------------------------------------------ live files
    @property
    def writing(self) -> bool:
        """A writer still has the file open (only known for streamsave's live files)."""
        if not self.live or self.closed:
            return False
        flag = self._flag()
        return True if flag is None else flag  # no flag yet, or unreadable: assume it still writes

    def _flag(self) -> bool | None:
        """``/streamsave/writing`` (refreshed in a live file), or ``None`` if it is
        missing or unreadable."""
        flag = _member_at(self._file, JOURNAL_WRITING)
        if not isinstance(flag, KINDS.dataset) or flag.shape != (1,) or flag.dtype.kind not in "biu":
            return None
        try:
            if self.live:
                flag.refresh()
            return bool(flag[0])
        except (OSError, ValueError, RuntimeError, TypeError):
            return None

    def refresh(self) -> bool:
        """See what a live writer has flushed since (no-op for a closed file);
        returns whether a writer still has the file open."""
        return self._refresh()

    def _refresh(self) -> bool:
        with self._lock:
            self._check_open("refresh")
            if not self.live:
                return False
            writing = self.writing
            self._read_journal()
            for ch in self.channels.values():
                for node in (ch._data, ch._time):
                    if node is not None:
                        with contextlib.suppress(OSError, ValueError, RuntimeError):
                            node.refresh()
                ch._update_length()
            return writing

    def _read_journal(self) -> None:
        group, frames = _member_at(self._file, JOURNAL_GROUP), _member_at(self._file, JOURNAL_FRAMES)
        self._journal = None
        if not isinstance(group, KINDS.group) or not isinstance(frames, KINDS.dataset):
            return
        try:
            if self.live:
                frames.refresh()
            raw = text(attr(group, "channels")) or "[]"
            if (frames.ndim != 2 or frames.dtype.kind not in "iu" or not 0 < frames.shape[1] <= _MAX_NODES
                    or len(raw) > MAX_ATTR_TEXT):
                return  # not a journal streamsave wrote
            columns = json.loads(raw)
            rows = frames.shape[0]
            self._journal = np.asarray(frames[rows - 1], dtype=np.int64) if rows else None
            listed = columns if isinstance(columns, list) else []
            self._journal_columns = [c if isinstance(c, str) else "" for c in listed]
        except (OSError, ValueError, RuntimeError, TypeError, RecursionError):
            self._journal = None

    def _durable(self, column: int | None) -> int | None:
        """Frames the journal says are durable for a channel (live files only)."""
        if not self._unclosed or column is None or self._journal is None or column >= len(self._journal):
            return None
        durable: int = int(self._journal[column])
        return durable

    # ------------------------------------------------------------------ discovery
    def _discover(self) -> dict[str, ChannelReader]:
        walk = _Walk()
        found: dict[str, ChannelReader] = {}
        raw = walk.member(self._file, "RawData")
        if self._is_streamsave and isinstance(raw, KINDS.group):
            for det in walk.groups(raw):
                settings = _settings(walk, det)
                for dim in walk.groups(det):
                    if _basename(dim) not in _DIM_GROUPS:
                        continue
                    for ch in walk.groups(dim):
                        reader = self._channel(walk, det, dim, ch, settings)
                        if reader is None:
                            continue
                        key = reader.full_name
                        if key in found:  # two channels with one title: tell them apart
                            key = reader.full_name = f"{key} ({_basename(ch)})"
                        found.setdefault(key, reader)
        if not found and not self.scans:  # any other file: one channel per dataset
            for key, dset in _Walk().datasets(self._file):
                with contextlib.suppress(*_H5_ERRORS):
                    found[key] = ChannelReader(self, key=key, detector="", name=key, data=dset, time=None,
                                               axes=(), settings={}, scalar=False, journal_column=None)
        return found

    def _channel(self, walk: _Walk, det: h5py.Group, dim: h5py.Group, ch: h5py.Group,
                 settings: dict[str, Any]) -> ChannelReader | None:
        try:
            return self._make_channel(walk, det, dim, ch, settings)
        except _H5_ERRORS:  # a damaged or hostile node: not a channel
            return None

    def _make_channel(self, walk: _Walk, det: h5py.Group, dim: h5py.Group, ch: h5py.Group,
                      settings: dict[str, Any]) -> ChannelReader | None:
        signal = text(attr(ch, "signal")) or ""
        names = [signal] if signal and "/" not in signal else []
        names += [k for k in ("EnlData00", "Data00") if k not in names]
        key, data = next(((k, node) for k in names if _is_data(node := walk.member(ch, k))), ("", None))
        if data is None:
            return None
        enlargeable = key.startswith("Enl") or (data.maxshape[0] is None)
        if not enlargeable and _nbytes(data) > MAX_SNAPSHOT_BYTES:
            return None  # a snapshot (one frame) larger than any read may be
        scalar = _basename(dim) == "Data0D" and enlargeable and data.shape[1:] == (1,)
        time, axes = None, []
        for name in walk.names(ch):
            node = walk.member(ch, name)
            if not isinstance(node, KINDS.dataset) or node == data or text(attr(node, "data_type")) != "axis":
                continue
            index = envelope(attr(node, "index"))
            if text(attr(node, "label")) == "time" and (index == 0 or index is None) and enlargeable:
                time = node
                continue
            if isinstance(index, int) and not isinstance(index, bool):
                axes.append((index, node))
        if time is None and enlargeable:  # PyMoDAQ: one time axis per detector, in NavAxes
            nav = walk.member(det, "NavAxes")
            if isinstance(nav, KINDS.group):
                time = next((n for k in walk.names(nav) if isinstance(n := walk.member(nav, k), KINDS.dataset)
                             and text(attr(n, "label")) == "time" and n.ndim == 1), None)
        frame_shape = () if scalar else tuple(data.shape[1:] if enlargeable else data.shape)
        axis_objs: list[Axis] = []
        for index, node in sorted(axes, key=lambda pair: pair[0]):
            dim_index = index - 1 if enlargeable else index
            if 0 <= dim_index < len(frame_shape) and dim_index == len(axis_objs):  # in order, no gaps
                axis = axis_from_node(node, frame_shape[dim_index])
                if axis is not None:
                    axis_objs.append(axis)
        detector = text(attr(det, "TITLE")) or _basename(det)
        name = text(attr(ch, "TITLE")) or _basename(ch)
        column = self._journal_columns.index(data.name) if data.name in self._journal_columns else None
        return ChannelReader(self, key=f"{detector}/{name}", detector=detector, name=name,
                             data=data if enlargeable else _OneFrame(data), time=time, axes=tuple(axis_objs),
                             settings=settings, scalar=scalar, journal_column=column if enlargeable else None)


#: the errors h5py raises on a damaged or hostile file (besides its own OSError subclasses)
_H5_ERRORS: Final = (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError, RecursionError,
                     AttributeError, OverflowError, UnicodeError)
#: the most bytes a snapshot (PyMoDAQ's ``Data00``, read whole as one frame) may hold
MAX_SNAPSHOT_BYTES: Final = 1 << 30
#: settings stored in a dataset larger than this are not read
_MAX_SETTINGS_BYTES: Final = 16 << 20
#: soft links followed one after another at most (HDF5's own limit)
_MAX_SOFT_LINKS: Final = 16


class _OneFrame:
    """A fixed dataset seen as a channel of one frame (PyMoDAQ's ``Data00``)."""

    def __init__(self, dset: h5py.Dataset) -> None:
        self._dset = self.dataset = dset
        self.name = dset.name
        self.dtype = dset.dtype
        self.chunks = None
        self.compression = dset.compression
        self.attrs = dset.attrs
        self.id = dset.id

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, *self._dset.shape)

    @property
    def ndim(self) -> int:
        return int(self._dset.ndim) + 1

    def __getitem__(self, key: slice) -> Any:
        return np.asarray(self._dset[()])[None][key]

    def refresh(self) -> None:
        pass


def _basename(node: Any) -> str:
    return str(node.name or "").rsplit("/", 1)[-1]


def _nbytes(dset: h5py.Dataset) -> int:
    return int(dset.dtype.itemsize) * math.prod(int(n) for n in dset.shape)


def _is_data(node: Any) -> bool:
    """A dataset that can hold frames: numbers or booleans, at least one dimension."""
    return isinstance(node, KINDS.dataset) and node.shape is not None and node.ndim >= 1 and \
        node.dtype.kind in "biufc" and node.dtype.subdtype is None


def _settings(walk: _Walk, det: h5py.Group) -> dict[str, Any]:
    """A detector's settings: ``params_json``, the dataset it names when they were too
    large for an attribute, or PyMoDAQ's XML; ``{}`` if none of them is usable."""
    blob = text(attr(det, "params_dataset"))
    if blob and "/" not in blob:
        node = walk.member(det, blob)
        if isinstance(node, KINDS.dataset) and node.dtype == np.uint8 and node.ndim == 1 \
                and node.shape[0] <= _MAX_SETTINGS_BYTES:
            with contextlib.suppress(*_H5_ERRORS):
                found = settings_from_json(bytes(np.asarray(node[()])).decode("utf-8"), limit=_MAX_SETTINGS_BYTES)
                if found is not None:
                    return found
    return settings_from_json(attr(det, "params_json")) or settings_from_xml(attr(det, "settings")) or {}


class _Walk:
    """Reads a file's tree without leaving it: hard links, and soft links that stay in
    the file (at most :data:`_MAX_SOFT_LINKS` in a row); never external links, virtual
    datasets or datasets whose data is stored in external files. Each group is walked
    once (hard links can make cycles), and at most :data:`_MAX_NODES` members in all."""

    def __init__(self) -> None:
        self.budget = _MAX_NODES
        self.seen: set[Any] = set()

    def names(self, group: h5py.Group) -> list[str]:
        """The names in ``group``, sorted (at most what is left of the budget)."""
        try:
            return sorted(itertools.islice(iter(group), max(0, self.budget)))
        except _H5_ERRORS:
            return []

    def member(self, group: h5py.Group, key: str, hops: int = 0) -> Any:
        """``group[key]`` if it is inside the file, else ``None``."""
        self.budget -= 1
        if self.budget < 0 or not key or "/" in key:
            return None
        try:
            link = group.get(key, getlink=True)
            if isinstance(link, KINDS.hard):
                node = group.get(key)
            elif isinstance(link, KINDS.soft) and hops < _MAX_SOFT_LINKS:
                node = self._resolve(group, str(link.path), hops + 1)
            else:
                return None  # external and user-defined links are not followed
            if isinstance(node, KINDS.dataset) and external_data(node):
                return None  # its data lives in other files: not followed
        except _H5_ERRORS:
            return None
        return node

    def _resolve(self, group: h5py.Group, path: str, hops: int) -> Any:
        node: Any = group.file["/"] if path.startswith("/") else group
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if not isinstance(node, KINDS.group):
                return None
            node = self.member(node, part, hops)
        return node

    def groups(self, parent: h5py.Group) -> Iterator[h5py.Group]:
        """The groups in ``parent`` not walked before."""
        for key in self.names(parent):
            node = self.member(parent, key)
            if isinstance(node, KINDS.group) and node not in self.seen:
                self.seen.add(node)
                yield node

    def datasets(self, file: h5py.File) -> Iterator[tuple[str, h5py.Dataset]]:
        """Every dataset that can hold frames, by its path, breadth first."""
        queue: collections.deque[tuple[str, h5py.Group]] = collections.deque([("", file)])
        self.seen.add(file["/"])
        while queue and self.budget > 0:
            prefix, group = queue.popleft()
            for key in self.names(group):
                try:  # hard links only: what a soft link reaches is listed under its own path
                    hard = isinstance(group.get(key, getlink=True), KINDS.hard)
                except _H5_ERRORS:
                    hard = False
                node = self.member(group, key) if hard else None
                if node is None or node in self.seen:
                    continue
                self.seen.add(node)
                if isinstance(node, KINDS.group):
                    queue.append((f"{prefix}{key}/", node))
                elif _is_data(node):
                    yield f"{prefix}{key}", node


def _member_at(file: h5py.File, path: str) -> Any:
    """The node at an absolute ``path``, inside the file, or ``None``."""
    node: Any = file
    walk = _Walk()
    for part in path.strip("/").split("/"):
        if not isinstance(node, KINDS.group):
            return None
        node = walk.member(node, part)
    return node
