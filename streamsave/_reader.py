"""Opening a recorded file for reading: its channels, live or closed.

:func:`open_reader` opens any HDF5 file read-only. A file streamsave or PyMoDAQ wrote
is read as its detectors and channels (``"Detector/channel"``); any other file as
generic channels, one per dataset (keyed by its path, frames along axis 0). A file a
writer is still recording is opened as an SWMR reader automatically, and
``refresh()`` shows what the writer has flushed since.

Nothing in a file is executed: attribute envelopes are parsed as literals, settings
XML by a parser that refuses entities, external links and virtual datasets are not
followed, and soft links are resolved only inside the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter and the other codecs)
import numpy as np

from ._attrs import MAX_ATTR_TEXT, attr, envelope, settings_from_json, settings_from_xml, text
from ._channel_reader import ChannelReader, axis_from_node
from ._errors import ReadError
from ._layout import JOURNAL_FRAMES, JOURNAL_GROUP, JOURNAL_WRITING

__all__ = ("Run", "open_reader")

_MAX_NODES: Final = 100_000  # a file with more nodes than this is not walked further
_DIM_GROUPS: Final = ("Data0D", "Data1D", "Data2D", "DataND")


def open_reader(path: str | os.PathLike[str], *, swmr: bool | None = None) -> Run:
    """Open a recorded HDF5 file for reading (``with streamsave.open_reader(p) as run:``).

    :param path: the file.
    :param swmr: ``None`` (default): a plain reader, or an SWMR reader if a writer
        has the file open in SWMR mode; ``True``/``False`` to insist on one.
    :raises ~streamsave.ReadError: the file is missing, not HDF5, damaged, or being
        written without SWMR (then only the writer can read it until it closes).
    """
    file_path = Path(path)
    if not file_path.exists():
        raise ReadError(errno.ENOENT, f"{str(file_path)!r} does not exist")
    if file_path.is_dir():
        raise ReadError(errno.EISDIR, f"{str(file_path)!r} is a directory, not an HDF5 file")
    try:
        is_hdf5 = h5py.is_hdf5(file_path)
    except OSError as exc:
        raise ReadError(f"{str(file_path)!r} cannot be read: {_first_line(exc)}") from None
    if not is_hdf5:
        raise ReadError(f"{str(file_path)!r} is not an HDF5 file (it does not start with the HDF5 signature)")
    file, live = _open(file_path, swmr)
    return Run(file_path, file, live=live)


def _open(path: Path, swmr: bool | None) -> tuple[h5py.File, bool]:
    attempts = [False, True] if swmr is None else [swmr]
    errors: list[str] = []
    for as_swmr in attempts:
        try:
            return h5py.File(path, "r", swmr=as_swmr), as_swmr
        except (OSError, ValueError) as exc:
            errors.append(_first_line(exc))
    if any("already open for write" in e or "lock" in e for e in errors):
        raise ReadError(f"{str(path)!r} is open for writing without SWMR, or its writer crashed before finishing: "
                        "wait until it is closed, or make a clean copy with `streamsave recover`")
    raise ReadError(f"{str(path)!r} cannot be opened: {errors[-1]} (if its writer crashed, `streamsave recover` "
                    "makes a readable copy)")


def _held_for_writing(file: h5py.File) -> bool:
    """This process also has the file open for writing (HDF5 then shares one open
    file between the writer and this reader, and reports the writer's access)."""
    try:
        return bool(file.id.get_intent() & h5py.h5f.ACC_RDWR)
    except (OSError, ValueError, RuntimeError):
        return False


def _member_at(file: h5py.File, path: str) -> Any:
    """The node at an absolute ``path`` reached through hard links only, or ``None``."""
    node: Any = file
    for part in path.strip("/").split("/"):
        if not isinstance(node, h5py.Group):
            return None
        node = _member(node, part)
    return node


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
        #: a writer may still be adding frames: opened as an SWMR reader, or opened in the
        #: writer's own process (HDF5 shares the open file, which it holds for writing)
        self.live = live or _held_for_writing(file)
        self._limiter = anyio.CapacityLimiter(1)
        self._lock = threading.Lock()
        self._journal: np.ndarray[Any, Any] | None = None
        self._journal_columns: list[str] = []
        # the writer never marked the file closed (it is still writing, or it was killed): only
        # what the journal says its last flush made durable is whole
        self._unclosed = self.live or self._flag() is not False
        self._read_journal()
        raw = file.get("RawData", getlink=True)
        self._is_streamsave = isinstance(raw, h5py.HardLink) and isinstance(file.get("RawData"), h5py.Group)
        self.channels: Mapping[str, ChannelReader] = self._discover()

    # ------------------------------------------------------------------ context and text
    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (channels cannot read after this)."""
        self._file.close()

    def __repr__(self) -> str:
        return f"<Run {str(self.path)!r} channels={list(self.channels)}{' live' if self.live else ''}>"

    def __str__(self) -> str:
        lines = [f"{self.path}{'  (being written: SWMR reader)' if self.writing else ''}"]
        width = max([len(k) for k in self.channels] + [7])
        for key, ch in self.channels.items():
            shape = "scalar" if not ch.frame_shape else "x".join(map(str, ch.frame_shape))
            extra = f"  {ch.units}" if ch.units else ""
            comp = f"  {ch.compression}" if ch.compression else ""
            lines.append(f"  {key:<{width}}  {len(ch):>10,} frames  {shape} {ch.dtype}{extra}{comp}")
        if not self.channels:
            lines.append("  (no channels)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ live files
    @property
    def writing(self) -> bool:
        """A writer still has the file open (only known for streamsave's live files)."""
        if not self.live:
            return False
        flag = self._flag()
        return True if flag is None else flag  # no flag yet, or unreadable: assume it still writes

    def _flag(self) -> bool | None:
        """``/streamsave/writing`` (refreshed in a live file), or ``None`` if it is
        missing or unreadable."""
        flag = _member_at(self._file, JOURNAL_WRITING)
        if not isinstance(flag, h5py.Dataset) or flag.shape != (1,) or flag.dtype.kind not in "biu":
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
        if not isinstance(group, h5py.Group) or not isinstance(frames, h5py.Dataset):
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
        found: dict[str, ChannelReader] = {}
        raw = self._file.get("RawData")
        if self._is_streamsave and isinstance(raw, h5py.Group):
            for det in _groups(raw):
                for dim in _groups(det):
                    if dim.name.rsplit("/", 1)[-1] not in _DIM_GROUPS:
                        continue
                    for ch in _groups(dim):
                        reader = self._channel(det, dim, ch)
                        if reader is not None:
                            key = reader.full_name
                            if key in found:  # two channels with one title: tell them apart
                                key = f"{key} ({ch.name.rsplit('/', 1)[-1]})"
                                reader.full_name = key
                            found[key] = reader
        if not found:
            for dset in _datasets(self._file):
                key = dset.name.lstrip("/")
                found[key] = ChannelReader(self, key=key, detector="", name=key, data=dset, time=None, axes=(),
                                           settings={}, scalar=False, journal_column=None)
        return found

    def _channel(self, det: h5py.Group, dim: h5py.Group, ch: h5py.Group) -> ChannelReader | None:
        signal = text(attr(ch, "signal")) or ""
        names = [signal] if signal else []
        names += [k for k in ("EnlData00", "Data00") if k not in names]
        data = next((node for k in names if isinstance(node := _member(ch, k), h5py.Dataset)), None)
        if data is None or data.ndim < 1:
            return None
        enlargeable = data.name.rsplit("/", 1)[-1].startswith("Enl")
        scalar = dim.name.endswith("Data0D") and data.shape[1:] == (1,)
        time, axes = None, []
        for key in sorted(ch):
            node = _member(ch, key)
            if not isinstance(node, h5py.Dataset) or node is data or text(attr(node, "data_type")) != "axis":
                continue
            index = envelope(attr(node, "index"))
            if text(attr(node, "label")) == "time" and (index == 0 or index is None) and enlargeable:
                time = node
                continue
            if isinstance(index, int) and not isinstance(index, bool):
                axes.append((index, node))
        if time is None and enlargeable:  # PyMoDAQ: one time axis per detector, in NavAxes
            nav = _member(det, "NavAxes")
            if isinstance(nav, h5py.Group):
                time = next((n for k in sorted(nav) if isinstance(n := _member(nav, k), h5py.Dataset)
                             and text(attr(n, "label")) == "time" and n.ndim == 1), None)
        frame_shape = () if scalar else tuple(data.shape[1:] if enlargeable else data.shape)
        axis_objs = []
        for index, node in sorted(axes, key=lambda pair: pair[0]):
            dim_index = index - 1 if enlargeable else index
            if 0 <= dim_index < len(frame_shape):
                axis = axis_from_node(node, frame_shape[dim_index])
                if axis is not None:
                    axis_objs.append(axis)
        detector = text(attr(det, "TITLE")) or det.name.rsplit("/", 1)[-1]
        name = text(attr(ch, "TITLE")) or ch.name.rsplit("/", 1)[-1]
        settings = settings_from_json(attr(det, "params_json")) or settings_from_xml(attr(det, "settings")) or {}
        column = self._journal_columns.index(data.name) if data.name in self._journal_columns else None
        if not enlargeable:  # a PyMoDAQ snapshot (Data00): one frame
            data_view = data
            return ChannelReader(self, key=f"{detector}/{name}", detector=detector, name=name,
                                 data=_OneFrame(data_view), time=None, axes=tuple(axis_objs), settings=settings,
                                 scalar=False, journal_column=None)
        return ChannelReader(self, key=f"{detector}/{name}", detector=detector, name=name, data=data, time=time,
                             axes=tuple(axis_objs), settings=settings, scalar=scalar, journal_column=column)


class _OneFrame:
    """A fixed dataset seen as a channel of one frame (PyMoDAQ's ``Data00``)."""

    def __init__(self, dset: h5py.Dataset) -> None:
        self._dset = dset
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


def _member(group: h5py.Group, key: str) -> Any:
    """A member of ``group`` through a hard link only (external links are not followed;
    soft links only when they stay in the file), or ``None``."""
    try:
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink) or link is None:
            return None
        node = group.get(key)
    except (OSError, KeyError, ValueError, RuntimeError, RecursionError):
        return None
    if isinstance(node, h5py.Dataset) and node.is_virtual:
        return None  # its data lives in other files: not followed
    return node


def _groups(parent: h5py.Group) -> Iterator[h5py.Group]:
    try:
        keys = sorted(parent)[:_MAX_NODES]
    except (OSError, RuntimeError):
        return
    for key in keys:
        node = _member(parent, key)
        if isinstance(node, h5py.Group):
            yield node


def _datasets(file: h5py.File) -> Iterator[h5py.Dataset]:
    """Every dataset with at least one dimension, reached by hard links, breadth first."""
    seen: set[Any] = set()
    queue: list[h5py.Group] = [file]
    count = 0
    while queue and count < _MAX_NODES:
        group = queue.pop(0)
        try:
            keys = sorted(group)
        except (OSError, RuntimeError):
            continue
        for key in keys:
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                continue  # soft and external links: the target is reached by its own hard link, or not at all
            node = _member(group, key)
            count += 1
            if isinstance(node, h5py.Group):
                addr = h5py.h5o.get_info(node.id).addr if hasattr(h5py.h5o, "get_info") else node.name
                if addr not in seen:
                    seen.add(addr)
                    queue.append(node)
            elif isinstance(node, h5py.Dataset) and node.ndim >= 1 and node.dtype.kind in "biufc":
                yield node
