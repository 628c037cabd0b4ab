"""The read-ahead behind :func:`streamsave.replay`: one worker thread per replay.

The worker opens the file with :func:`streamsave.open_reader` (so it owns every h5py
object; the event loop never calls h5py), reads each channel in blocks, merges the
channels by timestamp with a heap, and hands the merged frames to the event loop in
batches through one bounded anyio memory object stream. What is handed over and not
yet consumed is bounded in bytes and in frames (``max_bytes``, ``max_frames``): the
worker waits for the consumer before it reads further, so memory stays bounded
whatever the size of the file.

Merge order: each frame's key is the running maximum of its channel's timestamps
(equal to the timestamp while they are in order; a frame whose timestamp goes back
keeps the key of the frame before it, so it comes right after it). Frames are taken in
key order across channels; on equal keys, in the order the channels were asked for.
Within a channel, frames always come in file order.

A batch holds runs: consecutive merged frames of one channel (views into the block
read from the file). One channel's read block is about :data:`BLOCK_BYTES`, so besides
what is counted in flight, at most about two blocks per channel are held.
"""

from __future__ import annotations

import contextlib
import difflib
import heapq
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import anyio
import numpy as np
import numpy.typing as npt
from anyio.streams.memory import MemoryObjectSendStream

from ._channel_reader import ChannelReader
from ._errors import ConfigError
from ._reader import Run, open_reader
from ._spec import Axis
from ._waker import LoopWaker

__all__ = ("Batch", "ChannelInfo", "Failed", "Finished", "Opened", "ReadAhead", "Segment", "Window")

#: bytes of frames one channel reads at a time (at least one chunk)
BLOCK_BYTES: Final = 4 << 20
#: timestamps read at a time to find what falls inside the window
TIME_BLOCK: Final = 1 << 16
#: batches in flight at most (the stream's buffer)
MAX_BATCHES: Final = 16
#: bookkeeping counted per frame besides its data: index, timestamp and key
FRAME_OVERHEAD: Final = 24


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What a replayed channel is, as the file describes it."""

    key: str
    detector: str
    name: str
    frame_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    units: str
    label: str
    axes: tuple[Axis, ...]
    settings: dict[str, Any]
    compression: str | None
    chunk_shape: tuple[int, ...] | None


class Segment(NamedTuple):
    """Consecutive merged frames of one channel."""

    channel: int
    indices: npt.NDArray[np.int64]
    data: npt.NDArray[Any]
    timestamps: npt.NDArray[np.float64]
    keys: npt.NDArray[np.float64]


class Batch(NamedTuple):
    segments: list[Segment]
    nbytes: int
    frames: int


class Opened(NamedTuple):
    channels: tuple[ChannelInfo, ...]
    #: the earliest first timestamp of the channels (NaN if none has a frame yet)
    origin: float


class Finished(NamedTuple):
    pass


class Failed(NamedTuple):
    error: BaseException


Message = Opened | Batch | Finished | Failed


@dataclass(frozen=True, slots=True)
class Window:
    """``start``/``stop`` as given: seconds after the first frame (numbers) or absolute
    times (:class:`~datetime.datetime`); ``None`` for no bound."""

    start: float | datetime | None = None
    stop: float | datetime | None = None

    def resolve(self, origin: float) -> tuple[float, float]:
        """The bounds in the file's time base (epoch seconds).

        :raises ~streamsave.ConfigError: ``start`` is not before ``stop``.
        """
        lo, hi = _bound(self.start, origin, -math.inf), _bound(self.stop, origin, math.inf)
        if math.isnan(lo) or math.isnan(hi):  # relative bounds of a recording without frames yet
            return -math.inf, math.inf
        if not lo < hi:
            raise ConfigError(f"start={self.start!r} must come before stop={self.stop!r} (the recording's first "
                              f"frame is at {origin!r} epoch seconds: start falls at {lo!r}, stop at {hi!r})")
        return lo, hi


def _bound(value: float | datetime | None, origin: float, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp()
    return origin + float(value)


class _Source:
    """One channel, read block by block in the worker thread."""

    def __init__(self, index: int, channel: ChannelReader, lo: float, hi: float, carry: float, *,
                 max_bytes: int, max_frames: int) -> None:
        self.index = index
        self.channel = channel
        self.lo, self.hi = lo, hi
        frame_bytes = channel.dtype.itemsize * math.prod(channel.frame_shape)
        self.frame_bytes = frame_bytes + FRAME_OVERHEAD
        block_frames = max(1, min(max_frames, min(BLOCK_BYTES, max_bytes) // self.frame_bytes))
        chunk = channel.chunk_shape
        # whole chunks per read: a chunk read in two parts would be decompressed twice
        self.chunk_frames = max(1, chunk[0]) if chunk else 1
        self.block_frames = max(self.chunk_frames, block_frames // self.chunk_frames * self.chunk_frames)
        self.pos = 0  # next frame of the file to look at
        self.times: npt.NDArray[np.float64] = np.empty(0)
        self.tbase = 0  # frame index of times[0]
        self.carry = carry  # the key of the last frame looked at
        self.ended = False  # its keys passed the window's stop
        self.block: Segment | None = None
        self.at = 0  # next frame of the block to merge

    def head(self) -> tuple[float, int]:
        assert self.block is not None
        return float(self.block.keys[self.at]), self.index

    def fill(self) -> bool:
        """Make the block hold frames not merged yet; ``False`` if none is available now."""
        while self.block is None or self.at >= len(self.block.keys):
            self.block = None
            if self.ended:
                return False
            if self.pos >= self.tbase + len(self.times):
                n = len(self.channel)
                if self.pos >= n:
                    return False
                self.times = np.asarray(self.channel.timestamps[self.pos:min(n, self.pos + TIME_BLOCK)],
                                        dtype=np.float64)
                self.tbase = self.pos
            self._next_block()
        return True

    def _next_block(self) -> None:
        a = self.pos - self.tbase
        ts = self.times[a:a + self.block_frames - self.pos % self.chunk_frames]  # to a chunk boundary
        keys = np.fmax.accumulate(np.concatenate(([self.carry], ts)))[1:]
        if keys.size and keys[-1] >= self.hi:  # the channel ends here
            cut = int(np.searchsorted(keys, self.hi, side="left"))
            ts, keys, self.ended = ts[:cut], keys[:cut], True
        first = self.pos
        self.pos += len(ts)
        if keys.size:
            self.carry = float(keys[-1])
        picked = np.flatnonzero(keys >= self.lo)
        if not picked.size:
            return
        a, b = int(picked[0]), int(picked[-1]) + 1
        data = self.channel[first + a:first + b]
        indices = np.arange(first + a, first + b, dtype=np.int64)
        if picked.size != b - a:  # a timestamp went back before start inside the block
            data, indices, ts, keys = data[picked - a], indices[picked - a], ts[picked], keys[picked]
        else:
            ts, keys = ts[a:b], keys[a:b]
        self.block = Segment(self.index, indices, data, np.ascontiguousarray(ts), np.ascontiguousarray(keys))
        self.at = 0

    def take(self, bound: tuple[float, int]) -> Segment:
        """The block's frames up to the next channel's head ``bound`` (at least one)."""
        assert self.block is not None
        block, at = self.block, self.at
        side: Literal["left", "right"] = "right" if self.index < bound[1] else "left"
        end = at + int(np.searchsorted(block.keys[at:], bound[0], side=side))
        end = max(end, at + 1)
        self.at = end
        if at == 0 and end == len(block.keys):
            return block
        return Segment(self.index, block.indices[at:end], block.data[at:end], block.timestamps[at:end],
                       block.keys[at:end])


@dataclass
class _Flight:
    """What is handed over and not yet consumed (guarded by ``ReadAhead._cond``)."""

    nbytes: int = 0
    frames: int = 0
    batches: int = 0
    high_water_bytes: int = 0
    high_water_frames: int = 0
    stopped: bool = False
    abandoned: bool = False


class ReadAhead:
    """The worker thread of one replay and its side of the stream.

    Call :meth:`start` on the event loop's thread; receive from :attr:`receive`;
    :meth:`release` each batch once consumed; :meth:`stop` from anywhere.
    """

    def __init__(self, source: str | os.PathLike[str], channels: Sequence[str] | None, window: Window, *,
                 follow: bool, poll_interval: float, idle_timeout: float | None, max_bytes: int,
                 max_frames: int) -> None:
        self.source = Path(source)
        self._names = None if channels is None else list(channels)
        self._window = window
        self._follow, self._poll, self._idle = follow, poll_interval, idle_timeout
        self.max_bytes, self.max_frames = max_bytes, max_frames
        self._batch_bytes = max(1, max_bytes // 8)
        self._batch_frames = max(1, max_frames // 8)
        self._cond = threading.Condition()
        self.flight = _Flight()
        self._send, self.receive = anyio.create_memory_object_stream[Message](MAX_BATCHES + 4)
        self._thread: threading.Thread | None = None
        self._waker: LoopWaker | None = None
        self.done = threading.Event()
        self._done_async: anyio.Event | None = None

    # ------------------------------------------------------------------ loop side
    def start(self) -> None:
        self._waker = LoopWaker()
        self._done_async = anyio.Event()
        self._thread = threading.Thread(target=self._run, name=f"streamsave-replay:{self.source.name}", daemon=True)
        self._thread.start()

    def release(self, batch: Batch) -> None:
        """The consumer is done with ``batch``: let the worker read further."""
        with self._cond:
            self.flight.nbytes -= batch.nbytes
            self.flight.frames -= batch.frames
            self.flight.batches -= 1
            self._cond.notify_all()

    def stop(self) -> None:
        """Tell the worker to stop (it closes the file and ends); never blocks."""
        with self._cond:
            self.flight.stopped = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """Nobody will receive any more (the replay was closed or collected): stop the
        worker and close the receiving end."""
        with self._cond:
            self.flight.stopped = self.flight.abandoned = True
            self._cond.notify_all()
        if self._thread is None:
            self._send.close()
        self.receive.close()

    async def wait_done(self) -> None:
        if self._done_async is not None and not self.done.is_set():
            await self._done_async.wait()

    # ------------------------------------------------------------------ worker side
    def _deliver(self, message: Message) -> None:
        assert self._waker is not None
        self._waker.call(partial(_put, self._send, message))

    def _finish(self) -> None:
        self.done.set()
        with self._cond:
            abandoned = self.flight.abandoned
        if abandoned:  # the receiving end is closed: nothing on the loop side uses the stream any more
            self._send.close()
        elif self._waker is not None and self._done_async is not None:
            self._waker.call(self._send.close)  # after the last message: the receiver drains what is left
            self._waker.call(self._done_async.set)

    def _run(self) -> None:
        try:
            try:
                opened = open_reader(self.source)
            except BaseException as exc:
                self._deliver(Failed(exc))
                return
            with opened:
                self._replay(opened)
            self._deliver(Finished())
        except BaseException as exc:
            self._deliver(Failed(exc))
        finally:
            self._finish()

    def _select(self, opened: Run) -> list[ChannelReader]:
        channels = opened.channels
        if self._names is None:
            picked = [ch for ch in channels.values() if ch.time_axis_path is not None]
            if not picked:
                what = "no channels" if not channels else f"no channel with timestamps (it has {', '.join(channels)})"
                raise ConfigError(f"{str(self.source)!r} has {what}: replay needs each frame's timestamp")
            return picked
        picked = []
        for name in self._names:
            if name not in channels:
                close = difflib.get_close_matches(name, list(channels), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"channels: no channel {name!r} in {str(self.source)!r}; {hint}expected names "
                                  f"\"Detector/channel\" from: {', '.join(channels) or '(none)'}")
            ch = channels[name]
            if ch.time_axis_path is None:
                raise ConfigError(f"channels: {name!r} in {str(self.source)!r} has no timestamps; replay needs "
                                  "each frame's timestamp")
            if ch not in picked:
                picked.append(ch)
        return picked

    def _origin(self, picked: list[ChannelReader]) -> float:
        firsts = [ch.timestamps[0] for ch in picked if len(ch)]
        finite = [t for t in firsts if math.isfinite(t)]
        return min(finite) if finite else math.nan

    def _replay(self, opened: Run) -> None:
        picked = self._select(opened)
        origin = self._origin(picked)
        needs_origin = any(isinstance(b, int | float) for b in (self._window.start, self._window.stop))
        idle_since = time.monotonic()
        while math.isnan(origin) and needs_origin and self._follow:  # wait for a first frame
            if not self._wait_poll() or self._idle_for(idle_since):
                return
            writing = opened.refresh()
            origin = self._origin(picked)
            if not writing:
                break
        lo, hi = self._window.resolve(origin)
        self._deliver(Opened(tuple(_info(ch) for ch in picked), origin))
        carry = origin if math.isfinite(origin) else -math.inf
        sources = [_Source(i, ch, lo, hi, carry, max_bytes=self._batch_bytes, max_frames=self._batch_frames)
                   for i, ch in enumerate(picked)]
        self._merge(opened, sources)

    def _stopped(self) -> bool:
        with self._cond:
            return self.flight.stopped

    def _wait_poll(self) -> bool:
        """Wait ``poll_interval`` (less if stopped); ``False`` if stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self.flight.stopped, timeout=self._poll)
            return not self.flight.stopped

    def _idle_for(self, since: float) -> bool:
        return self._idle is not None and time.monotonic() - since >= self._idle

    def _merge(self, opened: Run, sources: list[_Source]) -> None:
        heap = [s.head() for s in sources if s.fill()]
        heapq.heapify(heap)
        segments: list[Segment] = []
        nbytes = frames = 0
        idle_since = time.monotonic()
        while True:
            if not heap:
                if segments and not self._hand_over(segments, nbytes, frames):
                    return
                segments, nbytes, frames = [], 0, 0
                if not self._follow or all(s.ended for s in sources):
                    return
                writing = self._follow_once(opened, sources, heap, idle_since)
                if heap:
                    idle_since = time.monotonic()
                elif writing is None:
                    return
                continue
            _, i = heapq.heappop(heap)
            source = sources[i]
            segment = source.take(heap[0] if heap else (math.inf, len(sources)))
            segments.append(segment)
            nbytes += len(segment.keys) * source.frame_bytes
            frames += len(segment.keys)
            if source.fill():
                heapq.heappush(heap, source.head())
            if nbytes >= self._batch_bytes or frames >= self._batch_frames or len(segments) >= 4096:
                if not self._hand_over(segments, nbytes, frames):
                    return
                segments, nbytes, frames = [], 0, 0

    def _follow_once(self, opened: Run, sources: list[_Source], heap: list[tuple[float, int]],
                     idle_since: float) -> bool | None:
        """Wait for the writer's next flush; push the channels that got frames onto
        ``heap``. ``None`` when the replay ends (the writer closed the file and
        nothing is left, idle too long, or stopped)."""
        if not self._wait_poll():
            return None
        writing = opened.refresh()
        for source in sources:
            if source.fill():
                heapq.heappush(heap, source.head())
        if heap:
            return writing
        if not writing or self._idle_for(idle_since):
            return None
        return writing

    def _hand_over(self, segments: list[Segment], nbytes: int, frames: int) -> bool:
        """Wait for room, then deliver one batch; ``False`` if stopped."""
        with self._cond:
            flight = self.flight
            self._cond.wait_for(lambda: flight.stopped or flight.batches == 0 or (
                flight.batches < MAX_BATCHES and flight.nbytes + nbytes <= self.max_bytes
                and flight.frames + frames <= self.max_frames))
            if flight.stopped:
                return False
            flight.nbytes += nbytes
            flight.frames += frames
            flight.batches += 1
            flight.high_water_bytes = max(flight.high_water_bytes, flight.nbytes)
            flight.high_water_frames = max(flight.high_water_frames, flight.frames)
        self._deliver(Batch(segments, nbytes, frames))
        return True


def _put(send: MemoryObjectSendStream[Message], message: Message) -> None:
    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.WouldBlock):
        send.send_nowait(message)


def _info(ch: ChannelReader) -> ChannelInfo:
    return ChannelInfo(key=ch.full_name, detector=ch.detector, name=ch.name, frame_shape=ch.frame_shape,
                       dtype=ch.dtype, units=ch.units, label=ch.label, axes=ch.axes, settings=ch.settings,
                       compression=ch.compression, chunk_shape=ch.chunk_shape)
