"""The storage interface the writer talks to.

A backend is plain synchronous code that knows HDF5 (or an HDF5-like service) and
nothing of the engine: no threads, no event loop, no queues. The engine calls every
method from one writer thread, one call at a time. Paths are absolute HDF5 paths
(``"/RawData/Detector000"``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .._spec import Compression

__all__ = ("ALL_CODECS", "ALL_SHUFFLES", "AttrValue", "Backend", "DatasetSpec")

#: every codec a :class:`~streamsave.Compression` may name
ALL_CODECS: Final = frozenset({"blosclz", "lz4", "lz4hc", "zlib", "zstd"})
#: every shuffle a :class:`~streamsave.Compression` may name
ALL_SHUFFLES: Final = frozenset({"none", "byte", "bit"})

#: What an attribute may hold once the layout has encoded it.
AttrValue: TypeAlias = str | int | float | bytes | np.generic | npt.NDArray[Any]


class DatasetSpec:
    """Everything needed to create one dataset.

    :param shape: initial shape; ``maxshape`` is ``None`` along enlargeable axes.
    :param dtype: a numpy dtype, or the string ``"vlen-uint8"`` for rows of bytes.
    :param chunks: chunk shape, or ``None`` for contiguous storage.
    :param filter: ``(filter id, options)`` of the filter that decodes directly
        written chunks, or ``None``. Set only when the engine will store chunks it
        compressed itself (:meth:`Backend.write_chunk`); a backend declares it on the
        dataset as it is.
    :param compression: how the dataset's values are to be compressed, or ``None``
        for uncompressed. A backend without direct chunk write (the engine then hands
        it plain rows) creates the dataset with its own filter for it; a backend with
        direct chunk write uses ``filter`` and may ignore this.
    :param data: initial content (for fixed-size datasets such as axes).
    :param fillvalue: what elements never written read as (HDF5's fill value;
        ``None``: the library's default, zero).
    """

    __slots__ = ("attrs", "chunks", "compression", "data", "dtype", "fillvalue", "filter", "maxshape", "shape")

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | str,
        maxshape: tuple[int | None, ...] | None = None,
        chunks: tuple[int, ...] | None = None,
        filter: tuple[int, tuple[int, ...]] | None = None,
        compression: Compression | None = None,
        data: npt.NDArray[Any] | None = None,
        attrs: Mapping[str, AttrValue] | None = None,
        fillvalue: Any = None,
    ) -> None:
        self.fillvalue = fillvalue
        self.shape = shape
        self.dtype = dtype
        self.maxshape = maxshape
        self.chunks = chunks
        self.filter = filter
        self.compression = compression
        self.data = data
        self.attrs = dict(attrs or {})


class Backend(ABC):
    """One open file. Create it with the subclass's constructor, then build the tree,
    optionally :meth:`start_swmr`, write, :meth:`flush` and :meth:`close`.

    The constructor is ``Backend(path, mode, *, swmr, **backend_options)``: ``mode``
    is ``"w-"`` (create, fail if it exists), ``"w"`` (create or truncate) or ``"r+"``
    (reopen for update); ``swmr`` says the file will switch to SWMR mode;
    ``backend_options`` are what the user passed as ``backend_options=`` (a server's
    endpoint and credentials, for instance), which a backend never shows in a repr,
    a log line or an error message.

    The class attributes below are the backend's capabilities; the engine reads them
    before it opens anything and refuses, with a :class:`~streamsave.ConfigError`
    naming what the backend can do, what a backend cannot do.
    """

    #: name recorded in the file's ``backend`` attributes
    name: ClassVar[str]
    #: the backend can store pre-encoded chunks with :meth:`write_chunk`; without it the
    #: engine never compresses: it hands whole frames to :meth:`write_rows`, and the
    #: backend compresses as the dataset's ``compression`` says
    supports_direct_chunk_write: ClassVar[bool]
    #: the backend can switch the file to single-writer/multiple-reader mode
    supports_swmr: ClassVar[bool]
    #: the :class:`~streamsave.Compression` codecs it can store (uncompressed always works)
    codecs: ClassVar[frozenset[str]] = ALL_CODECS
    #: the :class:`~streamsave.Compression` shuffles it can store with them
    shuffles: ClassVar[frozenset[str]] = ALL_SHUFFLES
    #: the largest single write it accepts, in bytes (``None``: no limit)
    max_request_bytes: ClassVar[int | None] = None
    #: files are local HDF5 files, which :func:`~streamsave.open_reader` opens with h5py;
    #: ``False`` for a service, which the reader opens with :meth:`open_readonly`
    local: ClassVar[bool] = True
    #: the pip extra that installs what the backend needs (named in errors), or ``""``
    extra: ClassVar[str] = ""

    path: os.PathLike[str] | str

    @classmethod
    def open_readonly(cls, path: str, **backend_options: Any) -> Any:
        """Open ``path`` read-only for :func:`~streamsave.open_reader` and return an
        object with h5py's ``File`` interface (groups, datasets, ``attrs``, ``close``).

        Only called for backends whose files are not local (:attr:`local` is false);
        local files are opened by the reader itself with h5py.

        :raises ~streamsave.ReadError: the file cannot be opened.
        """
        raise NotImplementedError(f"backend {cls.name!r} has local files: open them with h5py")

    @abstractmethod
    def create_group(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        """Create a group with attributes."""

    @abstractmethod
    def create_dataset(self, path: str, spec: DatasetSpec) -> None:
        """Create a dataset as ``spec`` describes, with its attributes."""

    @abstractmethod
    def set_attrs(self, path: str, attrs: Mapping[str, AttrValue]) -> None:
        """Create or replace attributes of an existing node."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove a node (used for channels that never received a frame)."""

    @abstractmethod
    def resize(self, path: str, length: int) -> None:
        """Set the length of an enlargeable dataset's first axis."""

    @abstractmethod
    def write_chunk(self, path: str, offset: Sequence[int], data: bytes | memoryview, filter_mask: int = 0) -> None:
        """Store the already-encoded chunk starting at element ``offset``.

        ``filter_mask`` says which of the dataset's filters the chunk skipped (bit 0:
        the first); readers decode each chunk by its own mask. The engine stores a
        chunk it will store again (a partly filled one) with its filter skipped, at
        full raw size, so each later version replaces it in place.
        """

    def read_chunk(self, path: str, offset: Sequence[int]) -> bytes:
        """The stored bytes of the chunk starting at ``offset``, as written (the engine
        reads back only chunks it stored raw). Backends that cannot read raise
        ``NotImplementedError``: then scan channels keep every chunk still missing
        points in memory."""
        raise NotImplementedError(f"backend {self.name!r} cannot read chunks back")

    @abstractmethod
    def write_rows(self, path: str, start: int, values: npt.NDArray[Any]) -> None:
        """Write ``values`` at rows ``start:start+len(values)`` (within the extent).

        ``values`` may be a view of a buffer the engine reuses once the call returns
        (as may ``data`` of :meth:`write_chunk`): a backend that keeps it, to send it
        later, copies it.
        """

    @abstractmethod
    def start_swmr(self) -> None:
        """Switch to SWMR mode: from now on only resize, write and flush are allowed."""

    @abstractmethod
    def flush(self, *, sync: bool = False) -> None:
        """Push everything written so far to the operating system; with ``sync``,
        also wait until it is on the device (survives a power cut)."""

    def abandon(self) -> None:
        """Stop every further write to the file after a failure and release it.

        The file must stay exactly as the last successful :meth:`flush` left it: a
        library closing a file after a failed write may write metadata describing
        data that never reached the disk. The default closes normally; backends that
        can do better override it.
        """
        self.close()

    @abstractmethod
    def close(self, *, fsync: bool = False) -> None:
        """Close the file; with ``fsync``, also wait until its bytes are on the device.
        Must be safe to call after a failed write, and more than once."""
