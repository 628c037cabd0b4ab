"""Replaying a recording with its original timing: :func:`replay`.

::

    async with streamsave.replay("run.h5", speed=1.0, channels=["Camera/image", "Thermometer/T"]) as items:
        async for item in items:
            item.channel, item.index, item.timestamp, item.data, item.lateness

Pacing: frame ``k`` is due at ``t0 + (key_k - key_0) / speed`` on the event loop's
clock, where ``t0`` is when the first frame is released and ``key`` is the frame's
timestamp (its channel's running maximum, when timestamps go back). Every due time is
computed from the start, so sleeps never add up to a drift. A frame is released at its
due time or, when the consumer is late, at once; ``lateness`` says by how much.

The file is read ahead by a worker thread (:mod:`streamsave._readahead`), so the event
loop never waits on HDF5, and the read-ahead is bounded in bytes and frames.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple

import anyio
import anyio.lowlevel
import numpy as np
import numpy.typing as npt

from ._errors import ConfigError
from ._readahead import Batch, ChannelInfo, Failed, Finished, Opened, ReadAhead, Segment, Window

__all__ = ("Replay", "ReplayItem", "ReplayStatistics", "replay")

#: the event loop's timers wake up to 1 ms late (epoll counts whole milliseconds): a frame
#: is slept for until this long before it is due, then waited for by yielding to the loop
SPIN: Final = 0.0005
#: a replay yields to the event loop at least this often, even when it is late
CHECKPOINT_EVERY: Final = 0.001
#: latenesses kept for the percentiles of :meth:`Replay.statistics` (the most recent ones)
LATENESS_WINDOW: Final = 1 << 16

Overflow = Literal["block", "drop"]


class ReplayItem(NamedTuple):
    """One replayed frame."""

    #: ``"Detector/channel"``, as :func:`streamsave.open_reader` names it
    channel: str
    #: the frame's index in its channel (this field hides ``tuple.index``)
    index: int  # type: ignore[assignment]
    #: its timestamp as recorded (epoch seconds)
    timestamp: float
    #: the frame, a numpy array (a numpy scalar for 0D channels); a view into a block
    #: read ahead, valid for as long as you keep it
    data: Any
    #: seconds after its due time it was released (0 with ``speed=None``)
    lateness: float


class ReplayStatistics(NamedTuple):
    """How a replay is doing (:meth:`Replay.statistics`)."""

    #: frames released so far, all channels
    frames_released: int
    #: frames skipped because they were later than ``max_lateness`` (``overflow="drop"``)
    frames_dropped: int
    #: released frames per channel
    channel_frames: dict[str, int]
    #: dropped frames per channel
    channel_dropped: dict[str, int]
    #: median lateness, seconds, over the last 65,536 frames released
    lateness_p50: float
    #: 99th percentile of the lateness, seconds, over the same frames
    lateness_p99: float
    #: the largest lateness of any frame released, seconds
    lateness_max: float
    #: the last frame released was later than ``max_lateness``: the consumer is behind
    behind: bool
    #: seconds since the first frame was released
    elapsed: float
    #: bytes read ahead and not yet consumed, now and at most
    prefetched_bytes: int
    prefetch_high_water_bytes: int
    #: frames read ahead and not yet consumed, now and at most
    prefetched_frames: int
    prefetch_high_water_frames: int
    #: the replay has released its last frame
    finished: bool


def _number(name: str, value: object, *, positive: bool, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or (positive and not value > 0) or (not positive and value < 0):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    return value


def _bound(name: str, value: object) -> float | datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return _number(name, value, positive=False, expected="None, a number of seconds after the recording's first "
                   "frame (>= 0), or a datetime (an absolute time)")


def _channels(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value \
            or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"channels must be None (every channel) or a non-empty list of \"Detector/channel\" "
                          f"names, got {value!r}")
    return list(value)


class Replay:
    """A replay in progress (returned by :func:`replay`): an async iterator of
    :class:`ReplayItem` and an async context manager.

    Use ``async with`` (or call :meth:`aclose`) to stop the read-ahead and close the
    file at once when you leave early; a replay dropped without closing stops when it
    is garbage collected.
    """

    def __init__(self, source: str | os.PathLike[str], *, speed: float | None = 1.0,
                 channels: Sequence[str] | None = None, start: float | datetime | None = None,
                 stop: float | datetime | None = None, follow: bool = False, overflow: Overflow = "block",
                 max_lateness: float = 0.1, prefetch_bytes: int = 16 << 20, prefetch_frames: int = 1 << 20,
                 poll_interval: float = 0.1, idle_timeout: float | None = None) -> None:
        if not isinstance(source, str | os.PathLike):
            raise ConfigError(f"source must be a path (str or os.PathLike), got {source!r}")
        self._speed = None if speed is None else _number(
            "speed", speed, positive=True, expected="a positive number (1.0: the recorded rate, 2.0: twice as "
            "fast) or None (as fast as the file can be read)")
        window = Window(_bound("start", start), _bound("stop", stop))
        both = (window.start, window.stop)
        same_kind = all(isinstance(b, float) for b in both) or all(isinstance(b, datetime) for b in both)
        if same_kind and not both[0] < both[1]:  # type: ignore[operator]
            raise ConfigError(f"start={start!r} must come before stop={stop!r}")
        if overflow not in ("block", "drop"):
            raise ConfigError(f"overflow={overflow!r} is not supported; expected 'block' (never drop: late frames "
                              "are released at once, the default) or 'drop' (skip frames later than max_lateness)")
        self._drop = overflow == "drop"
        self._max_lateness = _number("max_lateness", max_lateness, positive=True, expected="a positive number "
                                     "of seconds")
        if not isinstance(follow, bool):
            raise ConfigError(f"follow must be True or False, got {follow!r}")
        poll = _number("poll_interval", poll_interval, positive=True, expected="a positive number of seconds")
        idle = None if idle_timeout is None else _number("idle_timeout", idle_timeout, positive=False,
                                                         expected="None or a number of seconds >= 0")
        self._ahead = ReadAhead(source, _channels(channels), window, follow=follow, poll_interval=poll,
                                idle_timeout=idle, max_bytes=_count("prefetch_bytes", prefetch_bytes),
                                max_frames=_count("prefetch_frames", prefetch_frames))
        self._finalizer = weakref.finalize(self, self._ahead.abandon)
        self._state: Literal["new", "running", "finished", "closed"] = "new"
        self._infos: tuple[ChannelInfo, ...] = ()
        self._names: list[str] = []
        self._batch: Batch | None = None
        self._segment: Segment | None = None
        self._next_segment = 0
        self._at = 0
        self._t0 = math.nan
        self._started = math.nan
        self._key0 = math.nan
        self._last_checkpoint = -math.inf
        self._released: list[int] = []
        self._dropped: list[int] = []
        self._lateness = np.zeros(LATENESS_WINDOW)
        self._late_count = 0
        self._finished = False
        self._late_max = 0.0
        self._last_lateness = 0.0

    def __repr__(self) -> str:
        return f"<Replay {str(self._ahead.source)!r} speed={self._speed} {self._state}>"

    # ------------------------------------------------------------------ lifetime
    async def __aenter__(self) -> Replay:
        await self._start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _start(self) -> None:
        """Start the read-ahead and wait until the file is open and the channels known.

        :raises ~streamsave.ReadError: the file cannot be read.
        :raises ~streamsave.ConfigError: an unknown channel, a channel without
            timestamps, or ``start`` not before ``stop``.
        """
        if self._state != "new":
            return
        self._state = "running"
        self._ahead.start()
        message = await self._ahead.receive.receive()
        if isinstance(message, Failed):
            await self.aclose()
            raise message.error
        assert isinstance(message, Opened)
        self._infos = message.channels
        self._names = [info.key for info in self._infos]
        self._released = [0] * len(self._names)
        self._dropped = [0] * len(self._names)

    async def aclose(self) -> None:
        """Stop reading ahead and close the file (waits for the worker thread, which
        finishes the read it is doing). Safe to call more than once."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._ahead.stop()
        with anyio.CancelScope(shield=True):
            await self._ahead.wait_done()
            await anyio.lowlevel.checkpoint()  # the worker's last calls onto the loop (closing its end) run
        self._finalizer()

    @property
    def channels(self) -> tuple[str, ...]:
        """The replayed channels (``"Detector/channel"``), once started."""
        return tuple(self._names)

    # ------------------------------------------------------------------ iteration
    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> ReplayItem:
        while True:
            segment = self._segment
            if segment is None or self._at >= len(segment.keys):
                if not await self._advance():
                    raise StopAsyncIteration
                continue
            i = self._at
            if self._speed is None:
                lateness = 0.0
                await self._checkpoint(anyio.current_time())
            else:
                due = self._t0 + (float(segment.keys[i]) - self._key0) / self._speed
                now = anyio.current_time()
                if now < due:
                    await self._wait(due)
                    now = anyio.current_time()
                else:
                    await self._checkpoint(now)
                    now = anyio.current_time()
                lateness = now - due
                if self._drop and lateness > self._max_lateness:
                    self._skip_late(segment, now)
                    continue
            self._at = i + 1
            self._record(segment.channel, lateness)
            return ReplayItem(self._names[segment.channel], int(segment.indices[i]), float(segment.timestamps[i]),
                              segment.data[i], lateness)

    async def _frames(self) -> tuple[int, npt.NDArray[Any], npt.NDArray[np.float64]] | None:
        """The next frames of one channel that are due (all of a segment with
        ``speed=None``): (channel index, frames, timestamps); ``None`` at the end.
        Never drops."""
        while True:
            segment = self._segment
            if segment is None or self._at >= len(segment.keys):
                if not await self._advance():
                    return None
                continue
            a = self._at
            now = anyio.current_time()
            if self._speed is None:
                b = len(segment.keys)
                await self._checkpoint(now)
                self._at = b
                self._record_many(segment.channel, np.zeros(b - a))
                return segment.channel, segment.data[a:b], segment.timestamps[a:b]
            due0 = self._t0 + (float(segment.keys[a]) - self._key0) / self._speed
            if now < due0:
                await self._wait(due0)
            else:
                await self._checkpoint(now)
            now = anyio.current_time()
            reached = self._key0 + (now - self._t0) * self._speed
            b = max(a + 1, a + int(np.searchsorted(segment.keys[a:], reached, side="right")))
            self._at = b
            dues = self._t0 + (segment.keys[a:b] - self._key0) / self._speed
            self._record_many(segment.channel, np.maximum(now - dues, 0.0))
            return segment.channel, segment.data[a:b], segment.timestamps[a:b]

    async def _advance(self) -> bool:
        """Move to the next segment, receiving a batch when this one is used up;
        ``False`` at the end."""
        if self._state == "new":
            await self._start()
        while True:
            batch = self._batch
            if batch is not None and self._next_segment < len(batch.segments):
                self._segment = batch.segments[self._next_segment]
                self._next_segment += 1
                self._at = 0
                return True
            if batch is not None:
                self._batch = self._segment = None
                self._ahead.release(batch)
            if self._state != "running":
                return False
            message = await self._ahead.receive.receive()
            if isinstance(message, Batch):
                self._batch, self._next_segment = message, 0
                if math.isnan(self._t0):
                    self._t0, self._started = anyio.current_time(), time.monotonic()
                    self._key0 = float(message.segments[0].keys[0])
            elif isinstance(message, Finished):
                self._state = "finished"
                self._finished = True
                await self._ahead.wait_done()
                return False
            elif isinstance(message, Failed):
                await self.aclose()
                raise message.error

    def _skip_late(self, segment: Segment, now: float) -> None:
        """Drop the segment's frames later than ``max_lateness`` (from the current one)."""
        assert self._speed is not None
        a = self._at
        threshold = self._key0 + (now - self._max_lateness - self._t0) * self._speed
        b = max(a + 1, a + int(np.searchsorted(segment.keys[a:], threshold, side="left")))
        self._at = b
        self._dropped[segment.channel] += b - a

    async def _wait(self, due: float) -> None:
        """Until ``due`` on the loop's clock: sleep until :data:`SPIN` before, then
        yield to the loop until it is reached."""
        if due - anyio.current_time() > SPIN:
            await anyio.sleep_until(due - SPIN)
        while anyio.current_time() < due:
            await anyio.lowlevel.checkpoint()
        self._last_checkpoint = anyio.current_time()

    async def _checkpoint(self, now: float) -> None:
        """Yield to the loop if it has not been done for :data:`CHECKPOINT_EVERY`."""
        if now - self._last_checkpoint >= CHECKPOINT_EVERY:
            await anyio.lowlevel.checkpoint()
            self._last_checkpoint = anyio.current_time()

    # ------------------------------------------------------------------ statistics
    def _record(self, channel: int, lateness: float) -> None:
        self._released[channel] += 1
        self._lateness[self._late_count & (LATENESS_WINDOW - 1)] = lateness
        self._late_count += 1
        self._last_lateness = lateness
        if lateness > self._late_max:
            self._late_max = lateness

    def _record_many(self, channel: int, lateness: npt.NDArray[np.float64]) -> None:
        n = len(lateness)
        self._released[channel] += n
        if n >= LATENESS_WINDOW:
            self._lateness[:] = lateness[-LATENESS_WINDOW:]
        else:
            at = self._late_count & (LATENESS_WINDOW - 1)
            first = min(n, LATENESS_WINDOW - at)
            self._lateness[at:at + first] = lateness[:first]
            self._lateness[:n - first] = lateness[first:]
        self._late_count += n
        if n:
            self._last_lateness = float(lateness[-1])
            self._late_max = max(self._late_max, float(lateness.max()))

    def statistics(self) -> ReplayStatistics:
        """The replay's figures so far (safe from any thread; cheap)."""
        kept = self._lateness[:min(self._late_count, LATENESS_WINDOW)]
        p50, p99 = (float(v) for v in np.percentile(kept, [50, 99])) if kept.size else (0.0, 0.0)
        flight = self._ahead.flight
        elapsed = time.monotonic() - self._started if not math.isnan(self._started) else 0.0
        return ReplayStatistics(
            frames_released=sum(self._released), frames_dropped=sum(self._dropped),
            channel_frames=dict(zip(self._names, self._released, strict=True)),
            channel_dropped=dict(zip(self._names, self._dropped, strict=True)),
            lateness_p50=p50, lateness_p99=p99, lateness_max=self._late_max,
            behind=self._last_lateness > self._max_lateness, elapsed=elapsed,
            prefetched_bytes=flight.nbytes, prefetch_high_water_bytes=flight.high_water_bytes,
            prefetched_frames=flight.frames, prefetch_high_water_frames=flight.high_water_frames,
            finished=self._finished)


def replay(source: str | os.PathLike[str], *, speed: float | None = 1.0, channels: Sequence[str] | None = None,
           start: float | datetime | None = None, stop: float | datetime | None = None, follow: bool = False,
           overflow: Overflow = "block", max_lateness: float = 0.1, prefetch_bytes: int = 16 << 20,
           prefetch_frames: int = 1 << 20, poll_interval: float = 0.1,
           idle_timeout: float | None = None) -> Replay:
    """Replay a recorded file's frames with their original timing, merged across
    channels in timestamp order (``async for item in streamsave.replay(path): ...``).

    Reads streamsave files (closed, still being written, crashed, recovered) and
    PyMoDAQ's continuous-saving files (by their time axis): whatever
    :func:`streamsave.open_reader` reads, as long as the channels have timestamps.

    :param source: the HDF5 file.
    :param speed: ``1.0`` replays at the recorded rate, ``2.0`` twice as fast, ``0.5``
        at half speed; ``None`` as fast as the file can be read (no pacing).
    :param channels: ``"Detector/channel"`` names (as ``open_reader`` and
        ``streamsave info`` list them), in the order that breaks ties between equal
        timestamps; ``None``: every channel that has timestamps, in file order.
    :param start: replay frames from this time on: a number is seconds after the
        recording's first frame (the earliest first timestamp of the replayed
        channels); a :class:`~datetime.datetime` is an absolute time (a naive one is
        local time). ``None``: from the first frame.
    :param stop: replay frames before this time (same forms); ``None``: to the end.
        Frames are selected by their channel's running maximum timestamp, which is the
        timestamp itself while timestamps are in order.
    :param follow: the file is being written: keep replaying what its writer flushes
        until it closes the file (or ``idle_timeout`` passes without new frames).
        Frames flushed later are released after the ones already flushed.
    :param overflow: a consumer slower than the replay makes frames late; ``"block"``
        (default) releases late frames at once and never drops one; ``"drop"`` skips
        frames later than ``max_lateness``, counting them.
    :param max_lateness: seconds after which a frame counts as late: dropped under
        ``"drop"``, and ``statistics().behind`` is set.
    :param prefetch_bytes: the most bytes of frames read ahead and not yet consumed
        (16 MiB: blocks are then reused while still in the processor's cache; at
        64 MiB, as-fast-as-possible replay ran 10-30 % slower on a 32 MiB L3).
    :param prefetch_frames: the most frames read ahead and not yet consumed.
    :param poll_interval: with ``follow``, seconds between two looks at the file.
    :param idle_timeout: with ``follow``, end after this many seconds without a new
        frame (a killed writer never closes its file); ``None``: wait for ever.
    :returns: a :class:`Replay`; errors about the file and its channels arrive when
        iteration starts (or at ``async with``).
    :raises ~streamsave.ConfigError: an invalid argument (at once); an unknown
        channel, a channel without timestamps, or ``start`` not before ``stop`` (when
        iteration starts).
    :raises ~streamsave.ReadError: the file is missing or cannot be read (when
        iteration starts).

    Frames are read ahead by a worker thread; the event loop never waits on the
    file. Each ``__anext__`` waits (sleeps) until the frame is due, yields to the
    loop at least every millisecond, and is safe to cancel (the frame is then not
    consumed).
    """
    return Replay(source, speed=speed, channels=channels, start=start, stop=stop, follow=follow, overflow=overflow,
                  max_lateness=max_lateness, prefetch_bytes=prefetch_bytes, prefetch_frames=prefetch_frames,
                  poll_interval=poll_interval, idle_timeout=idle_timeout)
