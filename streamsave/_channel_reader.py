"""One channel of a recorded file, read lazily: frames, timestamps, axes, settings.

Frames are read on demand with h5py (and hdf5plugin's decompressors), so indexing
``channel[i]`` costs the chunks that hold frame ``i``, never the whole channel.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import anyio.to_thread
import h5py
import numpy as np
import numpy.typing as npt

from ._attrs import attr, envelope, text
from ._column_reader import Column, find_columns, gaps
from ._errors import ReadError
from ._spec import Axis

if TYPE_CHECKING:
    from ._reader import Run

__all__ = ("ChannelReader", "FrameBlock", "Timestamps")

#: the most bytes one read may return (a guard against absurd shapes in hostile files)
MAX_READ_BYTES: Final = 4 * 2**30
#: the most chunks one read may touch (each costs a lookup, even where nothing is stored)
MAX_READ_CHUNKS: Final = 1 << 18
#: the largest chunk a read decompresses (HDF5 allocates a whole chunk to decode one)
MAX_CHUNK_BYTES: Final = 1 << 30
#: the most bytes one request to a service (HSDS through h5pyd) reads
SERVICE_READ_BYTES: Final = 32 * 2**20
#: an axis dataset holding more values than this is described by offset and scale only
MAX_AXIS_VALUES: Final = 1 << 24


class FrameBlock(NamedTuple):
    """Consecutive frames of one channel: ``data[i]`` is frame ``start + i``."""

    #: index of the first frame
    start: int
    #: the frames, shape ``(n, *frame_shape)``
    data: npt.NDArray[Any]
    #: their timestamps (epoch seconds), shape ``(n,)``; NaN where the file has none
    timestamps: npt.NDArray[np.float64]


class Timestamps:
    """A channel's per-frame timestamps (epoch seconds), read lazily like the frames:
    ``channel.timestamps[a:b]``, ``len()``, ``np.asarray()``."""

    def __init__(self, channel: ChannelReader) -> None:
        self._channel = channel

    def __len__(self) -> int:
        return len(self._channel)

    def __getitem__(self, key: int | slice) -> Any:
        return self._channel._read_times(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = self._channel._read_times(slice(None))
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"<Timestamps of {self._channel.full_name!r}: {len(self)} values>"


class ChannelReader:
    """A channel of a file opened with :func:`streamsave.open_reader`.

    ``len(channel)`` frames are readable: all of them in a closed file; in a file
    being written, those the writer's last flush made durable (call :meth:`refresh`
    to see more). Indexing returns numpy arrays: ``channel[i]`` one frame,
    ``channel[a:b]`` frames ``a`` to ``b - 1``.
    """

    def __init__(self, run: Run, *, key: str, detector: str, name: str, data: Any,
                 time: h5py.Dataset | None, axes: tuple[Axis, ...], settings: Mapping[str, Any],
                 scalar: bool, journal_column: int | None) -> None:
        self._run = run
        #: ``"Detector/channel"`` (the writer's naming), or the dataset's path for other files
        self.full_name = key
        self.detector = detector
        self.name = name
        self._data = data
        self._time = time if time is not None and time.ndim == 1 else None
        self._scalar = scalar
        self._journal_column = journal_column
        #: one :class:`~streamsave.Axis` per frame dimension the file describes
        self.axes = axes
        #: the detector's settings, as a dict (parsed without evaluating anything)
        self.settings = dict(settings)
        # what does not change while a writer appends, read once (a damaged node fails here,
        # and the channel is not listed, rather than on every look)
        self._dtype: np.dtype[Any] = _plain(data.dtype)
        self._stored_frame: tuple[int, ...] = tuple(int(n) for n in data.shape[1:])
        self._frame_bytes = self._dtype.itemsize * math.prod(self._stored_frame)
        chunks = data.chunks
        self._chunks: tuple[int, ...] | None = None if chunks is None else tuple(int(c) for c in chunks)
        self._units = text(attr(data, "units")) or ""
        self._label = text(attr(data, "label")) or name
        self._compression = _compression(data)
        self._numbers, self._number_span, self._metadata = find_columns(data)
        self._length = 0
        self._update_length()

    def __repr__(self) -> str:
        return f"<ChannelReader {self.full_name!r} {len(self)} x {self.frame_shape} {self.dtype}>"

    # ------------------------------------------------------------------ description
    @property
    def dataset_path(self) -> str:
        """The frames' dataset in the file."""
        return str(self._data.name)

    @property
    def time_axis_path(self) -> str | None:
        """The timestamps' dataset in the file, or ``None`` if it has none."""
        return None if self._time is None else str(self._time.name)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The shape of one frame (``()`` for scalars)."""
        return () if self._scalar else self._stored_frame

    @property
    def shape(self) -> tuple[int, ...]:
        """``(len(self), *frame_shape)``."""
        return (self._length, *self.frame_shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    def __len__(self) -> int:
        return self._length

    @property
    def units(self) -> str:
        return self._units

    @property
    def label(self) -> str:
        return self._label

    @property
    def compression(self) -> str | None:
        """How the chunks are compressed (``"blosc2-lz4-5-byte"``, ``"gzip"``, ...), or ``None``."""
        return self._compression

    @property
    def chunk_shape(self) -> tuple[int, ...] | None:
        """The HDF5 chunk shape in the channel's terms, ``(frames, *frame_shape)`` (a
        scalar channel's stored row of one left out, as in :attr:`shape`), or ``None``
        if the dataset is not chunked."""
        if self._chunks is None:
            return None
        return self._chunks[:1] if self._scalar else self._chunks

    @property
    def frame_numbers(self) -> Column | None:
        """The frame number of each frame (``channel.frame_numbers[a:b]``), or ``None``
        if the channel has none (see :meth:`missing_frames`)."""
        return None if self._numbers is None else Column(self, self._numbers, "frame_number")

    @property
    def metadata(self) -> dict[str, Column]:
        """The per-frame metadata by name (``channel.metadata["exposure"][:]``); empty if none."""
        return {name: Column(self, node, name) for name, node in self._metadata.items()}

    def missing_frames(self) -> list[range]:
        """The frame numbers missing from the channel, as ranges: the frames the
        detector skipped or the saver dropped, between its first and its last frame,
        and before and after them those the saver dropped (known once the writer has
        closed the file: it records the first and last numbers it assigned). Empty if
        none are missing.

        :raises ~streamsave.ReadError: the channel has no frame numbers.
        """
        if self._numbers is None:
            raise ReadError(f"{self.full_name!r} has no frame numbers (declare the channel with frame_numbers=True)")
        numbers = Column(self, self._numbers, "frame_number")[:]
        if numbers.size > 1 and (np.diff(numbers) <= 0).any():
            raise ReadError(f"{self.full_name!r}: its frame numbers do not increase, so missing ones cannot be told")
        first, last = (None, None) if self._run.writing else self._number_span
        return gaps(numbers, last, first)

    @property
    def frames_durable(self) -> int:
        """Frames the writer's last flush made durable (all of them in a closed file)."""
        return self._length

    # ------------------------------------------------------------------ reading
    def refresh(self) -> int:
        """See what a live writer has flushed since; returns ``len(self)``."""
        self._run._refresh()
        return self._length

    def _update_length(self) -> None:
        try:
            n = int(self._data.shape[0])
            if self._time is not None:
                n = min(n, int(self._time.shape[0]))
        except (OSError, ValueError, RuntimeError, TypeError, IndexError):
            return  # a refresh that failed: keep what was seen
        durable = self._run._durable(self._journal_column)
        if durable is not None:
            n = min(n, durable)
        self._length = max(0, n)

    def __getitem__(self, key: int | slice | Any) -> npt.NDArray[Any]:
        if isinstance(key, tuple | bool | np.bool_):
            raise TypeError(f"{self.full_name!r}: index frames with an int or a slice, got {key!r}")
        if isinstance(key, int | np.integer):
            index = int(key) + self._length if key < 0 else int(key)
            if not 0 <= index < self._length:
                raise IndexError(f"frame {key} is out of range for {self.full_name!r} ({self._length} frames)")
            one: npt.NDArray[Any] = self._read(slice(index, index + 1))[0]
            return one
        if isinstance(key, slice):
            return self._read(key)
        raise TypeError(f"{self.full_name!r}: index frames with an int or a slice, got {type(key).__name__}")

    def _read(self, key: slice) -> npt.NDArray[Any]:
        self._run._check_open(repr(self.full_name))
        lo, hi, step, reverse, count = _span(key, self._length)
        self._check_read(lo, hi, step, count)
        try:
            out = _rows(self._data, lo, hi, step, count) if count else np.empty((0, *self._stored_frame), self.dtype)
        except Exception as exc:  # h5py and the decompressors raise many kinds on damaged data
            raise ReadError(f"{self.full_name!r}: frames {lo}:{hi} cannot be read: {_reason(exc)}") from None
        if out.shape != (count, *self._stored_frame):
            raise ReadError(f"{self.full_name!r}: frames {lo}:{hi} read as shape {out.shape}, expected "
                            f"{(count, *self._stored_frame)}")
        if out.dtype.metadata:  # h5py's enum types: their integers, without the names
            out = out.view(self._dtype)
        if reverse:
            out = np.ascontiguousarray(out[::-1])
        result: npt.NDArray[Any] = out.reshape((count,)) if self._scalar else out
        return result

    def _check_read(self, lo: int, hi: int, step: int, count: int) -> None:
        """Refuse a read that would allocate more than :data:`MAX_READ_BYTES`, touch more
        than :data:`MAX_READ_CHUNKS` chunks, or decompress chunks larger than
        :data:`MAX_CHUNK_BYTES` (guards against absurd shapes in hostile files)."""
        if count * self._frame_bytes > MAX_READ_BYTES:
            raise ReadError(f"{self.full_name!r}: reading {count} frames would take "
                            f"{count * self._frame_bytes / 2**30:.1f} GiB; read fewer at a time")
        if self._chunks is None or not count:
            return
        chunk_bytes = self._dtype.itemsize * math.prod(self._chunks)
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise ReadError(f"{self.full_name!r}: its chunks of {self._chunks} hold {chunk_bytes / 2**20:.0f} MiB "
                            f"each, more than the {MAX_CHUNK_BYTES >> 20} MiB this reader decompresses")
        touched = _chunks_touched(self._chunks, self._stored_frame, lo, hi, count)
        if touched > MAX_READ_CHUNKS:
            raise ReadError(f"{self.full_name!r}: reading {count} frames would touch {touched:,} chunks "
                            f"of {self._chunks}; read fewer at a time")

    def _read_times(self, key: int | slice) -> Any:
        if isinstance(key, bool | np.bool_):
            raise TypeError(f"{self.full_name!r}: index timestamps with an int or a slice, got {key!r}")
        if isinstance(key, int | np.integer):
            index = int(key) + self._length if key < 0 else int(key)
            if not 0 <= index < self._length:
                raise IndexError(f"timestamp {key} is out of range for {self.full_name!r} ({self._length} frames)")
            return float(self._read_times(slice(index, index + 1))[0])
        if not isinstance(key, slice):
            raise TypeError(f"{self.full_name!r}: index timestamps with an int or a slice, got {type(key).__name__}")
        self._run._check_open(repr(self.full_name))
        lo, hi, step, reverse, count = _span(key, self._length)
        if count * 8 > MAX_READ_BYTES:
            raise ReadError(f"{self.full_name!r}: reading {count} timestamps would take "
                            f"{count * 8 / 2**30:.1f} GiB; read fewer at a time")
        if self._time is None or not count:
            return np.full(count, np.nan)
        chunks = self._time.chunks
        if chunks is not None and _chunks_touched(tuple(chunks), (), lo, hi, count) > MAX_READ_CHUNKS:
            raise ReadError(f"{self.full_name!r}: reading {count} timestamps would touch more than "
                            f"{MAX_READ_CHUNKS:,} chunks of {tuple(chunks)}; read fewer at a time")
        try:
            times = np.asarray(_rows(self._time, lo, hi, step, count), dtype=np.float64)
        except Exception as exc:  # as for frames
            raise ReadError(f"{self.full_name!r}: timestamps {lo}:{hi} cannot be read: {_reason(exc)}") from None
        if times.shape != (count,):
            raise ReadError(f"{self.full_name!r}: its time axis {self.time_axis_path!r} has shape "
                            f"{self._time.shape}, expected one value per frame")
        return np.ascontiguousarray(times[::-1]) if reverse else times

    @property
    def timestamps(self) -> Timestamps:
        """The per-frame timestamps, epoch seconds (NaN for files without them)."""
        return Timestamps(self)

    def between(self, t0: float, t1: float) -> FrameBlock:
        """The frames whose timestamps ``t`` satisfy ``t0 <= t < t1``, in file order.

        Timestamps need not be sorted. The block's ``start`` is the first such frame;
        if the frames are not consecutive, ``data`` holds only those (in order).

        :raises ~streamsave.ReadError: the channel has no timestamps.
        """
        if self._time is None:
            raise ReadError(f"{self.full_name!r} has no timestamps")
        times = self._read_times(slice(None))
        picked = np.flatnonzero((times >= t0) & (times < t1))
        if not picked.size:
            return FrameBlock(0, np.empty((0, *self.frame_shape), self.dtype), np.empty(0))
        first, last = int(picked[0]), int(picked[-1])
        if last - first + 1 == picked.size:
            return FrameBlock(first, self._read(slice(first, last + 1)), times[first:last + 1])
        if picked.size * self._frame_bytes > MAX_READ_BYTES:
            raise ReadError(f"{self.full_name!r}: {picked.size} frames fall between {t0} and {t1}, "
                            f"{picked.size * self._frame_bytes / 2**30:.1f} GiB; ask for a shorter time")
        if (last - first + 1) * self._frame_bytes <= max(64 * 2**20, 2 * picked.size * self._frame_bytes):
            data = self._read(slice(first, last + 1))[picked - first]
        else:  # a few frames far apart (timestamps out of order): each run of them on its own
            runs = np.split(picked, np.flatnonzero(np.diff(picked) != 1) + 1)
            data = np.concatenate([self._read(slice(int(r[0]), int(r[-1]) + 1)) for r in runs])
        return FrameBlock(first, data, times[picked])

    async def follow(self, poll_interval: float = 0.1, *, start: int | None = None,
                     idle_timeout: float | None = None) -> AsyncIterator[FrameBlock]:
        """Yield the frames a writer flushes, as they become durable, until it closes
        the file.

        Starts at frame ``start`` (default: the first frame not yet read, i.e. 0) and
        yields each new range once, in order. HDF5 reads run in a worker thread, so
        the event loop never waits on the file. Ends after the writer closed the file
        cleanly, or after ``idle_timeout`` seconds without new frames (a writer that
        was killed never closes the file).
        """
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or poll_interval <= 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if idle_timeout is not None and (isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float)
                                         or not idle_timeout >= 0):
            raise ValueError(f"idle_timeout must be None or a number of seconds >= 0, got {idle_timeout!r}")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0):
            raise ValueError(f"start must be None or a frame index >= 0, got {start!r}")
        position = 0 if start is None else int(start)
        idle = 0.0
        while True:
            block, writing = await anyio.to_thread.run_sync(self._next_block, position)
            if block is not None:
                position = block.start + len(block.data)
                idle = 0.0
                yield block
                continue
            if not writing:
                return
            if idle_timeout is not None and idle >= idle_timeout:
                return
            await anyio.sleep(poll_interval)
            idle += poll_interval

    def _next_block(self, position: int) -> tuple[FrameBlock | None, bool]:
        """(new frames from ``position``, or None; whether a writer still has the file)."""
        writing = self._run._refresh()
        if self._length <= position:
            return None, writing
        stop = min(self._length, position + max(1, (64 * 2**20) // max(1, self._frame_bytes)))  # ~64 MiB a block
        return FrameBlock(position, self._read(slice(position, stop)), self._read_times(slice(position, stop))), True

    # ------------------------------------------------------------------ export and plots
    def export(self, path: Any, *, frames: slice | None = None) -> Any:
        """Write frames to ``path``, the format chosen by its suffix: ``.npy``, ``.csv``
        / ``.txt`` (one row per frame: timestamp then values; 0D and 1D frames),
        ``.tif`` / ``.tiff`` (a stack of 2D frames, needs ``tifffile``), ``.h5``.
        Returns the path written.

        :raises ~streamsave.ConfigError: an unknown suffix, or frames the format cannot hold.
        """
        from ._export import export

        return export(self, path, frames=frames)

    def plot(self, path: Any, *, frame: int | None = 0, mean: bool = False) -> Any:
        """Save a PNG (matplotlib) of one frame (``frame``), or of the mean of all
        frames (``mean=True``), labelled with the file's axes, label and units; 0D
        channels plot their values against time. Returns the path written."""
        from ._plot import plot

        return plot(self, path, frame=frame, mean=mean)


def _span(key: slice, length: int) -> tuple[int, int, int, bool, int]:
    """``key`` over ``length`` frames as an ascending h5py selection ``lo:hi:step``
    (h5py refuses negative steps), whether to reverse it, and how many frames it holds."""
    picked = range(*key.indices(length))
    count = len(picked)
    if not count:
        return 0, 0, 1, False, 0
    if picked.step > 0:
        return picked[0], picked[-1] + 1, picked.step, False, count
    return picked[-1], picked[0] + 1, -picked.step, True, count


def _plain(dtype: Any) -> np.dtype[Any]:
    """A numpy dtype without h5py's metadata (an enum's names): numpy cannot save those."""
    plain: np.dtype[Any] = np.dtype(dtype)
    return np.dtype(plain.str) if plain.metadata else plain


def _chunks_touched(chunks: tuple[int, ...], frame: tuple[int, ...], lo: int, hi: int, count: int) -> int:
    """How many chunks a read of ``count`` frames from ``lo`` to ``hi`` touches."""
    rows = min(count, (hi - 1) // chunks[0] - lo // chunks[0] + 1)
    return rows * math.prod(-(-n // c) for n, c in zip(frame, chunks[1:], strict=False))


def _rows(dset: Any, lo: int, hi: int, step: int, count: int) -> npt.NDArray[Any]:
    """Rows ``lo:hi:step`` of a dataset. HDF5 walks every chunk between the first and
    the last row of a strided selection, stored or not, so rows further apart than a
    chunk are read one at a time (each costs one chunk)."""
    if not isinstance(getattr(dset, "dataset", dset), h5py.Dataset):
        return _rows_in_requests(dset, lo, hi, step, count)
    chunks = getattr(dset, "chunks", None)
    if step == 1 or not chunks or step < chunks[0]:
        rows: npt.NDArray[Any] = np.asarray(dset[lo:hi:step])
        return rows
    first = np.asarray(dset[lo:lo + 1])
    out = np.empty((count, *first.shape[1:]), dtype=first.dtype)
    out[0] = first[0]
    for j, i in enumerate(range(lo + step, hi, step), start=1):
        out[j] = dset[i:i + 1][0]
    return out


def _rows_in_requests(dset: Any, lo: int, hi: int, step: int, count: int) -> npt.NDArray[Any]:
    """Rows ``lo:hi:step`` of a service's dataset (h5pyd), read in requests of at most
    :data:`SERVICE_READ_BYTES` (HSDS refuses larger ones: 100 MiB by default)."""
    row_bytes = max(1, int(dset.dtype.itemsize) * math.prod(int(n) for n in dset.shape[1:]))
    per_request = max(1, SERVICE_READ_BYTES // row_bytes)
    if count <= per_request:
        rows: npt.NDArray[Any] = np.asarray(dset[lo:hi:step])
        return rows
    out: npt.NDArray[Any] | None = None
    for j in range(0, count, per_request):
        start = lo + j * step
        part = np.asarray(dset[start:min(hi, start + per_request * step):step])
        if out is None:
            out = np.empty((count, *part.shape[1:]), dtype=part.dtype)
        out[j:j + len(part)] = part
    assert out is not None
    return out


def _compression(data: Any) -> str | None:
    """What streamsave recorded about the chunks' compression, else the HDF5 filters."""
    recorded = text(attr(data, "compression"))
    if recorded and recorded != "none":
        return recorded
    data = getattr(data, "dataset", data)  # a snapshot seen as one frame: its dataset
    try:
        if data.chunks is None or not data.id.get_create_plist().get_nfilters():
            return None
    except (OSError, ValueError, RuntimeError, TypeError, AttributeError):
        return None
    return str(data.compression or "hdf5 filter")


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def axis_from_node(node: h5py.Dataset, size: int) -> Axis | None:
    """An :class:`Axis` from an axis dataset (label, units, values), or ``None``."""
    label = text(attr(node, "label")) or text(attr(node, "TITLE")) or node.name.rsplit("/", 1)[-1]
    units = text(attr(node, "units")) or ""
    try:
        fits = node.ndim == 1 and node.shape[0] == size <= MAX_AXIS_VALUES and node.dtype.kind in "iuf"
        values = np.asarray(node[()]) if fits else None
    except Exception:  # a damaged axis: described without its values
        values = None
    try:
        if values is not None and values.size:
            return Axis(label or "axis", units=units, values=values)
        offset, scale = envelope(attr(node, "offset")), envelope(attr(node, "scaling"))
        return Axis(label or "axis", units=units,
                    offset=float(offset) if isinstance(offset, int | float) else 0.0,
                    scale=float(scale) if isinstance(scale, int | float) and scale else 1.0)
    except (ValueError, TypeError):
        return None
