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
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ("AttrValue", "Backend", "DatasetSpec")

#: What an attribute may hold once the layout has encoded it.
AttrValue: TypeAlias = str | int | float | bytes | np.generic | npt.NDArray[Any]


class DatasetSpec:
    """Everything needed to create one dataset.

    :param shape: initial shape; ``maxshape`` is ``None`` along enlargeable axes.
    :param dtype: a numpy dtype, or the string ``"vlen-uint8"`` for rows of bytes.
    :param chunks: chunk shape, or ``None`` for contiguous storage.
    :param filter: ``(filter id, options)`` of the filter that decodes directly
        written chunks, or ``None``.
    :param data: initial content (for fixed-size datasets such as axes).
    """

    __slots__ = ("attrs", "chunks", "data", "dtype", "filter", "maxshape", "shape")

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        dtype: np.dtype[Any] | str,
        maxshape: tuple[int | None, ...] | None = None,
        chunks: tuple[int, ...] | None = None,
        filter: tuple[int, tuple[int, ...]] | None = None,
        data: npt.NDArray[Any] | None = None,
        attrs: Mapping[str, AttrValue] | None = None,
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self.maxshape = maxshape
        self.chunks = chunks
        self.filter = filter
        self.data = data
        self.attrs = dict(attrs or {})


class Backend(ABC):
    """One open file. Create it with the subclass's constructor, then build the tree,
    optionally :meth:`start_swmr`, write, :meth:`flush` and :meth:`close`."""

    #: name recorded in the file's ``backend`` attributes
    name: ClassVar[str]
    #: the backend can store pre-encoded chunks with :meth:`write_chunk`
    supports_direct_chunk_write: ClassVar[bool]
    #: the backend can switch the file to single-writer/multiple-reader mode
    supports_swmr: ClassVar[bool]

    path: os.PathLike[str] | str

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

    @abstractmethod
    def write_rows(self, path: str, start: int, values: npt.NDArray[Any]) -> None:
        """Write ``values`` at rows ``start:start+len(values)`` (within the extent)."""

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
