"""The saver: one file, its detectors and channels, and its writer thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from ._channel import Channel
from ._config import SaverConfig, make_config
from ._detector import Detector
from ._errors import ConfigError, LayoutFrozenError, SaverClosedError, StreamSaveError
from ._events import Event, EventHub, FileClosed, Subscription, WriterFailed
from ._layout import Naming, check_name, settings_to_json
from ._stats import Progress, SaverStatistics, Timer
from ._waker import LoopWaker
from ._writer import Writer

__all__ = ("Saver", "open_saver")

log = logging.getLogger(__name__)


class Saver:
    """An open file being written. Obtain one with :func:`open_saver` (or
    :meth:`Saver.open` and :meth:`aclose` where one task opens and another closes).
    """

    def __init__(self, config: SaverConfig) -> None:
        self.config = config
        self.path = config.path
        self.detectors: dict[str, Detector] = {}
        self._channels: list[Channel] = []
        self._pending_layout: deque[tuple[str, Any]] = deque()
        self._naming = Naming()
        self._wake = threading.Event()
        self._waker = LoopWaker()
        self._loop_thread = threading.get_ident()
        self._state = "opening"
        self._frozen = False
        self._closing = False
        self._refuse_pushes = False
        self._failure: BaseException | None = None
        self._abort_deadline: float | None = None
        self._flush_requests: list[anyio.Event] = []
        self._opened = anyio.Event()
        self._closed = anyio.Event()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._flushes = 0
        self._hub = EventHub()
        self._timers = {"encode": Timer(), "write": Timer(), "flush": Timer()}
        self._thread = threading.Thread(target=Writer(self).run, name=f"streamsave-writer:{config.path.name}",
                                        daemon=True)

    def __repr__(self) -> str:
        return f"<Saver {str(self.path)!r} state={self._state}>"

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> Saver:
        """Open a saver without a context manager; close it with :meth:`aclose`.

        Takes the same arguments as :func:`open_saver`.

        :raises ~streamsave.StorageError: the file cannot be created (exists, no
            permission, missing directory, ...).
        """
        saver = cls(make_config(path, options))
        saver._thread.start()
        with anyio.CancelScope(shield=True):
            await saver._opened.wait()
        if saver._failure is not None:
            await saver._closed.wait()
            raise saver._failure
        return saver

    # ---------------------------------------------------------------- building
    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> Detector:
        """Declare a detector (a ``DetectorNNN`` group); then add its channels.

        :param name: the detector's title (any text without ``/``).
        :param settings: acquisition settings to store with it, as a mapping of JSON
            values (stored as XML and JSON attributes, or a dataset when large).
        :raises ~streamsave.ConfigError: invalid or duplicate name, settings that are
            not JSON values.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        """
        self._check_can_add(f"detector {name!r}")
        check_name("detector", name)
        if name in self.detectors:
            raise ConfigError(f"a detector named {name!r} already exists in {str(self.path)!r}")
        detector = Detector(self, name, settings_to_json(name, settings))
        self.detectors[name] = detector
        self._pending_layout.append(("detector", detector))
        return detector

    def _check_can_add(self, what: str) -> None:
        if self._refuse_pushes:
            self._raise_refusal()
        if self._frozen and self.config.swmr:
            raise LayoutFrozenError(
                f"cannot add {what}: writing has started and {str(self.path)!r} is in SWMR mode, which forbids "
                "new objects; add every detector and channel before the first push, or open with swmr=False")

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every channel, in the order added."""
        return tuple(self._channels)

    # ---------------------------------------------------------------- callbacks from producers / writer
    def _on_first_push(self) -> None:
        self._frozen = True

    def _wake_writer(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def _raise_refusal(self) -> None:
        if self._failure is not None:
            raise self._failure
        raise SaverClosedError(f"the saver for {str(self.path)!r} is {self._state}; no more frames are accepted")

    def _publish(self, event: Event) -> None:
        """Deliver an event to subscribers (any thread; never waits)."""
        if self._hub.subscriptions or isinstance(event, FileClosed | WriterFailed):
            self._waker.call(partial(self._hub.publish, event))

    def _writer_opened(self) -> None:
        self._state = "open"
        self._waker.call(self._opened.set)

    def _writer_failed(self, exc: BaseException) -> None:
        log.error("streamsave writer for %s failed: %r", self.path, exc)
        self._failure = exc
        self._publish(WriterFailed(error=exc))
        self._state = "failed"
        self._refuse_pushes = True
        for ch in self._channels:
            ch._wake_waiters()
        self._waker.call(self._opened.set)

    def _writer_done(self, flushes: int) -> None:
        self._flushes = flushes
        self._ended = time.monotonic()
        if self._failure is None:
            self._state = "closed"
        for ch in self._channels:
            ch._wake_waiters()
        for event in self._flush_requests:
            self._waker.call(event.set)
        self._publish(FileClosed(statistics=self.statistics()))
        self._waker.call(self._closed.set)

    # ---------------------------------------------------------------- public operations
    async def flush(self) -> dict[str, int]:
        """Write every frame accepted so far, flush the file, and return the number
        of durable frames per channel (``"detector/channel"`` keys).

        Waits for the writer (typically milliseconds). Cancelling the wait does not
        cancel the flush.

        :raises ~streamsave.StorageError: the writer failed.
        """
        if self._failure is not None:
            raise self._failure
        if self._state != "closed":
            event = anyio.Event()
            self._flush_requests.append(event)
            self._wake_writer()
            await event.wait()
        if self._failure is not None:
            raise self._failure
        return {ch.full_name: ch._durable for ch in self._channels}

    async def aclose(self, *, abort: bool = False) -> SaverStatistics:
        """Stop accepting frames, write everything accepted, close the file.

        With ``abort`` (used when the ``async with`` block raised or was cancelled),
        frames still queued after ``close_timeout`` seconds are dropped and counted,
        so closing always ends in bounded time. Safe to call more than once and from
        any task; the wait is shielded from cancellation.

        :returns: the final statistics.
        :raises ~streamsave.StorageError: the writer failed (also when it failed earlier).
        """
        if not self._closing:
            self._closing = True
            self._refuse_pushes = True
            if self._state == "open":
                self._state = "closing"
            if abort:
                self._abort_deadline = time.monotonic() + self.config.close_timeout
            for ch in self._channels:
                ch._wake_waiters()
            self._wake.set()
        with anyio.CancelScope(shield=True):
            await self._closed.wait()
            await anyio.to_thread.run_sync(self._thread.join)
        if self._failure is not None:
            raise self._failure
        return self.statistics()

    async def wait_closed(self) -> SaverStatistics:
        """Wait until the file is closed (by whoever closes it); return the final
        statistics, or raise the writer's failure."""
        await self._closed.wait()
        if self._failure is not None:
            raise self._failure
        return self.statistics()

    def statistics(self) -> SaverStatistics:
        """A snapshot of every channel's counters and the totals (final after close)."""
        chans = tuple(ch.statistics() for ch in self._channels)
        end = self._ended if self._ended is not None else time.monotonic()
        return SaverStatistics(
            path=str(self.path), state=self._state, channels=chans,
            frames_pushed=sum(c.frames_pushed for c in chans),
            frames_written=sum(c.frames_written for c in chans),
            frames_durable=sum(c.frames_durable for c in chans),
            frames_dropped=sum(c.frames_dropped for c in chans),
            bytes_written=sum(c.bytes_written for c in chans),
            bytes_stored=sum(c.bytes_stored for c in chans),
            elapsed=end - self._started, flushes=self._flushes, error=self._failure,
            timings={name: timer.snapshot() for name, timer in self._timers.items()},
        )

    @asynccontextmanager
    async def subscribe(self, *, buffer: int = 1024) -> AsyncIterator[Subscription]:
        """Receive the saver's events while the block runs.

        ``async for event in subscription`` yields :mod:`events <streamsave>` in order
        and ends after :class:`~streamsave.FileClosed` (also when subscribing after
        the close). A subscriber that falls more than ``buffer`` events behind loses
        progress events (counted in ``subscription.lost``), never terminal ones, and
        never slows the writer.
        """
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ConfigError(f"buffer must be a positive number of events, got {buffer!r}")
        sub = self._hub.add(buffer)
        try:
            yield sub
        finally:
            self._hub.remove(sub)

    async def progress(self, channel: Channel, *, target: int | None = None) -> AsyncIterator[Progress]:
        """Follow one channel's written frames, like ophyd-async's ``WatcherUpdate``.

        Yields a :class:`~streamsave.Progress` at every progress event of the channel
        (every ``progress_interval``), and a last one when ``target`` frames are
        written or the file closes.
        """
        start = time.monotonic()
        first = channel._written

        def make(current: int) -> Progress:
            elapsed = time.monotonic() - start
            rate = (current - first) / elapsed if elapsed > 0 else 0.0
            remaining = None
            if target is not None and rate > 0:
                remaining = max(0.0, (target - current) / rate)
            return Progress(channel.full_name, current, target, elapsed, remaining, rate)

        async with self.subscribe() as events:
            yield make(channel._written)
            async for event in events:
                if isinstance(event, FileClosed):
                    yield make(channel._written)
                    return
                if getattr(event, "channel", None) == channel.full_name and hasattr(event, "frames_written"):
                    update = make(channel._written)
                    yield update
                    if target is not None and update.current >= target:
                        return


@asynccontextmanager
async def open_saver(path: str | os.PathLike[str], **options: Any) -> AsyncIterator[Saver]:
    """Open ``path`` for continuous saving; leaving the block writes everything and
    closes the file.

    :param path: the HDF5 file to create.
    :param mode: ``"w-"`` (default) creates the file and fails if it exists;
        ``"w"`` overwrites.
    :param compression: ``None`` (default), ``"blosc2-lz4"``, ``"blosc2-zstd"``, ...
        or a :class:`Compression`.
    :param flush_interval: seconds between flushes (default 1.0): the most any
        accepted frame waits before it is durable.
    :param queue_size: queue capacity in frames for every channel (default: as
        many frames as fit in ``queue_bytes``, 256 MiB).
    :param overflow: policy of a full queue: ``"block"`` (default), ``"drop_oldest"``,
        ``"drop_newest"``, ``"error"``.
    :param swmr: switch the file to SWMR mode when writing starts (default True),
        so readers can follow it live and a killed writer leaves every flushed
        frame readable. Every detector and channel must then be added before the
        first push.
    :param chunk_bytes: target size of one chunk (default 2 MiB).
    :param compress_threads: threads that assemble and compress chunks (default:
        one per CPU but one, which is left to the event loop and the writer thread).
    :param fsync: after closing, wait until the file is on the device (default True).
    :param close_timeout: when the block raised or was cancelled, how long to keep
        writing queued frames before dropping (and counting) the rest (default 10 s).
    :param title: the file's title.
    :raises ~streamsave.ConfigError: an invalid option.
    :raises ~streamsave.StorageError: the file cannot be created or written; also
        raised on leaving the block if the writer failed meanwhile.
    """
    saver = await Saver.open(path, **options)
    try:
        yield saver
    except BaseException:
        try:
            await saver.aclose(abort=True)
        except StreamSaveError as exc:
            if exc is not saver._failure:  # the writer's own failure is logged once, where it happened
                log.warning("closing %s after an error also failed: %r", path, exc)
        raise
    await saver.aclose()

