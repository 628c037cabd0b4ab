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
from ._errors import ReadError
from ._spec import Axis

if TYPE_CHECKING:
    from ._reader import Run

__all__ = ("ChannelReader", "FrameBlock", "Timestamps")

#: the most bytes one read may return (a guard against absurd shapes in hostile files)
MAX_READ_BYTES: Final = 4 * 2**30


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
        self._time = time
        self._scalar = scalar
        self._journal_column = journal_column
        #: one :class:`~streamsave.Axis` per frame dimension the file describes
        self.axes = axes
        #: the detector's settings, as a dict (parsed without evaluating anything)
        self.settings = dict(settings)
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
        return () if self._scalar else tuple(self._data.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(len(self), *frame_shape)``."""
        return (self._length, *self.frame_shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dtype: np.dtype[Any] = np.dtype(self._data.dtype)
        return dtype

    def __len__(self) -> int:
        return self._length

    @property
    def units(self) -> str:
        return text(attr(self._data, "units")) or ""

    @property
    def label(self) -> str:
        return text(attr(self._data, "label")) or self.name

    @property
    def compression(self) -> str | None:
        """How the chunks are compressed (``"blosc2-lz4-5-byte"``, ``"gzip"``, ...), or ``None``."""
        recorded = text(attr(self._data, "compression"))
        if recorded and recorded != "none":
            return recorded
        filters = self._data.id.get_create_plist().get_nfilters() if self._data.chunks else 0
        if not filters:
            return None
        return str(self._data.compression or "hdf5 filter")

    @property
    def chunk_shape(self) -> tuple[int, ...] | None:
        """The HDF5 chunk shape in the channel's terms, ``(frames, *frame_shape)`` (a
        scalar channel's stored row of one left out, as in :attr:`shape`), or ``None``
        if the dataset is not chunked."""
        chunks = self._data.chunks
        if chunks is None:
            return None
        return (int(chunks[0]),) if self._scalar else tuple(int(c) for c in chunks)

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
        n = int(self._data.shape[0]) if self._data.ndim else 0
        if self._time is not None and self._time.ndim == 1:
            n = min(n, int(self._time.shape[0])) if self._run._is_streamsave else n
        durable = self._run._durable(self._journal_column)
        if durable is not None:
            n = min(n, durable)
        self._length = max(0, n)

    def __getitem__(self, key: int | slice | Any) -> npt.NDArray[Any]:
        if isinstance(key, tuple):
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
        lo, hi, step, reverse, count = _span(key, self._length)
        frame_bytes = self.dtype.itemsize * math.prod(self._data.shape[1:])
        if count * frame_bytes > MAX_READ_BYTES:
            raise ReadError(f"{self.full_name!r}: reading {count} frames would take "
                            f"{count * frame_bytes / 2**30:.1f} GiB; read fewer at a time")
        try:
            out = self._data[lo:hi:step] if count else np.empty((0, *self._data.shape[1:]), self.dtype)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise ReadError(f"{self.full_name!r}: frames {lo}:{hi} cannot be read: {_reason(exc)}") from None
        if reverse:
            out = np.ascontiguousarray(out[::-1])
        result: npt.NDArray[Any] = out.reshape((count,)) if self._scalar else out
        return result

    def _read_times(self, key: int | slice) -> Any:
        if isinstance(key, int | np.integer):
            index = int(key) + self._length if key < 0 else int(key)
            if not 0 <= index < self._length:
                raise IndexError(f"timestamp {key} is out of range for {self.full_name!r} ({self._length} frames)")
            return float(self._read_times(slice(index, index + 1))[0])
        if not isinstance(key, slice):
            raise TypeError(f"{self.full_name!r}: index timestamps with an int or a slice, got {type(key).__name__}")
        lo, hi, step, reverse, count = _span(key, self._length)
        if self._time is None or not count:
            return np.full(count, np.nan)
        if count * 8 > MAX_READ_BYTES:
            raise ReadError(f"{self.full_name!r}: reading {count} timestamps at once is refused; read fewer")
        try:
            times = np.asarray(self._time[lo:hi:step], dtype=np.float64)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
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
        data = self._read(slice(first, last + 1))[picked - first]
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
        position = 0 if start is None else int(start)
        idle = 0.0
        while True:
            block, writing = await anyio.to_thread.run_sync(self._next_block, position,
                                                            limiter=self._run._limiter)
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
        frame_bytes = max(1, self.dtype.itemsize * math.prod(self._data.shape[1:]))
        stop = min(self._length, position + max(1, (64 * 2**20) // frame_bytes))  # at most ~64 MiB a block
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


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def axis_from_node(node: h5py.Dataset, size: int) -> Axis | None:
    """An :class:`Axis` from an axis dataset (label, units, values), or ``None``."""
    label = text(attr(node, "label")) or text(attr(node, "TITLE")) or node.name.rsplit("/", 1)[-1]
    units = text(attr(node, "units")) or ""
    try:
        values = np.asarray(node[()]) if node.ndim == 1 and node.shape[0] == size else None
    except (OSError, ValueError, RuntimeError):
        values = None
    try:
        if values is not None and values.dtype.kind in "iuf" and values.size:
            return Axis(label or "axis", units=units, values=values)
        offset, scale = envelope(attr(node, "offset")), envelope(attr(node, "scaling"))
        return Axis(label or "axis", units=units,
                    offset=float(offset) if isinstance(offset, int | float) else 0.0,
                    scale=float(scale) if isinstance(scale, int | float) and scale else 1.0)
    except (ValueError, TypeError):
        return None
