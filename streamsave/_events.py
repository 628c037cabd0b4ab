"""Typed events about a saver, for any number of subscribers.

The writer never waits for a subscriber. Each subscriber has its own bounded buffer;
when it is full, progress events are dropped and counted (``Subscription.lost``).
Terminal events (:class:`WriterFailed`, :class:`FileClosed`) are always delivered,
and their facts stay available from ``statistics()`` and ``wait_closed()``.

Every event is a small frozen dataclass; ``match`` on the type::

    async with saver.subscribe() as events:
        async for event in events:
            match event:
                case streamsave.FramesDropped(channel=ch, count=n):
                    print(f"{ch} dropped {n} frames")
                case streamsave.FileClosed():
                    break
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import anyio

if TYPE_CHECKING:
    from ._stats import ChannelStatistics, SaverStatistics

__all__ = (
    "Backpressure",
    "ChannelCreated",
    "Event",
    "FileClosed",
    "FileOpened",
    "Flushed",
    "FramesDropped",
    "FramesWritten",
    "Subscription",
    "WriterFailed",
)


def _now() -> float:
    return time.time()


@dataclass(frozen=True, kw_only=True, slots=True)
class FileOpened:
    """The file was created and is ready for frames."""

    path: str
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelCreated:
    """A channel's datasets exist in the file; everything a consumer needs to read it."""

    channel: str
    path: str
    dataset: str
    time_axis: str
    frame_shape: tuple[int, ...]
    dtype: str
    chunk_shape: tuple[int, ...]
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class FramesWritten:
    """Progress of one channel (rate-limited to ``progress_interval``).

    ``frames`` is the number written since the previous such event; the other
    counts are cumulative totals.
    """

    channel: str
    frames: int
    frames_written: int
    frames_durable: int
    frames_dropped: int
    bytes_written: int
    bytes_stored: int
    compression_ratio: float
    queue_fill: int
    time: float = field(default_factory=_now)

    @classmethod
    def since(cls, st: ChannelStatistics, reported: int) -> FramesWritten:
        """The event for a channel's statistics ``st``, ``reported`` frames having been
        announced by the previous one."""
        return cls(channel=st.name, frames=st.frames_written - reported, frames_written=st.frames_written,
                   frames_durable=st.frames_durable, frames_dropped=st.frames_dropped,
                   bytes_written=st.bytes_written, bytes_stored=st.bytes_stored,
                   compression_ratio=st.compression_ratio, queue_fill=st.queue_fill)


@dataclass(frozen=True, kw_only=True, slots=True)
class Flushed:
    """A flush completed: ``durable`` frames per channel are on disk."""

    durable: dict[str, int]
    seconds: float
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class Backpressure:
    """A channel's queue crossed its high-water mark (``active=True``: producers are, or
    soon will be, slowed or dropping) or drained back below half of it (``active=False``)."""

    channel: str
    active: bool
    queue_fill: int
    queue_capacity: int
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class FramesDropped:
    """Frames were dropped: ``count`` since the previous such event, ``total`` in all."""

    channel: str
    policy: str
    count: int
    total: int
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class WriterFailed:
    """The writer stopped on an error; the file is readable up to the last flush."""

    error: BaseException
    time: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True, slots=True)
class FileClosed:
    """The file is closed; ``statistics`` holds the final figures."""

    statistics: SaverStatistics
    time: float = field(default_factory=_now)


Event: TypeAlias = (
    FileOpened | ChannelCreated | FramesWritten | Flushed | Backpressure | FramesDropped | WriterFailed | FileClosed
)
_TERMINAL = (WriterFailed, FileClosed)


class Subscription:
    """An async iterator of events with its own bounded buffer.

    Iteration ends after :class:`FileClosed`. ``lost`` counts the progress events
    dropped because this subscriber fell behind.
    """

    def __init__(self, buffer: int) -> None:
        self._buffer: deque[Event] = deque()
        self._size = buffer
        self._ready = anyio.Event()
        self._done = False
        self._finished = False
        #: progress events dropped because the buffer was full
        self.lost = 0

    def _put(self, event: Event) -> None:
        """Called on the event loop thread by the hub."""
        if len(self._buffer) >= self._size and not isinstance(event, _TERMINAL):
            self.lost += 1
            return
        self._buffer.append(event)
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        """The next event; waits for one. Cancelling the wait loses nothing."""
        while not self._buffer:
            if self._done or self._finished:
                raise StopAsyncIteration
            self._ready = anyio.Event()
            await self._ready.wait()
        event = self._buffer.popleft()
        if isinstance(event, FileClosed):
            self._finished = True
        return event

    def _close(self) -> None:
        self._done = True
        self._ready.set()


class EventHub:
    """Fans events out to subscribers; :meth:`publish` runs on the loop thread."""

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self.history_closed: FileClosed | None = None

    def publish(self, event: Event) -> None:
        for sub in self.subscriptions:
            sub._put(event)
        if isinstance(event, FileClosed):
            self.history_closed = event

    def add(self, buffer: int) -> Subscription:
        sub = Subscription(buffer)
        if self.history_closed is not None:
            sub._put(self.history_closed)
        self.subscriptions.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        sub._close()
