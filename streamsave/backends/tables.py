"""A local HDF5 file through PyTables (``backend="tables"``; ``pip install 'streamsave[tables]'``).

The tree and attributes are the h5py backend's, in PyTables' own conventions: every
node carries PyTables' ``CLASS``/``VERSION``/``TITLE`` (and ``EXTDIM`` on enlargeable
arrays, as PyTables' integer), enlargeable datasets are ``EArray``, fixed ones
``CArray``, the log a ``VLArray``. Text attributes are stored as PyTables stores
them, fixed-length UTF-8 strings (h5py reads them as ``bytes``; PyTables and
PyMoDAQ as ``str``), and lists of names as arrays of such strings.

Chunks are stored with PyTables' direct chunking (``Leaf.write_chunk``), already
compressed by the engine: the datasets declare PyTables' Blosc2 filter (id 32026,
``Filters(complib="blosc2:<codec>")``), which decodes the engine's blosc2 frames as
hdf5plugin's filter does, so the files read in plain h5py + hdf5plugin, in PyTables
and in PyMoDAQ. A partly filled chunk is stored with its filter skipped
(``filter_mask=1``), as with h5py. PyTables' HDF5 (a library of its own, beside
h5py's) remembers such a chunk with mask 0 as h5py's does, so in the writer's own
process PyTables cannot read it back, and a dataset shrunk then would silently keep
its length; the backend works around the second (see :func:`_forget_chunk_info`),
and nothing in the writer's process reads data back through PyTables.

PyTables has no SWMR: a file is a plain file while it is written (no reader in
another process until it is closed), and a killed writer leaves every frame of the
last flush readable. The file is created by h5py with the plain-file settings of
:mod:`streamsave.backends.h5py` (format bounds, no reuse of freed space, large chunk
index nodes), then opened by PyTables, which keeps them.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tables

from .._spec import Compression
from ._base import AttrValue, Backend, DatasetSpec
from .h5py import _create_plain, _sync_directory, _Writeback, fsync_file

__all__ = ("TablesBackend",)

#: attributes PyTables manages itself on every node it creates (its values are kept)
_SYSTEM_ATTRS = frozenset({"CLASS", "VERSION", "EXTDIM"})
#: blosc2 codec ids (as in hdf5plugin's Blosc2 options) -> codec name
_CODEC_IDS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 4: "zlib", 5: "zstd"}
_SHUFFLE_IDS = {0: "none", 1: "byte", 2: "bit"}


class TablesBackend(Backend):
    """A local HDF5 file written with PyTables.

    :param path: the file.
    :param mode: ``"w-"`` create, failing if the file exists; ``"w"`` create or
        truncate; ``"r+"`` open an existing file for update.
    :param swmr: must be false: PyTables has no SWMR mode.
    :raises OSError: the file cannot be created or opened.
    """

    name = "tables"
    supports_direct_chunk_write = True
    supports_swmr = False
    extra = "tables"

    def __init__(self, path: os.PathLike[str] | str, mode: Literal["w-", "w", "r+"] = "w-", *,
                 swmr: bool = False) -> None:
        if swmr:
            raise ValueError("PyTables has no SWMR mode: open the file with swmr=False")
        self.path = path
        if mode != "r+":
            _create_plain(path, mode).close()
            _sync_directory(path)
        try:
            self._file: tables.File | None = tables.open_file(os.fspath(path), "r+")
        except tables.HDF5ExtError as exc:
            raise OSError(errno.EIO, f"PyTables cannot open the file: {exc}", os.fspath(path)) from None
        if mode != "r+":
            root = self._file.root._v_attrs
            root["CLASS"] = "GROUP"
            root["VERSION"] = "1.0"
            root["PYTABLES_FORMAT_VERSION"] = tables.file.format_version
        self._nodes: dict[str, Any] = {}
        self._fd = self._file.fileno()
        self._writeback = _Writeback(self._fd)

    @property
    def file(self) -> tables.File:
        if self._file is None:
            raise ValueError(f"{self.path!s} is closed")
        return self._file

    def _node(self, path: str) -> Any:
        node = self._nodes.get(path)
        if node is None:
            node = self._nodes[path] = self.file.get_node(path)
        return node

    def create_group(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        parent, name = _split(path)
        group = self.file.create_group(parent, name, title=_text(attrs.get("TITLE", "")), createparents=True)
        _set_attrs(group, attrs)

    def create_dataset(self, path: str, spec: DatasetSpec) -> None:
        parent, name = _split(path)
        title = _text(spec.attrs.get("TITLE", ""))
        filters = _filters(spec)
        common: dict[str, Any] = {"title": title, "filters": filters, "createparents": True, "track_times": False}
        if spec.dtype == "vlen-uint8":
            node: Any = self.file.create_vlarray(parent, name, atom=tables.UInt8Atom(), chunkshape=spec.chunks,
                                                 **common)
        elif spec.maxshape is not None:
            atom = tables.Atom.from_dtype(np.dtype(spec.dtype))
            node = self.file.create_earray(parent, name, atom=atom, shape=(0, *spec.shape[1:]),
                                           chunkshape=spec.chunks, **common)
            if spec.data is not None and len(spec.data):
                node.append(spec.data)
            elif spec.shape[0]:
                node.truncate(spec.shape[0])
        else:
            data = spec.data if spec.data is not None else np.zeros(spec.shape, dtype=spec.dtype)
            node = self.file.create_carray(parent, name, obj=np.ascontiguousarray(data),
                                           chunkshape=spec.chunks or (data.shape or None), **common)
        _set_attrs(node, spec.attrs)
        if spec.maxshape is not None:
            self._nodes[path] = node

    def set_attrs(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        _set_attrs(self._node(path) if path != "/" else self.file.root, attrs)

    def delete(self, path: str) -> None:
        self._nodes = {k: v for k, v in self._nodes.items() if not (k == path or k.startswith(path + "/"))}
        self.file.remove_node(path, recursive=True)

    def resize(self, path: str, length: int) -> None:
        node = self._node(path)
        if isinstance(node, tables.VLArray) and length >= node.nrows:
            return  # a VLArray grows by appending its rows (write_rows)
        if length < node.nrows and node.chunkshape is not None:
            _forget_chunk_info(node)
        node.truncate(length)

    def write_chunk(self, path: str, offset: Sequence[int], data: bytes | memoryview, filter_mask: int = 0) -> None:
        self._node(path).write_chunk(tuple(offset), data, filter_mask)
        self._writeback.wrote(len(data) if isinstance(data, bytes) else data.nbytes)

    def write_rows(self, path: str, start: int, values: npt.NDArray[Any]) -> None:
        node = self._node(path)
        if isinstance(node, tables.VLArray):  # rows of any length: replaced by truncating and appending
            if node.nrows > start:
                node.truncate(start)
            for row in values:
                node.append(row)
            return
        node[start:start + len(values)] = values

    def start_swmr(self) -> None:
        raise NotImplementedError("PyTables has no SWMR mode")

    def flush(self, *, sync: bool = False) -> None:
        self.file.flush()
        _check_still_there(self._fd, self.path)
        if sync:
            getattr(os, "fdatasync", os.fsync)(self._fd)

    def abandon(self) -> None:
        """Fence the file (its descriptor pointed at ``/dev/null``, so the metadata the
        close writes goes nowhere and the file stays as the last flush left it), then
        close it. See :meth:`streamsave.backends.h5py.H5pyBackend.abandon`."""
        file, self._file = self._file, None
        self._nodes.clear()
        if file is None:
            return
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, self._fd)
            finally:
                os.close(null)
        except OSError:
            pass
        with contextlib.suppress(Exception):
            file.close()

    def close(self, *, fsync: bool = False) -> None:
        file, self._file = self._file, None
        self._nodes.clear()
        if file is None:
            return
        file.close()
        if fsync:
            fsync_file(self.path)


def _forget_chunk_info(node: Any) -> None:
    """Work around HDF5 remembering a directly written chunk with filter mask 0 (as
    :func:`streamsave.backends.h5py._forget_chunk_info`), before shrinking a dataset.

    Shrinking rewrites the chunk the new end falls in; with a raw chunk (filter
    skipped) just written, HDF5 then decodes it with the filter, fails, and PyTables
    ignores the failure: the dataset silently keeps its old length. PyTables refuses
    to look up a chunk outside the dataset, so the dataset is first grown by one chunk
    and a row of that chunk (never stored) is read: the lookup replaces the entry.
    Only shrinking needs it (an aborted close giving back frames it will not store).
    """
    rows = node.nrows
    node.truncate(rows + node.chunkshape[0])
    node[rows + node.chunkshape[0] - 1]


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent or "/", name


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _filters(spec: DatasetSpec) -> tables.Filters | None:
    """PyTables' filters for the Blosc2 filter the dataset declares (``spec.filter``,
    chunks the engine compressed) or for ``spec.compression`` (rows PyTables compresses).

    The level declared is at least 1 (PyTables declares no filter at all for level 0);
    it does not matter for decoding, each chunk's frame says how it was compressed.
    """
    compression = spec.compression
    if compression is None and spec.filter is not None:
        filter_id, opts = spec.filter
        if filter_id != 32026 or len(opts) < 7:
            raise ValueError(f"the tables backend only declares the Blosc2 filter (32026), not {filter_id}")
        compression = Compression(codec=_CODEC_IDS[opts[6]], level=opts[4], shuffle=_SHUFFLE_IDS[opts[5]])
    if compression is None:
        return None
    return tables.Filters(complib=f"blosc2:{compression.codec}", complevel=max(1, compression.level),
                          shuffle=compression.shuffle == "byte", bitshuffle=compression.shuffle == "bit")


def _attr_value(value: AttrValue) -> Any:
    """What PyTables stores faithfully: arrays of text become arrays of UTF-8 strings
    (PyTables would pickle an object array)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "OU":
        return np.array([str(v).encode() for v in value.ravel()], dtype=bytes).reshape(value.shape)
    return value


def _set_attrs(node: Any, attrs: Mapping[str, AttrValue]) -> None:
    node_attrs = node._v_attrs
    present = set(node_attrs._v_attrnamessys)
    for key, value in attrs.items():
        if key in _SYSTEM_ATTRS and (key in present or key == "EXTDIM"):
            # PyTables' own CLASS, VERSION and EXTDIM stay as PyTables needs them; a node
            # of a kind without EXTDIM (a VLArray such as the Logger) gets none
            continue
        node_attrs[key] = _attr_value(value)


def _check_still_there(fd: int, path: os.PathLike[str] | str) -> None:
    """Raise if the file was deleted or replaced under us (writes to an unlinked file
    still succeed on POSIX systems, and would be lost at close unnoticed)."""
    mine = os.fstat(fd)
    try:
        there = os.stat(path)
    except FileNotFoundError:
        there = None
    if mine.st_nlink == 0 or there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
        raise FileNotFoundError(errno.ENOENT, "the file was deleted or replaced while being written; "
                                "what was written since is lost", str(path))
