"""Channels: where producers push frames, one bounded queue each.

A channel's queue sits between producers (tasks on the event loop, or other
threads) and the saver's writer thread. Its capacity, ``queue_size`` frames,
bounds every frame the saver holds for the channel: those waiting in the queue
*and* those the writer is assembling, compressing or keeping for a chunk not yet
full. A frame gives its room back only once it is stored (or dropped). What happens
when the queue is full is the channel's :class:`~streamsave.Overflow` policy.

Frames of more than 512 bytes pass by reference: after pushing one, do not modify
it (push a copy, or open the channel with ``copy=True``, if your driver reuses its
buffers). Smaller frames (scalars, short spectra) are copied at once into batches
of up to 1024 frames, which keeps a queue of millions of scalars compact (8 bytes
a float64 value and 8 for its timestamp, instead of about 125 bytes of Python
objects).

Everything a channel counts is guarded by its lock; the writer thread reads and
changes it only through the ``_writer_*`` methods (see ``streamsave._control``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, SupportsIndex

import anyio
import anyio.lowlevel
import numpy as np
import numpy.typing as npt

from ._columns import Columns
from ._errors import FrameMismatchError, QueueFull, TimestampError
from ._events import Backpressure, FramesDropped
from ._layout import ChannelPaths, stored_shape
from ._spec import Axis, Overflow
from ._stats import ChannelStatistics

if TYPE_CHECKING:
    from ._control import Control

__all__ = ("SMALL_FRAME_BYTES", "STAGE_FRAMES", "Channel", "Entry")

#: an entry in a queue: (frame or block, timestamp(s), number of frames, columns). A single
#: frame has a float timestamp; a block (``n`` frames along axis 0) an array of them. The
#: columns are ``None`` on a channel without per-frame columns, else one value (one frame)
#: or array (a block) per column, in ``Columns.dtypes`` order (see ``streamsave._columns``).
Entry = tuple[Any, Any, int, Any]

#: frames this small are copied into batches as they are pushed
SMALL_FRAME_BYTES: Final = 512
#: frames per batch of small frames
STAGE_FRAMES: Final = 1024
#: ``await push`` lets other tasks run (and cancellation in) at least this often, s
YIELD_INTERVAL: Final = 0.001

_FULL: Final = object()  # _offer's answer to a foreign thread: wait on the condition


class Channel:
    """A stream of frames of one fixed shape and dtype, stored as one dataset.

    Create channels with :meth:`Detector.add_channel`; do not instantiate directly.
    """

    def __init__(
        self,
        control: Control,
        *,
        detector: str,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        units: str,
        label: str,
        axes: Sequence[Axis],
        chunk_frames: int,
        tile_rows: int,
        queue_size: int,
        overflow: Overflow,
        copy: bool,
        monotonic: bool,
        paths: ChannelPaths,
        columns: Columns | None = None,
    ) -> None:
        self._control = control
        self.detector = detector
        self.name = name
        #: the shape of one frame, ``()`` for scalars
        self.shape = shape
        #: the shape of one frame in the file (scalars are stored as ``(1,)``)
        self.stored_shape = stored_shape(shape)
        self.dtype = dtype
        self.units = units
        self.label = label
        self.axes = tuple(axes)
        #: frames per chunk in the file
        self.chunk_frames = chunk_frames
        #: the dataset's chunk shape: ``chunk_frames`` whole frames, or for a frame larger
        #: than ``chunk_bytes``, one frame cut into tiles of ``tile_rows`` rows
        self.chunk_shape = (chunk_frames, *self.stored_shape) if not tile_rows else \
            (1, tile_rows, *self.stored_shape[1:])
        self.queue_size = queue_size
        self.overflow = overflow
        self.copy = copy
        #: user timestamps must not go backwards (``TimestampError`` otherwise)
        self.monotonic = monotonic
        self.frame_nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        #: where the channel's nodes are in the file
        self.paths = paths
        self._columns = columns if columns is not None else Columns(
            f"channel {detector + '/' + name!r}", numbers=False, metadata=())
        #: no per-frame columns: pushes skip their checks
        self._plain = not self._columns.dtypes
        self._numbered = self._columns.numbers
        # scalar channels accept their own numpy scalar type, and floats when lossless, as they are
        self._scalar_type: type | None = dtype.type if not shape else None
        self._takes_float = not shape and dtype.kind == "f" and dtype.itemsize >= 8
        self._float_max = float(np.finfo(dtype).max) if dtype.kind in "fc" else math.inf
        self._small = self.frame_nbytes <= SMALL_FRAME_BYTES and chunk_frames > 1
        self._stage_size = max(1, min(chunk_frames, STAGE_FRAMES, queue_size))
        self._wake_at = max(1, min(chunk_frames, queue_size // 2))
        self._high_mark = max(1, int(queue_size * control.config.high_water))
        self._yield_at = 0.0
        # ---- guarded by _lock: producers' side
        self._lock = threading.Lock()
        self._space_cond = threading.Condition(self._lock)
        self._entries: deque[Entry] = deque()
        self._stage_values: npt.NDArray[Any] | None = None
        self._stage_times: npt.NDArray[np.float64] | None = None
        # scalars are batched in lists (an append is cheaper than a numpy item set), turned
        # into arrays when the batch is queued: at most STAGE_FRAMES values stay as objects
        self._stage_scalars = not shape and self._small
        self._stage_list: list[Any] = []
        self._stage_list_times: list[float] = []
        self._stage_n = 0
        self._stage_extras: list[tuple[Any, ...]] = []  # the open batch's columns, one tuple a frame
        self._last_number = -1  # the last frame number given or assigned (accepted or dropped)
        self._first_number = -1  # the first one
        self._queued = 0  # frames in _entries and the stage, not yet taken by the writer
        self._left = 0  # frames that left the queue: taken by the writer, or dropped from it
        self._held = 0  # frames accepted and neither stored nor dropped: what counts against queue_size
        self._pushed = 0
        self._dropped = 0  # by the overflow policy
        self._rejected = 0
        self._discarded = 0  # accepted, never written: failed writer or aborted close
        self._high_water = 0
        self._first_push: float | None = None
        self._last_auto = -math.inf  # the last timestamp the library made
        self._last_stored = -math.inf  # the last timestamp queued, made or given (monotonic channels)
        self._refusal: Callable[[], BaseException] | None = None
        self._space: anyio.Event | None = None  # set when room appears (loop-thread waiters)
        self._thread_waiters = 0  # threads blocked in push_from_thread
        self._pressed = False  # a Backpressure(active=True) event is outstanding
        self._reported_dropped = 0
        self._last_drop_report = 0.0
        # ---- guarded by _lock: the writer's side, changed only through _writer_* methods
        self._written = 0
        self._durable = 0
        self._bytes_stored = 0
        self._last_time: float | None = None
        self._last_write: float | None = None
        self._durable_timestamp: float | None = None
        self._durable_at: float | None = None
        self._done_at: float | None = None

    def __repr__(self) -> str:
        return (f"<Channel {self.detector}/{self.name} shape={self.shape} dtype={self.dtype} "
                f"chunk_frames={self.chunk_frames}>")

    @property
    def full_name(self) -> str:
        """``"<detector>/<channel>"``, the key used in statistics and events."""
        return f"{self.detector}/{self.name}"

    @property
    def file_path(self) -> str:
        """The HDF5 file the channel is written to (an absolute path)."""
        return str(self._control.config.path)

    @property
    def dataset_path(self) -> str:
        """The frames' dataset, shape ``(N, *stored_shape)``."""
        return self.paths.data

    @property
    def time_axis_path(self) -> str:
        """The per-frame timestamps' dataset, shape ``(N,)``, epoch seconds."""
        return self.paths.time

    @property
    def frame_numbers(self) -> bool:
        """Whether the channel stores a frame number per frame (see ``add_channel``)."""
        return self._numbered

    @property
    def frame_numbers_path(self) -> str | None:
        """The frame numbers' dataset, shape ``(N,)`` int64, or ``None``."""
        return self.paths.numbers

    @property
    def metadata(self) -> dict[str, np.dtype[Any]]:
        """The per-frame metadata the channel declares: name -> dtype."""
        return dict(self._columns.metadata)

    @property
    def metadata_paths(self) -> dict[str, str]:
        """Each metadata value's dataset, shape ``(N,)``: name -> path."""
        return dict(zip(self._columns.names, self.paths.metadata, strict=True))

    # ------------------------------------------------------------------ validation
    def _check_frame(self, frame: Any) -> Any:
        kind = type(frame)
        if kind is self._scalar_type or (kind is float and self._takes_float):
            return frame  # the fast path of scalar channels: nothing to convert
        if kind is np.ndarray:
            if frame.shape != self.shape:
                raise FrameMismatchError(
                    f"channel {self.full_name!r}: frame has shape {frame.shape}, expected {self.shape}")
            if frame.dtype != self.dtype:
                frame = self._cast(frame)
            elif self.copy and not self._small:
                frame = frame.copy()
            return frame
        return self._check_other(frame)

    def _check_other(self, frame: Any) -> Any:
        if isinstance(frame, np.ndarray | np.generic):
            return self._check_frame(np.asarray(frame))
        if not self.shape and isinstance(frame, bool | int | float | complex):
            return self._check_number(frame)
        raise FrameMismatchError(
            f"channel {self.full_name!r}: expected a numpy array of shape {self.shape} and dtype "
            f"{self.dtype}{' or a number' if not self.shape else ''}, got {type(frame).__name__}")

    def _check_number(self, value: bool | complex) -> Any:
        """A Python number for a scalar channel: accepted when the dtype holds it
        (bools in bool channels, integers in range, floats within the float type's
        range, complex in complex channels)."""
        kind = self.dtype.kind
        if isinstance(value, bool):
            ok = kind == "b"
        elif isinstance(value, int):
            if kind in "iu":
                info = np.iinfo(self.dtype)
                if not info.min <= value <= info.max:
                    raise FrameMismatchError(f"channel {self.full_name!r}: value {value!r} does not fit in "
                                             f"{self.dtype} ({info.min}..{info.max})")
                return value
            ok = kind in "fc" and abs(value) <= self._float_max
        elif isinstance(value, float):
            ok = kind in "fc" and (abs(value) <= self._float_max or not math.isfinite(value))
        else:
            ok = kind == "c" and all(abs(p) <= self._float_max or not math.isfinite(p)
                                     for p in (value.real, value.imag))
        if not ok:
            raise FrameMismatchError(
                f"channel {self.full_name!r}: value {value!r} ({type(value).__name__}) does not fit in the "
                f"channel's dtype {self.dtype}")
        return self.dtype.type(value)

    def _cast(self, frame: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if frame.dtype.kind in "OSUVMm" or not np.can_cast(frame.dtype, self.dtype, "safe"):
            raise FrameMismatchError(
                f"channel {self.full_name!r}: frame has dtype {frame.dtype}, expected {self.dtype} "
                f"(or a dtype that converts to it without loss)")
        return frame.astype(self.dtype)

    def _check_block(self, frames: Any) -> npt.NDArray[Any]:
        block = np.asarray(frames)
        if block.ndim != len(self.shape) + 1 or block.shape[1:] != self.shape:
            raise FrameMismatchError(
                f"channel {self.full_name!r}: push_many needs an array of shape (n, *{self.shape}), "
                f"got shape {block.shape}")
        if block.dtype != self.dtype:
            block = self._cast(block)
        elif self.copy or (block is frames and not block.flags.c_contiguous):
            block = block.copy()
        return block

    def _check_timestamp(self, timestamp: float | None) -> float | None:
        if timestamp is None:
            return None
        try:
            ts = float(timestamp)
        except (TypeError, ValueError):
            raise TimestampError(
                f"channel {self.full_name!r}: timestamp must be seconds as a number, got {timestamp!r}") from None
        if not math.isfinite(ts):
            raise TimestampError(f"channel {self.full_name!r}: timestamp must be finite, got {timestamp!r}")
        return ts

    def _check_timestamps(self, timestamps: npt.ArrayLike | None, n: int) -> npt.NDArray[np.float64] | None:
        if timestamps is None:
            return None
        try:
            ts = np.array(timestamps, dtype=np.float64)
        except (TypeError, ValueError):
            raise TimestampError(
                f"channel {self.full_name!r}: timestamps must be numbers (seconds), got {timestamps!r}") from None
        if ts.shape != (n,):
            raise TimestampError(
                f"channel {self.full_name!r}: got {ts.shape} timestamps for {n} frames; expected shape ({n},)")
        if not np.isfinite(ts).all():
            raise TimestampError(f"channel {self.full_name!r}: timestamps must all be finite")
        if self.monotonic and n > 1 and (np.diff(ts) < 0).any():
            i = int(np.argmax(np.diff(ts) < 0))
            raise TimestampError(f"channel {self.full_name!r} requires increasing timestamps, but timestamp "
                                 f"{i + 1} of the block ({ts[i + 1]!r}) is earlier than the one before ({ts[i]!r})")
        return ts

    # ------------------------------------------------------------------ pushing
    async def push(self, frame: Any, *, timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                   metadata: Mapping[str, Any] | None = None) -> None:
        """Queue one frame for writing.

        Returns as soon as the frame is queued. When the queue is full, what happens
        depends on the channel's overflow policy: ``block`` waits for room (the
        writer gives room back as it stores frames), ``drop_oldest``/``drop_newest``
        drop and count frames, ``error`` raises :class:`~streamsave.QueueFull`.

        ``push`` lets other tasks run about every millisecond even when the queue has
        room (an anyio checkpoint), so a tight push loop stays cancellable. A push
        cancelled before it returns has not queued its frame and is not counted.

        The frame is kept by reference (unless the channel copies, or the frame is
        small): do not modify it after pushing.

        :param frame: an array of the channel's shape and dtype (or of a dtype that
            converts to it without loss); for scalar channels also a Python number
            that the dtype holds (``True`` for bool, ``293.1`` for float32, ...).
        :param timestamp: acquisition time in seconds since the Unix epoch (default:
            the time the frame is queued; such timestamps never go backwards within
            a channel, even if the system clock is stepped back). Given timestamps
            are stored as given, unless the channel was declared ``monotonic=True``.
        :param frame_number: the frame's number (e.g. the detector's hardware counter),
            for a channel declared with ``frame_numbers=True``: an integer >= 0 larger
            than the previous frame's. Default: the previous number plus one.
        :param metadata: the frame's values of every metadata name the channel declared
            (``{"exposure": 0.01, "temperature": 293.2}``), each converted to its dtype.
        :raises ~streamsave.FrameMismatchError: wrong shape, dtype or type.
        :raises ~streamsave.TimestampError: timestamp not a finite number, or earlier
            than the previous one on a ``monotonic`` channel.
        :raises ~streamsave.FrameNumberError: a frame number that is not an integer >= 0
            larger than the previous one, or given to a channel without frame numbers.
        :raises ~streamsave.MetadataError: metadata with an unknown or missing name, or
            a value that does not convert to its declared dtype.
        :raises ~streamsave.QueueFull: queue full with ``overflow="error"``.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        :raises ~streamsave.StorageError: the writer failed (the same error again).
        """
        data = self._check_frame(frame)
        ts = self._check_timestamp(timestamp)
        extra = None if self._plain and frame_number is None and metadata is None else \
            self._check_extra(frame_number, metadata)
        now = time.monotonic()
        if now >= self._yield_at:
            self._yield_at = now + YIELD_INTERVAL
            await anyio.lowlevel.checkpoint()
        while (wait := self._offer(data, ts, 1, False, self.overflow, extra)) is not None:
            await wait.wait()  # type: ignore[attr-defined]

    def push_nowait(self, frame: Any, *, timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """Queue one frame without ever waiting (safe from any thread).

        Like :meth:`push`, but a full queue raises :class:`~streamsave.QueueFull`
        under the ``block`` and ``error`` policies (the drop policies drop and count
        as usual).
        """
        data = self._check_frame(frame)
        ts = self._check_timestamp(timestamp)
        extra = None if self._plain and frame_number is None and metadata is None else \
            self._check_extra(frame_number, metadata)
        policy = Overflow.ERROR if self.overflow is Overflow.BLOCK else self.overflow
        self._offer(data, ts, 1, False, policy, extra)

    async def push_many(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                        frame_numbers: npt.ArrayLike | None = None,
                        metadata: Mapping[str, npt.ArrayLike] | None = None) -> None:
        """Queue a block of frames (shape ``(n, *shape)``) in one call: all of them or none.

        Much cheaper per frame than :meth:`push` for small frames (scalars, spectra).
        Under ``block`` it waits until the whole block fits; cancelled while waiting,
        it has queued nothing. ``drop_oldest`` drops the oldest queued frames to make
        room, ``drop_newest`` drops the whole block when it does not fit, ``error``
        raises. A block larger than the whole queue fits only an empty queue (the
        block is queued by reference: it costs no memory beyond the array itself).

        :param timestamps: ``n`` acquisition times (default: the time the block is
            queued, for every frame).
        :param frame_numbers: ``n`` increasing frame numbers (default: following the
            previous frame's number), see :meth:`push`.
        :param metadata: ``n`` values of every declared metadata name
            (``{"exposure": [0.01, 0.01, ...], ...}``).
        :raises ~streamsave.FrameMismatchError: wrong shape, dtype or type.
        :raises ~streamsave.TimestampError: wrong number of timestamps, or not finite.
        :raises ~streamsave.FrameNumberError: see :meth:`push`; also numbers that do not
            increase within the block.
        :raises ~streamsave.MetadataError: see :meth:`push`; also not ``n`` values of a name.
        :raises ~streamsave.QueueFull: the block does not fit now with ``overflow="error"``.
        """
        block = self._check_block(frames)
        n = block.shape[0]
        ts = self._check_timestamps(timestamps, n)
        extra = None if self._plain and frame_numbers is None and metadata is None else \
            self._check_extra_block(frame_numbers, metadata, n)
        now = time.monotonic()
        if now >= self._yield_at:
            self._yield_at = now + YIELD_INTERVAL
            await anyio.lowlevel.checkpoint()
        if n:
            while (wait := self._offer(block, ts, n, True, self.overflow, extra)) is not None:
                await wait.wait()  # type: ignore[attr-defined]

    def push_from_thread(self, frame: Any, *, timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                         metadata: Mapping[str, Any] | None = None, timeout: float | None = None) -> None:
        """Queue one frame from any thread that is not the event loop's (e.g. a camera
        SDK callback). Same validation and overflow policies as :meth:`push`; under
        ``block`` it blocks the calling thread (never the event loop) until there is
        room, or raises :class:`~streamsave.QueueFull` after ``timeout`` seconds.

        :raises RuntimeError: when called on the event loop's thread (use ``await push()``).
        """
        data = self._check_frame(frame)
        ts = self._check_timestamp(timestamp)
        extra = None if self._plain and frame_number is None and metadata is None else \
            self._check_extra(frame_number, metadata)
        self._push_from_thread(data, ts, 1, False, timeout, extra)

    def push_many_from_thread(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                              frame_numbers: npt.ArrayLike | None = None,
                              metadata: Mapping[str, npt.ArrayLike] | None = None,
                              timeout: float | None = None) -> None:
        """:meth:`push_many` for foreign threads (all or nothing, the same errors);
        see :meth:`push_from_thread`."""
        block = self._check_block(frames)
        n = block.shape[0]
        ts = self._check_timestamps(timestamps, n)
        extra = None if self._plain and frame_numbers is None and metadata is None else \
            self._check_extra_block(frame_numbers, metadata, n)
        if n:
            self._push_from_thread(block, ts, n, True, timeout, extra)

    def _check_extra(self, frame_number: Any, metadata: Any) -> tuple[Any, tuple[Any, ...]]:
        """One frame's (given frame number or None, metadata values), checked."""
        columns = self._columns
        return columns.check_number(frame_number), columns.check_metadata(metadata)

    def _check_extra_block(self, frame_numbers: Any, metadata: Any, n: int) -> tuple[Any, tuple[Any, ...]]:
        columns = self._columns
        return columns.check_numbers(frame_numbers, n), columns.check_metadata_block(metadata, n)

    def _push_from_thread(self, data: Any, ts: Any, n: int, is_block: bool, timeout: float | None,
                          extra: Any = None) -> None:
        if threading.get_ident() == self._control.loop_thread:
            raise RuntimeError(f"channel {self.full_name!r}: push_from_thread() would block the event loop; "
                               "use 'await channel.push()' on the loop's thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._offer(data, ts, n, is_block, self.overflow, extra) is not None:
            with self._space_cond:
                self._thread_waiters += 1
                try:
                    while self._held + n > self.queue_size and self._held and self._refusal is None:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            self._rejected += n
                            raise QueueFull(f"channel {self.full_name!r}: no room in the queue after {timeout} s")
                        self._space_cond.wait(remaining)
                finally:
                    self._thread_waiters -= 1

    def _offer(self, data: Any, ts: Any, n: int, is_block: bool, policy: Overflow, extra: Any = None) -> object | None:
        """Try to queue ``n`` frames. ``None`` means done (queued, or dropped by policy);
        anything else means 'wait for room, then call again': on the loop thread it is
        the :class:`anyio.Event` set when the writer gives room back. ``extra`` is
        ``(given frame number(s) or None, metadata values)`` on a channel with columns."""
        first = False
        cols = None
        with self._lock:
            if self._refusal is not None:
                raise self._refusal()
            if self.monotonic:
                self._check_order_locked(ts, is_block)
            if extra is not None:  # refused before anything happens to the queue, like a timestamp
                number = self._number_locked(extra[0], n, is_block)
            fill = self._held
            if fill + n > self.queue_size and fill:  # a block larger than the queue fits an empty queue
                if policy is Overflow.BLOCK:
                    self._report_locked(fill)
                    self._control.ring()  # whatever the fill, the writer must come and make room
                    if threading.get_ident() != self._control.loop_thread:
                        return _FULL
                    if self._space is None:
                        self._space = anyio.Event()
                    return self._space
                if policy is Overflow.ERROR:
                    self._rejected += n
                    raise QueueFull(f"channel {self.full_name!r}: queue full ({fill} of {self.queue_size} "
                                    f"frames); the writer is behind")
                if policy is Overflow.DROP_OLDEST:
                    self._evict_locked(fill + n - self.queue_size)
                if self._held + n > self.queue_size and self._held:  # drop_newest, or nothing left to evict
                    if extra is not None and self._numbered:  # the dropped frames keep their numbers
                        self._commit_number_locked(number, is_block)
                    self._pushed += n
                    self._dropped += n
                    self._report_locked(self._held)
                    return None
            ts = self._stamp_locked(ts, n, is_block)
            if extra is not None:
                if self._numbered:
                    self._commit_number_locked(number, is_block)
                    cols = (number, *extra[1])
                else:
                    cols = extra[1]
            if self._stage_scalars and not is_block:
                self._stage_list.append(data)
                self._stage_list_times.append(ts)
                if cols is not None:
                    self._stage_extras.append(cols)
                self._stage_n += 1
                if self._stage_n == self._stage_size:
                    self._close_stage_locked()
            elif self._small and not is_block:
                if cols is not None:
                    self._stage_extras.append(cols)
                self._stage_locked(data, ts)
            else:
                if self._stage_n:
                    self._close_stage_locked()
                self._entries.append((data, ts, n, cols))
            self._pushed += n
            self._held += n
            self._queued += n
            fill = self._held
            if fill > self._high_water:
                self._high_water = fill
            if (fill >= self._high_mark and not self._pressed) or self._dropped != self._reported_dropped:
                self._report_locked(fill)
            if self._first_push is None:
                self._first_push = time.monotonic()
                first = True
            queued = self._queued
        if first:
            self._control.freeze()
        elif queued >= self._wake_at:
            self._control.ring()
        return None

    def _check_order_locked(self, ts: Any, is_block: bool) -> None:
        """On a ``monotonic`` channel, refuse a given timestamp earlier than the last one
        queued (before anything else happens to the queue: a refused frame drops nothing)."""
        if ts is not None and self.monotonic:
            first = float(ts[0]) if is_block else ts
            if first < self._last_stored:
                raise TimestampError(f"channel {self.full_name!r} requires increasing timestamps, got {first!r} "
                                     f"after {self._last_stored!r}")

    def _number_locked(self, given: Any, n: int, is_block: bool) -> Any:
        """The frame number(s) to store: the given ones, which must follow the last
        number, or the next ones (``None`` on a channel without frame numbers)."""
        if not self._numbered:
            return None
        last = self._last_number
        if given is None:
            return np.arange(last + 1, last + 1 + n, dtype=np.int64) if is_block else last + 1
        first = int(given[0]) if is_block else given
        if first <= last:
            raise self._columns.order_error(first, last)
        return given

    def _commit_number_locked(self, number: Any, is_block: bool) -> None:
        """The frame number(s) are taken (the frames queued or dropped)."""
        if self._first_number < 0:
            self._first_number = int(number[0]) if is_block else number
        self._last_number = int(number[-1]) if is_block else number

    def _stamp_locked(self, ts: Any, n: int, is_block: bool) -> Any:
        """The timestamp(s) to store: the library's own (never going backwards, and on a
        ``monotonic`` channel never before a given one either), or the given ones."""
        if ts is None:
            now = time.time()
            floor = max(self._last_auto, self._last_stored) if self.monotonic else self._last_auto
            if now < floor:  # the clock was stepped back: hold until it catches up
                now = floor
            self._last_auto = now
            ts = np.full(n, now) if is_block else now
        if self.monotonic:
            self._last_stored = float(ts[-1]) if is_block else ts
        return ts

    def _stage_locked(self, frame: Any, ts: float) -> None:
        """Copy a small frame into the open batch (allocated on demand)."""
        values = self._stage_values
        if values is None:
            values = self._stage_values = np.empty((self._stage_size, *self.shape), dtype=self.dtype)
            self._stage_times = np.empty(self._stage_size, dtype=np.float64)
        assert self._stage_times is not None
        i = self._stage_n
        values[i] = frame
        self._stage_times[i] = ts
        self._stage_n = i + 1
        if i + 1 == self._stage_size:
            self._close_stage_locked()

    def _close_stage_locked(self) -> None:
        """Queue the open batch as one entry."""
        n = self._stage_n
        cols = None
        if self._stage_extras:
            extras, self._stage_extras = self._stage_extras, []
            columns = zip(*extras, strict=True)
            cols = tuple(np.array(col, dtype=dt) for col, dt in zip(columns, self._columns.dtypes, strict=True))
        if self._stage_scalars:
            values = np.array(self._stage_list, dtype=self.dtype)
            self._entries.append((values, np.array(self._stage_list_times, dtype=np.float64), n, cols))
            self._stage_list, self._stage_list_times = [], []
        else:
            assert self._stage_values is not None and self._stage_times is not None
            self._entries.append((self._stage_values[:n], self._stage_times[:n], n, cols))
            self._stage_values = self._stage_times = None
        self._stage_n = 0

    def _evict_locked(self, needed: int) -> None:
        """``drop_oldest``: drop the oldest queued frames, exactly ``needed`` of them if
        that many are queued (frames the writer already took cannot be dropped)."""
        if self._stage_n:
            self._close_stage_locked()
        entries = self._entries
        while needed > 0 and entries:
            data, ts, n, cols = entries[0]
            if n <= needed:
                entries.popleft()
                drop = n
            else:  # the entry is a block or a batch: keep its newest frames
                entries[0] = (data[needed:], ts[needed:], n - needed,
                              None if cols is None else tuple(c[needed:] for c in cols))
                drop = needed
            needed -= drop
            self._left += drop
            self._queued -= drop
            self._held -= drop
            self._dropped += drop

    def _report_locked(self, fill: int) -> None:
        """Publish backpressure (on the rising edge) and drops (at most every
        ``progress_interval``) straight from the producer, so they arrive even while
        the writer is stuck in slow storage. Called with the lock held."""
        control = self._control
        if not self._pressed and (fill >= self._high_mark or self._space is not None):
            self._pressed = True
            control.publish(Backpressure(channel=self.full_name, active=True, queue_fill=fill,
                                         queue_capacity=self.queue_size))
        now = time.monotonic()
        if self._dropped != self._reported_dropped and \
                now - self._last_drop_report >= control.config.progress_interval:
            self._report_drops_locked(now)

    def _report_drops_locked(self, now: float) -> None:
        total = self._dropped
        self._control.publish(FramesDropped(channel=self.full_name, policy=self.overflow.value,
                                            count=total - self._reported_dropped, total=total))
        self._reported_dropped = total
        self._last_drop_report = now

    # ------------------------------------------------------------------ the writer's side
    def _writer_take(self, limit: int) -> list[Entry]:
        """Pop up to about ``limit`` frames' worth of queued entries. The frames stay
        counted against the queue until :meth:`_writer_stored` releases them."""
        taken: list[Entry] = []
        count = 0
        with self._lock:
            if self._stage_n and self._queued - self._stage_n < limit:
                self._close_stage_locked()
            entries = self._entries
            while count < limit and entries:
                entry = entries.popleft()
                taken.append(entry)
                count += entry[2]
            self._queued -= count
            self._left += count
        return taken

    def _writer_number_range(self) -> tuple[int, int]:
        """The first and the last frame number given or assigned, stored or dropped (-1: none)."""
        with self._lock:
            return self._first_number, self._last_number

    def _writer_queued(self) -> int:
        """Frames queued and not yet taken."""
        with self._lock:
            return self._queued

    def _writer_flush_mark(self) -> int:
        """What :meth:`_writer_left` reaches once every frame queued now has left the
        queue: a flush takes frames until then (and no further, however fast
        producers push meanwhile)."""
        with self._lock:
            return self._left + self._queued

    def _writer_starved(self) -> bool:
        """Producers are waiting for room."""
        with self._lock:
            return self._space is not None or self._thread_waiters > 0

    def _writer_left(self) -> int:
        with self._lock:
            return self._left

    def _writer_stored(self, end: int, last_time: float, size_delta: int, release: int) -> None:
        """Frames up to ``end`` are in the file; ``release`` frames give their room back."""
        with self._lock:
            if end > self._written:
                self._written = end
                self._last_time = last_time
                self._last_write = time.monotonic()
            self._bytes_stored += size_delta
            if release:
                self._held -= release
                self._wake_locked()

    def _writer_discard_queued(self) -> None:
        """Drop everything still queued (an aborted close ran out of time)."""
        with self._lock:
            if self._stage_n:
                self._close_stage_locked()
            count = sum(entry[2] for entry in self._entries)
            self._entries.clear()
            self._queued -= count
            self._left += count
            self._held -= count
            self._wake_locked()

    def _writer_flushed(self, now: float) -> int:
        """A flush completed: what was written is durable. Returns the durable count."""
        with self._lock:
            if self._durable != self._written:
                self._durable = self._written
                self._durable_timestamp = self._last_time
                self._durable_at = now
            return self._durable

    def _writer_finish(self, failed: bool) -> None:
        """The writer is done: nothing more will be written. Every frame accepted and
        not written is counted as dropped (a failed writer's file holds only what its
        last flush made durable)."""
        with self._lock:
            self._entries.clear()
            self._stage_values = self._stage_times = None
            self._stage_list, self._stage_list_times = [], []
            self._stage_extras = []
            self._stage_n = self._queued = self._held = 0
            if failed:
                self._written = self._durable
            self._discarded = self._pushed - self._dropped - self._written
            self._done_at = time.monotonic()
            self._wake_locked()

    def _writer_tick(self) -> None:
        """The writer's periodic tick: pending drop counts and the end of backpressure."""
        with self._lock:
            if self._dropped != self._reported_dropped:
                self._report_drops_locked(time.monotonic())
            fill = self._held
            if self._pressed and fill < self._high_mark / 2 and self._space is None:
                self._pressed = False
                self._control.publish(Backpressure(channel=self.full_name, active=False, queue_fill=fill,
                                                   queue_capacity=self.queue_size))

    def _shut(self, refusal: Callable[[], BaseException]) -> None:
        """Refuse every later push (closing or failed), and wake every waiting producer."""
        with self._lock:
            if self._refusal is None:
                self._refusal = refusal
            self._wake_locked()

    def _wake_locked(self) -> None:
        event, self._space = self._space, None
        if event is not None:
            self._control.waker.call(event.set)
        if self._thread_waiters:
            self._space_cond.notify_all()

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> ChannelStatistics:
        """A snapshot of this channel's counters; cheap, callable from any thread,
        and still valid after the saver has closed (then it holds the final figures)."""
        with self._lock:
            written, stored, first = self._written, self._bytes_stored, self._first_push
            # rates cover the acquisition (first push to last write), not the close
            end = self._last_write if self._done_at is not None and self._last_write else time.monotonic()
            elapsed = end - first if first is not None else 0.0
            bytes_written = written * self.frame_nbytes
            return ChannelStatistics(
                name=self.full_name,
                frames_pushed=self._pushed,
                frames_written=written,
                frames_durable=self._durable,
                frames_dropped=self._dropped + self._discarded,
                frames_rejected=self._rejected,
                bytes_pushed=self._pushed * self.frame_nbytes,
                bytes_written=bytes_written,
                bytes_stored=stored,
                queue_fill=self._held,
                queue_capacity=self.queue_size,
                queue_high_water=self._high_water,
                compression_ratio=bytes_written / stored if stored else 1.0,
                frames_per_second=written / elapsed if elapsed > 0 else 0.0,
                mb_per_second=bytes_written / elapsed / 1e6 if elapsed > 0 else 0.0,
                durable_timestamp=self._durable_timestamp,
                durable_at=self._durable_at,
            )
