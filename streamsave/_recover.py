"""Recovering what a crashed writer made durable into a clean, ordinary file.

A killed writer leaves a file holding every frame of its last flush, in a state most
tools dislike: an SWMR file still says "open for writing" (only an SWMR reader opens
it), datasets may extend past the frames stored (those read as zeros), and channels
that never got a frame make PyMoDAQ's loader fail. :func:`recover` only reads such a
file and writes a new one that any HDF5 reader, PyMoDAQ and NeXus viewers open:

* each channel keeps ``min(promise, frames in its data, frames in its time axis)``; the
  promise is the last row of the durability journal (``/streamsave/durable_frames``: one
  row rewritten at every flush, or in older files one row added per flush), or for
  channels it does not list the ``shape`` attribute;
* it is cut further at the first chunk never stored, past the end of the file or not
  found because its index does not read, and at a last chunk that does not decode;
* a group or dataset that does not read at all is left out and named in the report
  (:attr:`RecoveryReport.unreadable`): without SWMR, HDF5 writes a flush's metadata in
  no dependency order, so a plain file killed while HDF5 flushed it can hold a node
  pointing to one never written;
* chunks are copied as stored, with their filter masks (a partly filled chunk may be
  stored without compression), attributes as they are, except the lengths (``shape``,
  ``size``); channels left without frames are removed as the writer does at close;
* a channel's per-frame columns (``FrameNumbers``, ``Metadata/*``) are cut with its
  frames (and cut them, if one holds fewer values), so every kept frame has its values;
* the log keeps the messages its last flush made durable (``/streamsave/log_durable``),
  and PyMoDAQ's ``/RawData/Logger`` is written again from them (a writer killed before
  or while closing the file had not written it, or not whole).

Recovery trusts the journal and the chunks, never the order of the timestamps: a
program may give timestamps that go backwards (its own clock, several producers on
one channel), and they are stored as given.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc2 filter: its chunks are copied as stored)
import numpy as np

from ._attrs import attr, envelope
from ._columns import FRAME_NUMBERS, METADATA_GROUP
from ._errors import RecoveryError
from ._hdf5 import set_property
from ._layout import JOURNAL_FRAMES, JOURNAL_GROUP, JOURNAL_WRITING, Layout, _Detector, encode
from ._log import LOG_COLUMNS, LOG_TEXT
from ._recover_log import durable_log, rewrite_logger
from .backends import AttrValue, DatasetSpec
from .backends.h5py import H5pyBackend

__all__ = ("ChannelRecovery", "RecoveryReport", "recover")

_DATA_NAME: Final = re.compile(r"EnlData\d\d")
_DIM_NAME: Final = re.compile(r"Data(0D|1D|2D|ND)")
_H5_ERRORS: Final = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError)


@dataclass(frozen=True, slots=True)
class ChannelRecovery:
    """What recovery kept of one channel.

    :ivar name: ``"detector/channel"`` (the groups' ``TITLE`` attributes).
    :ivar path: the channel's data node in the source file.
    :ivar frames_kept: whole frames copied into the new file (0: channel removed).
    :ivar frames_in_source: the source data node's length (may count frames never stored).
    :ivar limited_by: what decided ``frames_kept`` (``"journal"``, ``"data extent"``, ...).
    """

    name: str
    path: str
    frames_kept: int
    frames_in_source: int
    limited_by: str


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """The outcome of :func:`recover`: the two files and every channel."""

    source: Path
    destination: Path
    channels: tuple[ChannelRecovery, ...]
    #: groups and datasets of the source that could not be read, left out of the new file
    unreadable: tuple[str, ...] = ()

    @property
    def frames_kept(self) -> int:
        return sum(c.frames_kept for c in self.channels)

    @property
    def channels_removed(self) -> tuple[str, ...]:
        """Channels with no whole frame, left out of the new file."""
        return tuple(c.name for c in self.channels if c.frames_kept == 0)

    def summary(self) -> str:
        """A table for people: one line per channel."""
        width = max([len(c.name) for c in self.channels] + [7])
        lines = [f"{self.source} -> {self.destination}",
                 f"  {'channel':<{width}}  {'kept':>10}  {'in source':>10}  limited by"]
        for c in self.channels:
            note = " (channel removed: no whole frame)" if c.frames_kept == 0 else ""
            lines.append(f"  {c.name:<{width}}  {c.frames_kept:>10,}  {c.frames_in_source:>10,}  {c.limited_by}{note}")
        lines.extend(f"  left out, unreadable: {path}" for path in self.unreadable)
        lines.append(f"Recovered {self.frames_kept:,} frames of {len(self.channels)} channels.")
        return "\n".join(lines)


@dataclass(slots=True)
class _Plan:
    """One channel's nodes and how many frames to keep."""

    group: str
    data: str
    time: str | None
    name: str
    extent: int
    kept: int
    limited_by: str
    #: the per-frame columns' datasets (frame numbers, metadata)
    columns: tuple[str, ...] = ()


def recover(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool = False) -> RecoveryReport:
    """Copy the whole frames of a (possibly crashed) streamsave or PyMoDAQ file ``src``
    into a new, closed, ordinary HDF5 file ``dst``. ``src`` is only read.

    :param overwrite: replace ``dst`` if it exists.
    :raises RecoveryError: ``src`` is missing, not an HDF5 file, not a streamsave or
        PyMoDAQ file, or too damaged to read; ``dst`` exists (without ``overwrite``),
        is ``src`` itself, or cannot be written. ``dst`` is then left as it was.
    """
    source, dest = _check_paths(Path(src), Path(dst), overwrite)
    tmp = dest.with_name(f".{dest.name}.recovering-{os.getpid()}")
    unreadable: dict[str, None] = {}  # in the order met
    try:
        with _open_source(source) as file:
            plans = _plan(file, source, unreadable)
            _write_whole(file, tmp, plans, unreadable)
        os.replace(tmp, dest)
    except _H5_ERRORS as exc:
        raise RecoveryError(f"cannot recover {str(source)!r}: {_reason(exc)}") from None
    finally:
        with suppress(OSError):
            tmp.unlink()
    return RecoveryReport(source, dest, tuple(
        ChannelRecovery(p.name, p.data, p.kept, p.extent, p.limited_by) for p in plans), tuple(unreadable))


# ---------------------------------------------------------------------------- paths and opening
def _check_paths(src: Path, dst: Path, overwrite: bool) -> tuple[Path, Path]:
    if not src.exists():
        raise RecoveryError(f"{str(src)!r} does not exist")
    if not src.is_file():
        raise RecoveryError(f"{str(src)!r} is not a file")
    if dst.exists() or dst.is_symlink():
        if dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst)):
            raise RecoveryError(f"the output {str(dst)!r} is the input file, which recovery never modifies")
        if dst.is_dir():
            raise RecoveryError(f"the output {str(dst)!r} is a directory")
        if not overwrite:
            raise RecoveryError(f"the output {str(dst)!r} already exists; overwrite=True (--overwrite) replaces it")
    if not dst.parent.is_dir():
        raise RecoveryError(f"the output's directory {str(dst.parent)!r} does not exist")
    return src, dst


@contextmanager
def _open_source(src: Path) -> Iterator[h5py.File]:
    """Open read-only: as an SWMR reader first (a killed SWMR writer's file needs it),
    then as a plain reader."""
    if not h5py.is_hdf5(src):
        raise RecoveryError(f"{str(src)!r} is not an HDF5 file (it does not start with the HDF5 signature)")
    errors: list[str] = []
    file: h5py.File | None = None
    for flags in (h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, h5py.h5f.ACC_RDONLY):
        try:
            file = h5py.File(h5py.h5f.open(os.fsencode(src), flags, fapl=_read_once()))
            break
        except _H5_ERRORS as exc:
            errors.append(_reason(exc))
    if file is None:
        hint = (" (its superblock says a writer still has it open without SWMR; if that writer is gone, clear "
                "the flag on a copy with `h5clear -s --increment COPY` and recover the copy)"
                if any("already open for write" in e for e in errors) else "")
        raise RecoveryError(f"HDF5 cannot open {str(src)!r}: {errors[-1]}{hint}")
    with file:
        if not isinstance(file.get("RawData"), h5py.Group):
            raise RecoveryError(f"{str(src)!r} has no readable /RawData group: it is not a streamsave or PyMoDAQ "
                                "file, or it is damaged (truncated?)")
        yield file


def _read_once() -> h5py.h5p.PropFAID:
    """File access properties giving up at the first bad metadata checksum: an SWMR reader
    otherwise retries 100 times with growing sleeps (for a live writer), stalling for minutes
    on a damaged file. h5py does not wrap this setting: it is called in h5py's HDF5 library."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    set_property(fapl, "H5Pset_metadata_read_attempts", ctypes.c_uint, 1)
    return fapl


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).split("\n")[0]


# ---------------------------------------------------------------------------- attributes
def _text(value: Any) -> str | None:
    """An attribute as text: raw strings as they are, PyMoDAQ's envelope of a str unwrapped."""
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    literal = envelope(value)
    return literal if isinstance(literal, str) else value


def _shape_attr(node: h5py.HLObject) -> tuple[int, ...] | None:
    """The ``shape`` attribute as a tuple of non-negative ints, or ``None``."""
    shape = envelope(attr(node, "shape"))
    if isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape):
        return cast(tuple[int, ...], shape)
    return None


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    """Copy every readable attribute; one damaged by the crash is left out (recovery
    rewrites the ones it needs, such as ``shape``, from the data)."""
    for key in src.attrs:
        try:
            value = src.attrs[key]
        except OSError:
            continue
        try:
            dst.attrs.create(key, value, dtype=src.attrs.get_id(key).dtype)
        except (TypeError, ValueError):
            dst.attrs[key] = value


# ---------------------------------------------------------------------------- planning
def _plan(file: h5py.File, src: Path, unreadable: dict[str, None]) -> list[_Plan]:
    """Find every channel and decide how many of its frames are whole; a channel (or a
    group above it) that cannot be read is noted in ``unreadable`` and left out."""
    promised = _journal(file, src)
    plans = []
    for group in _channel_groups(file["RawData"], unreadable):
        try:
            plans.append(_plan_channel(group, promised))
        except _H5_ERRORS:
            unreadable[group.name] = None
    return plans


def _plan_channel(group: h5py.Group, promised: dict[str, int]) -> _Plan:
    data = next(group[k] for k in sorted(group) if _DATA_NAME.fullmatch(k) and isinstance(group[k], h5py.Dataset))
    time = _time_axis(group)
    columns = _columns(group)
    det = group.parent.parent
    name = f"{_text(det.attrs.get('TITLE')) or det.name}/{_text(group.attrs.get('TITLE')) or group.name}"
    plan = _Plan(group.name, data.name, time.name if time is not None else None, name, data.shape[0], 0, "",
                 tuple(c.name for c in columns))
    if data.name in promised:
        plan.kept, plan.limited_by = promised[data.name], "journal"
    else:
        shape = _shape_attr(data)
        plan.kept, plan.limited_by = (shape[0], "shape attribute") if shape else (0, "no record of durable frames")
    for ds, what in ((data, "data"), (time, "time axis"), *((c, _basename(c)) for c in columns)):
        if ds is not None:
            _limit(plan, ds.shape[0], f"{what} extent")
            _limit(plan, _first_missing_chunk(ds, plan.kept), "missing chunk")
            _limit(plan, _last_chunk_readable(ds, plan.kept), "damaged chunk")
    return plan


def _columns(group: h5py.Group) -> list[h5py.Dataset]:
    """The channel's per-frame columns: its frame numbers, then its metadata."""
    found = [group.get(FRAME_NUMBERS)]
    meta = group.get(METADATA_GROUP)
    if isinstance(meta, h5py.Group):
        found += [meta.get(k) for k in sorted(meta)]
    return [ds for ds in found if isinstance(ds, h5py.Dataset) and ds.ndim == 1]


def _basename(ds: h5py.Dataset) -> str:
    return str(ds.name).rsplit("/", 1)[-1]


def _limit(plan: _Plan, frames: int, reason: str) -> None:
    if frames < plan.kept:
        plan.kept, plan.limited_by = frames, reason


def _journal(file: h5py.File, src: Path) -> dict[str, int]:
    """``{data path: frames promised}`` from the journal's last row ({} without journal)."""
    group, frames = file.get(JOURNAL_GROUP), file.get(JOURNAL_FRAMES)
    if not isinstance(group, h5py.Group) or not isinstance(frames, h5py.Dataset):
        return {}
    try:
        columns = json.loads(group.attrs["channels"])
    except (KeyError, TypeError, ValueError):
        columns = None
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)
            and frames.ndim == 2 and frames.shape[1] == max(1, len(columns))):  # scans alone: one unused column
        raise RecoveryError(f"{str(src)!r}: the durability journal {JOURNAL_FRAMES} is malformed")
    rows = frames.shape[0]
    last = frames[rows - 1] if rows else np.zeros(len(columns), dtype=np.int64)
    return {path: max(0, int(n)) for path, n in zip(columns, last[:len(columns)], strict=True)}


def _channel_groups(raw: h5py.Group, unreadable: dict[str, None]) -> Iterator[h5py.Group]:
    """``/RawData/DetectorNNN/DataXD/CHnn`` groups that hold a data node."""
    for det in _groups(raw, unreadable):
        for dim in _groups(det, unreadable):
            for ch in _groups(dim, unreadable):
                if any(_DATA_NAME.fullmatch(k) and isinstance(ch.get(k), h5py.Dataset) for k in ch):
                    yield ch


def _groups(parent: h5py.Group, unreadable: dict[str, None] | None = None) -> Iterator[h5py.Group]:
    """The groups in ``parent``; one that cannot be opened (a writer killed while HDF5
    wrote it, without SWMR) is noted in ``unreadable`` and skipped."""
    for key in sorted(parent):
        try:
            node = parent.get(key)
        except _H5_ERRORS:
            if unreadable is None:
                raise
            unreadable[f"{parent.name.rstrip('/')}/{key}"] = None
            continue
        if isinstance(node, h5py.Group):
            yield node


def _time_axis(group: h5py.Group) -> h5py.Dataset | None:
    """The channel's time axis: a dataset labelled ``time`` in its group (streamsave),
    else in its detector's ``NavAxes`` group (PyMoDAQ)."""
    nav = group.parent.parent.get("NavAxes")
    for parent in (group, nav):
        if isinstance(parent, h5py.Group):
            for key in sorted(parent):
                node = parent.get(key)
                if isinstance(node, h5py.Dataset) and _text(node.attrs.get("label")) == "time" and node.ndim == 1:
                    return node
    return None


def _first_missing_chunk(ds: h5py.Dataset, frames: int) -> int:
    """The first frame of the first chunk below ``frames`` that was never stored, cannot
    be found or lies past the end of the file (else ``frames``)."""
    if ds.chunks is None:
        return frames
    # the bytes really there: HDF5's own figure is the end of the allocated space, which a
    # truncated file no longer reaches (an uncompressed chunk past the end reads as zeros)
    size = min(ds.file.id.get_filesize(), os.path.getsize(ds.file.filename))
    for offset in _chunk_offsets(ds, frames):
        try:
            info = ds.id.get_chunk_info_by_coord(offset)
            if info.byte_offset is None or info.byte_offset + info.size > size:
                return offset[0]
        except _H5_ERRORS:  # a damaged chunk index: keep what comes before
            return offset[0]
    return frames


def _last_chunk_readable(ds: h5py.Dataset, frames: int) -> int:
    """``frames``, or the first frame of the last chunk if it does not decode. Only a chunk
    stored partly filled is stored again; if the writer died after that, the file may refer
    to the old copy's space, reused since. Full chunks are written once."""
    if ds.chunks is None or frames == 0 or ds.id.get_create_plist().get_nfilters() == 0:
        return frames
    start: int = (frames - 1) // ds.chunks[0] * ds.chunks[0]
    try:
        ds[start:frames]
    except _H5_ERRORS:
        return start
    return frames


def _chunk_offsets(ds: h5py.Dataset, frames: int) -> Iterator[tuple[int, ...]]:
    shape = (frames, *ds.shape[1:])
    return itertools.product(*(range(0, n, c) for n, c in zip(shape, ds.chunks, strict=True)))


# ---------------------------------------------------------------------------- writing
class _UnreadableChunk(Exception):
    """A chunk the plan counted on does not read: its index was torn past it."""

    def __init__(self, dataset: str, frame: int) -> None:
        super().__init__(dataset, frame)
        self.dataset = dataset
        self.frame = frame


def _write_whole(file: h5py.File, tmp: Path, plans: list[_Plan], unreadable: dict[str, None]) -> None:
    """:func:`_write`, cutting a channel at a chunk that turns out not to read and
    starting again (a torn chunk index can find a chunk's address, then fail to give
    its size)."""
    while True:
        try:
            _write(file, tmp, plans, unreadable)
            return
        except _UnreadableChunk as bad:
            cut = [p for p in plans if bad.dataset in (p.data, p.time, *p.columns) and bad.frame < p.kept]
            if not cut:
                raise RuntimeError(f"cannot read the chunk of {bad.dataset} at frame {bad.frame}") from None
            for p in cut:
                _limit(p, bad.frame, "missing chunk")
            with suppress(OSError):
                tmp.unlink()


def _write(file: h5py.File, tmp: Path, plans: list[_Plan], unreadable: dict[str, None]) -> None:
    lengths: dict[str, int] = {}
    for p in plans:
        lengths[p.data] = p.kept
        if p.time is not None:  # a shared (PyMoDAQ) time axis keeps what its longest channel needs
            lengths[p.time] = max(lengths.get(p.time, 0), p.kept)
        for column in p.columns:
            lengths[column] = p.kept
    log = durable_log(file, unreadable)
    if log is not None:
        lengths[LOG_TEXT] = log[1]
        for path, _, _ in LOG_COLUMNS:
            lengths[path] = len(log[0])
    backend = H5pyBackend(tmp, "w", swmr=True)  # format bounds (v110, v110); never switched to SWMR
    try:
        out = backend.file
        _copy_attrs(file, out)
        _copy_group(file, out, lengths, {}, unreadable)
        if log is not None:
            rewrite_logger(out, log[0])
        writing = out.get(JOURNAL_WRITING)
        if isinstance(writing, h5py.Dataset) and writing.shape == (1,):
            writing[0] = 0  # the copy is closed: readers must not wait for a writer
        empty = [p.group for p in plans if p.kept == 0]
        if empty:
            _adopt(backend, out).drop_empty(backend, empty)
    except BaseException:
        backend.abandon()
        raise
    backend.close(fsync=True)


def _copy_group(src: h5py.Group, dst: h5py.Group, lengths: dict[str, int], seen: dict[Any, str],
                unreadable: dict[str, None]) -> None:
    """Copy the members of ``src`` into ``dst``; hard links stay hard links. A member
    that cannot be read (other than a channel's data or time axis, which the plan
    checked) is noted in ``unreadable`` and left out."""
    for key in src:
        path = f"{src.name.rstrip('/')}/{key}"
        link = src.get(key, getlink=True)
        if isinstance(link, h5py.SoftLink | h5py.ExternalLink):
            dst[key] = link
            continue
        try:
            node = src[key]
            # the object's address, to keep hard links; H5Gget_objinfo reads only the object
            # header (H5Oget_info also walks a dataset's chunk index, which a crash may have torn)
            addr = h5py.h5g.get_objinfo(src.id, key.encode()).objno
        except _H5_ERRORS:
            unreadable[path] = None
            continue
        if addr in seen:
            dst[key] = dst.file[seen[addr]]
            continue
        if isinstance(node, h5py.Group):
            child = dst.create_group(key)
            _copy_attrs(node, child)
            _copy_group(node, child, lengths, seen, unreadable)
        elif node.name in lengths:
            _copy_trimmed(node, dst, key, lengths[node.name])
        else:
            try:
                src.file.copy(node, dst, name=key)
            except _H5_ERRORS:
                unreadable[path] = None
                continue
        seen[addr] = f"{dst.name.rstrip('/')}/{key}"


def _copy_trimmed(src: h5py.Dataset, dst: h5py.Group, key: str, frames: int) -> None:
    """Copy the first ``frames`` rows, chunk by chunk as stored, and fix the length attributes."""
    maxshape = tuple(h5py.h5s.UNLIMITED if m is None else m for m in src.maxshape)
    space = h5py.h5s.create_simple((frames, *src.shape[1:]), maxshape)
    out = h5py.Dataset(h5py.h5d.create(dst.id, key.encode(), src.id.get_type(), space,
                                       dcpl=src.id.get_create_plist()))
    if src.chunks is None:
        out[...] = src[:frames]
    else:
        for offset in _chunk_offsets(src, frames):
            try:
                mask, raw = src.id.read_direct_chunk(offset)
            except _H5_ERRORS:
                raise _UnreadableChunk(src.name, offset[0]) from None
            out.id.write_direct_chunk(offset, raw, mask)
    _copy_attrs(src, out)
    if "shape" in src.attrs or _DATA_NAME.fullmatch(key):
        out.attrs["shape"] = encode((frames, *src.shape[1:]))
    if "size" in src.attrs:
        out.attrs.update(Layout.time_attrs(frames))


# ---------------------------------------------------------------------------- removing empty channels
class _AdoptedLayout(Layout):
    """A :class:`Layout` describing a tree that already exists, so its
    :meth:`~Layout.drop_empty` can tidy it; creates nothing."""

    def __init__(self, backend: H5pyBackend, records: dict[str, _Detector]) -> None:
        self._backend = backend
        self._compression = ""
        self._dim_groups = set()
        self._records = records


def _adopt(backend: H5pyBackend, out: h5py.File) -> Layout:
    records: dict[str, _Detector] = {}
    for det in _groups(out["RawData"]):
        attrs = {k: cast(AttrValue, v) for k, v in det.attrs.items() if k != "default"}
        datasets = [(k, DatasetSpec(shape=ds.shape, dtype=ds.dtype, data=ds[()], attrs=dict(ds.attrs)))
                    for k in sorted(det) if isinstance(ds := det[k], h5py.Dataset)]
        record = _Detector(attrs, datasets)
        for dim in _groups(det):
            if _DIM_NAME.fullmatch(dim.name.rsplit("/", 1)[1]):
                record.dims[dim.name.rsplit("/", 1)[1]] = {
                    ch.name.rsplit("/", 1)[1]: _text(ch.attrs.get("TITLE")) or "" for ch in _groups(dim)}
        records[det.name] = record
    return _AdoptedLayout(backend, records)
