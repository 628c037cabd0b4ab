"""Channels: where producers push frames, one bounded queue each.

A channel's queue sits between producers (tasks on the event loop, or other
threads) and the saver's writer thread. It is bounded in frames; what happens when
it is full is the channel's :class:`~streamsave.Overflow` policy. Frames pass by
reference: after pushing a frame, do not modify it (push a copy, or open the
channel with ``copy=True``, if your driver reuses its buffers).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt

from ._errors import FrameMismatchError, QueueFull, TimestampError
from ._events import Backpressure, FramesDropped
from ._layout import ChannelPaths, stored_shape
from ._spec import Axis, Overflow
from ._stats import ChannelStatistics

if TYPE_CHECKING:
    from ._detector import Detector
    from ._saver import Saver

__all__ = ("Channel",)

#: an entry in a queue: (frame or block, timestamp(s), number of frames)
Entry = tuple[Any, Any, int]


_FULL = object()  # _offer's answer to a foreign thread: wait on the condition


async def _wait_for_room(wait: object) -> None:
    if isinstance(wait, anyio.Event):
        await wait.wait()
    else:
        await anyio.lowlevel.checkpoint()


class Channel:
    """A stream of frames of one fixed shape and dtype, stored as one dataset.

    Create channels with :meth:`Detector.add_channel`; do not instantiate directly.
    """

    def __init__(
        self,
        saver: Saver,
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
        paths: ChannelPaths,
    ) -> None:
        self._saver = saver
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
        self.frame_nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        # scalar channels accept their own numpy scalar type, and floats when lossless, as they are
        self._scalar_type: type | None = dtype.type if not shape else None
        self._takes_float = not shape and dtype.kind == "f" and dtype.itemsize >= 8
        #: where the channel's nodes are in the file
        self.paths = paths
        self._detector_obj: Detector | None = None
        # producer side (any thread; guarded by _lock)
        self._lock = threading.Lock()
        self._entries: deque[Entry] = deque()
        self._entered = 0
        self._evicted = 0
        self._pushed = 0
        self._dropped = 0
        self._rejected = 0
        self._high_water = 0
        self._first_push: float | None = None
        self._space: anyio.Event | None = None
        self._space_cond = threading.Condition(self._lock)
        self._thread_waiters = 0  # threads blocked in push_from_thread
        self._wake_at = max(1, min(chunk_frames, queue_size // 2))
        self._high_mark = max(1, int(queue_size * saver.config.high_water))
        self._pressed = False  # a Backpressure(active=True) event is outstanding
        self._reported_dropped = 0
        self._last_drop_report = 0.0
        # writer side (the writer thread only)
        self._taken = 0
        self._written = 0
        self._durable = 0
        self._dropped_by_writer = 0
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
        """The HDF5 file the channel is written to."""
        return str(self._saver.path)

    @property
    def dataset_path(self) -> str:
        """The frames' dataset, shape ``(N, *stored_shape)``."""
        return self.paths.data

    @property
    def time_axis_path(self) -> str:
        """The per-frame timestamps' dataset, shape ``(N,)``, epoch seconds."""
        return self.paths.time



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
            elif self.copy:
                frame = frame.copy()
            return frame
        return self._check_other(frame)

    def _check_other(self, frame: Any) -> Any:
        if isinstance(frame, np.ndarray | np.generic):
            return self._check_frame(np.asarray(frame))
        if not self.shape and isinstance(frame, int) and not isinstance(frame, bool) and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            if not info.min <= frame <= info.max:
                raise FrameMismatchError(f"channel {self.full_name!r}: value {frame!r} does not fit in {self.dtype} "
                                         f"({info.min}..{info.max})")
            return frame
        if not self.shape and isinstance(frame, int | float | complex) and not isinstance(frame, bool):
            return self._cast(np.asarray(frame))
        raise FrameMismatchError(
            f"channel {self.full_name!r}: expected a numpy array of shape {self.shape} and dtype "
            f"{self.dtype}{' or a number' if not self.shape else ''}, got {type(frame).__name__}")

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

    def _check_timestamp(self, timestamp: float | None) -> float:
        if timestamp is None:
            return time.time()
        try:
            ts = float(timestamp)
        except (TypeError, ValueError):
            raise TimestampError(
                f"channel {self.full_name!r}: timestamp must be seconds as a number, got {timestamp!r}") from None
        if not math.isfinite(ts):
            raise TimestampError(f"channel {self.full_name!r}: timestamp must be finite, got {timestamp!r}")
        return ts

    def _check_timestamps(self, timestamps: npt.ArrayLike | None, n: int) -> npt.NDArray[np.float64]:
        if timestamps is None:
            return np.full(n, time.time())
        try:
            ts = np.asarray(timestamps, dtype=np.float64)
        except (TypeError, ValueError):
            raise TimestampError(
                f"channel {self.full_name!r}: timestamps must be numbers (seconds), got {timestamps!r}") from None
        if ts.shape != (n,):
            raise TimestampError(
                f"channel {self.full_name!r}: got {ts.shape} timestamps for {n} frames; expected shape ({n},)")
        if not np.isfinite(ts).all():
            raise TimestampError(f"channel {self.full_name!r}: timestamps must all be finite")
        return ts

    # ------------------------------------------------------------------ pushing
    async def push(self, frame: Any, *, timestamp: float | None = None) -> None:
        """Queue one frame for writing.

        Returns as soon as the frame is queued. When the queue is full, what happens
        depends on the channel's overflow policy: ``block`` waits for room (this is
        the only case where ``push`` suspends), ``drop_oldest``/``drop_newest``
        drop and count a frame, ``error`` raises :class:`~streamsave.QueueFull`.
        Cancelling a waiting ``push`` leaves the frame unqueued and uncounted.

        The frame is kept by reference (unless the channel copies): do not modify
        it after pushing.

        :param frame: an array of the channel's shape and dtype (or of a dtype that
            converts to it without loss); a number for scalar channels.
        :param timestamp: acquisition time in seconds since the Unix epoch
            (default: now).
        :raises ~streamsave.FrameMismatchError: wrong shape, dtype or type.
        :raises ~streamsave.TimestampError: timestamp not a finite number.
        :raises ~streamsave.QueueFull: queue full with ``overflow="error"``.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        :raises ~streamsave.StorageError: the writer failed (the same error again).
        """
        data = self._check_frame(frame)
        ts = self._check_timestamp(timestamp)
        while (wait := self._offer(data, ts, 1, self.overflow)) is not None:
            await _wait_for_room(wait)

    def push_nowait(self, frame: Any, *, timestamp: float | None = None) -> None:
        """Queue one frame without ever waiting.

        Like :meth:`push`, but a full queue raises :class:`~streamsave.QueueFull`
        under the ``block`` and ``error`` policies (the drop policies drop and count
        as usual).
        """
        data = self._check_frame(frame)
        ts = self._check_timestamp(timestamp)
        policy = Overflow.ERROR if self.overflow is Overflow.BLOCK else self.overflow
        self._offer(data, ts, 1, policy)

    async def push_many(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None) -> None:
        """Queue a block of frames (shape ``(n, *shape)``) in one call.

        Much cheaper per frame than :meth:`push` for small frames (scalars, spectra).
        Blocks larger than the free room are queued in pieces as room appears. With
        ``overflow="error"`` the whole block is refused unless it fits.

        :param timestamps: ``n`` acquisition times (default: now, for every frame).
        :raises ~streamsave.FrameMismatchError: wrong shape, dtype or type.
        :raises ~streamsave.TimestampError: wrong number of timestamps, or not finite.
        :raises ~streamsave.QueueFull: the block does not fit with ``overflow="error"``.
        """
        block = self._check_block(frames)
        n = block.shape[0]
        ts = self._check_timestamps(timestamps, n)
        if self.overflow is Overflow.ERROR and n > self.queue_size:
            raise QueueFull(f"channel {self.full_name!r}: a block of {n} frames can never fit in a "
                            f"queue of {self.queue_size}; push it in smaller blocks or enlarge queue_size")
        start = 0
        while start < n:
            room = self._room()
            if self.overflow is Overflow.BLOCK or self.overflow is Overflow.ERROR:
                piece = min(n - start, max(room, 1)) if self.overflow is Overflow.BLOCK else n
            else:
                piece = min(n - start, self.queue_size)
            wait = self._offer(block[start:start + piece], ts[start:start + piece], piece, self.overflow)
            if wait is None:
                start += piece
            else:
                await _wait_for_room(wait)

    def push_from_thread(self, frame: Any, *, timestamp: float | None = None, timeout: float | None = None) -> None:
        """Queue one frame from any thread that is not the event loop's (e.g. a camera
        SDK callback). Same validation and overflow policies as :meth:`push`; under
        ``block`` it blocks the calling thread (never the event loop) until there is
        room, or raises :class:`~streamsave.QueueFull` after ``timeout`` seconds.

        :raises RuntimeError: when called on the event loop's thread (use ``await push()``).
        """
        self._push_from_thread(self._check_frame(frame), self._check_timestamp(timestamp), 1, timeout)

    def push_many_from_thread(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                              timeout: float | None = None) -> None:
        """:meth:`push_many` for foreign threads; see :meth:`push_from_thread`."""
        block = self._check_block(frames)
        n = block.shape[0]
        ts = self._check_timestamps(timestamps, n)
        if self.overflow is Overflow.ERROR:  # as push_many: the whole block fits, or QueueFull
            self._offer(block, ts, n, Overflow.ERROR)
            return
        if self.overflow is not Overflow.BLOCK:  # drop policies: pieces no larger than the queue
            for start in range(0, n, self.queue_size):
                stop = min(n, start + self.queue_size)
                self._offer(block[start:stop], ts[start:stop], stop - start, self.overflow)
            return
        start = 0
        while start < n:  # queue what fits now, wait for room for the rest
            stop = start + min(n - start, max(self._room(), 1))
            self._push_from_thread(block[start:stop], ts[start:stop], stop - start, timeout)
            start = stop

    def _push_from_thread(self, data: Any, ts: Any, n: int, timeout: float | None) -> None:
        saver = self._saver
        if threading.get_ident() == saver._loop_thread:
            raise RuntimeError(f"channel {self.full_name!r}: push_from_thread() would block the event loop; "
                               "use 'await channel.push()' on the loop's thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._offer(data, ts, n, self.overflow) is not None:
            with self._space_cond:
                self._thread_waiters += 1
                try:
                    while self._room() < n and not saver._refuse_pushes:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            self._rejected += n
                            raise QueueFull(f"channel {self.full_name!r}: no room in the queue after {timeout} s")
                        self._space_cond.wait(remaining)
                finally:
                    self._thread_waiters -= 1

    def _room(self) -> int:
        return self.queue_size - (self._entered - self._evicted - self._taken)

    def _offer(self, data: Any, ts: Any, n: int, policy: Overflow) -> object | None:
        """Try to queue an entry. ``None`` means done (queued, or dropped by policy);
        anything else means 'wait for room, then call again': on the loop thread it is
        the :class:`anyio.Event` the writer will set when it takes frames."""
        saver = self._saver
        if saver._refuse_pushes:
            saver._raise_refusal()
        with self._lock:
            fill = self._entered - self._evicted - self._taken
            if fill + n > self.queue_size and policy is Overflow.BLOCK:
                wait: object = _FULL
                if threading.get_ident() == saver._loop_thread:
                    if self._space is None:
                        self._space = anyio.Event()
                    wait = self._space
                # Look again now the waiter is registered: the writer may have taken
                # frames (and found no waiter to wake) since ``fill`` was computed.
                fill = self._entered - self._evicted - self._taken
                if fill + n > self.queue_size:
                    self._report_locked(fill)
                    saver._wake_writer()  # whatever the fill, the writer must come and make room
                    return wait
            if fill + n > self.queue_size:
                if policy is Overflow.ERROR:
                    self._rejected += n
                    raise QueueFull(f"channel {self.full_name!r}: queue full ({fill} of {self.queue_size} "
                                    f"frames); the writer is behind")
                if policy is Overflow.DROP_NEWEST:
                    self._pushed += n
                    self._dropped += n
                    self._report_locked(fill)
                    return None
                while self._entries and fill + n > self.queue_size:  # DROP_OLDEST
                    _, _, old = self._entries.popleft()
                    self._evicted += old
                    self._dropped += old
                    fill -= old
                if fill + n > self.queue_size:  # the writer took them meanwhile
                    fill = self._entered - self._evicted - self._taken
            self._entries.append((data, ts, n))
            self._entered += n
            self._pushed += n
            fill += n
            if fill > self._high_water:
                self._high_water = fill
            if (fill >= self._high_mark and not self._pressed) or self._dropped != self._reported_dropped:
                self._report_locked(fill)
            if self._first_push is None:
                self._first_push = time.monotonic()
                saver._on_first_push()
        if fill >= self._wake_at:
            saver._wake_writer()
        return None

    def _report_locked(self, fill: int) -> None:
        """Publish backpressure (on the rising edge) and drops (at most every
        ``progress_interval``) straight from the producer, so they arrive even while
        the writer is stuck in slow storage. Called with the lock held."""
        saver = self._saver
        if not self._pressed and (fill >= self._high_mark or self._space is not None):
            self._pressed = True
            saver._publish(Backpressure(channel=self.full_name, active=True, queue_fill=fill,
                                        queue_capacity=self.queue_size))
        now = time.monotonic()
        if self._dropped != self._reported_dropped and now - self._last_drop_report >= saver.config.progress_interval:
            self._report_drops_locked(now)

    def _report_drops_locked(self, now: float) -> None:
        total = self._dropped
        self._saver._publish(FramesDropped(channel=self.full_name, policy=self.overflow.value,
                                           count=total - self._reported_dropped, total=total))
        self._reported_dropped = total
        self._last_drop_report = now

    def _report_progress(self) -> None:
        """The writer's periodic tick: pending drop counts and the end of backpressure."""
        with self._lock:
            if self._dropped != self._reported_dropped:
                self._report_drops_locked(time.monotonic())
            fill = self._entered - self._evicted - self._taken
            if self._pressed and fill < self._high_mark / 2 and self._space is None:
                self._pressed = False
                self._saver._publish(Backpressure(channel=self.full_name, active=False, queue_fill=fill,
                                                  queue_capacity=self.queue_size))

    # ------------------------------------------------------------------ writer side
    def _take(self, limit: int) -> list[Entry]:
        """Pop up to about ``limit`` frames' worth of entries (writer thread)."""
        taken: list[Entry] = []
        count = 0
        entries = self._entries
        while count < limit:
            try:
                entry = entries.popleft()
            except IndexError:
                break
            taken.append(entry)
            count += entry[2]
        if count:
            self._taken += count
            event = self._space
            if event is not None:
                self._space = None
                self._saver._waker.call(event.set)
            if self._thread_waiters:
                with self._space_cond:
                    self._space_cond.notify_all()
        return taken

    def _wake_waiters(self) -> None:
        """Wake every producer waiting for room (so it sees a closed or failed saver)."""
        event, self._space = self._space, None
        if event is not None:
            self._saver._waker.call(event.set)
        with self._space_cond:
            self._space_cond.notify_all()

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> ChannelStatistics:
        """A snapshot of this channel's counters; cheap, callable from any thread,
        and still valid after the saver has closed (then it holds the final figures)."""
        written = self._written
        first = self._first_push
        # rates cover the acquisition (first push to last write), not the close
        end = self._last_write if self._done_at is not None and self._last_write else time.monotonic()
        elapsed = end - first if first is not None else 0.0
        bytes_written = written * self.frame_nbytes
        stored = self._bytes_stored
        return ChannelStatistics(
            name=self.full_name,
            frames_pushed=self._pushed,
            frames_written=written,
            frames_durable=self._durable,
            frames_dropped=self._dropped + self._dropped_by_writer,
            frames_rejected=self._rejected,
            bytes_pushed=self._pushed * self.frame_nbytes,
            bytes_written=bytes_written,
            bytes_stored=stored,
            queue_fill=max(0, self._entered - self._evicted - self._taken),
            queue_capacity=self.queue_size,
            queue_high_water=self._high_water,
            compression_ratio=bytes_written / stored if stored else 1.0,
            frames_per_second=written / elapsed if elapsed > 0 else 0.0,
            mb_per_second=bytes_written / elapsed / 1e6 if elapsed > 0 else 0.0,
            durable_timestamp=self._durable_timestamp,
            durable_at=self._durable_at,
        )
