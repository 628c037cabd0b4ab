"""The saver: one file, its detectors and channels, and its writer thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio

from ._channel import Channel
from ._config import SaverConfig, make_config
from ._control import Control
from ._detector import Detector
from ._errors import ConfigError, QueueFull, StreamSaveError
from ._events import Event, EventHub, FileClosed, Subscription, WriterFailed
from ._layout import Naming, check_name, settings_to_json
from ._log import MAX_PENDING, LogHandler, check_message
from ._scan import Scan, declare_scan
from ._spec import Axis
from ._stats import Progress, SaverStatistics, Timer
from ._waker import LoopWaker
from ._writer import Writer, WriterHooks

__all__ = ("Saver", "open_saver")

log = logging.getLogger(__name__)


class Saver:
    """An open file being written. Obtain one with :func:`open_saver` (or
    :meth:`Saver.open` and :meth:`aclose` where one task opens and another closes).
    """

    def __init__(self, config: SaverConfig) -> None:
        self.config = config
        #: the file, as an absolute path (resolved when the saver opened)
        self.path = config.path
        self.detectors: dict[str, Detector] = {}
        #: the scans declared with :meth:`add_scan`, by name
        self.scans: dict[str, Scan] = {}
        self._naming = Naming()
        self._hub = EventHub()
        self._waker = LoopWaker()
        self._control = Control(config, self._waker, self._publish)
        self._opened = anyio.Event()
        self._closed = anyio.Event()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._flushes = 0
        self._timers = {"encode": Timer(), "write": Timer(), "flush": Timer()}
        writer = Writer(self._control, _Hooks(self), self._timers, lambda: bool(self._hub.subscriptions))
        self._thread = threading.Thread(target=writer.run, name=f"streamsave-writer:{config.path.name}", daemon=True)

    def __repr__(self) -> str:
        return f"<Saver {str(self.path)!r} state={self._control.state}>"

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> Saver:
        """Open a saver without a context manager; close it with :meth:`aclose`.

        Takes the same arguments as :func:`open_saver`; returns once the file exists.

        :raises ~streamsave.ConfigError: an invalid option.
        :raises ~streamsave.StorageError: the file cannot be created (it exists and
            ``mode`` is not ``"w"``, its directory is missing, no permission, ...).
        """
        config = make_config(path, options)
        config.check_target()
        saver = cls(config)
        saver._thread.start()
        with anyio.CancelScope(shield=True):
            await saver._opened.wait()
        failure = saver._control.failure
        if failure is not None:
            with anyio.CancelScope(shield=True):
                await saver._closed.wait()
            raise failure
        return saver

    # ---------------------------------------------------------------- building
    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> Detector:
        """Declare a detector (a ``DetectorNNN`` group); then add its channels.

        Safe from any thread.

        :param name: the detector's title (any text without ``/``).
        :param settings: acquisition settings to store with it, as a mapping of JSON
            values (stored as XML and JSON attributes, or a dataset when large).
        :raises ~streamsave.ConfigError: invalid or duplicate name, settings that are
            not JSON values.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        check_name("detector", name)
        settings_json = settings_to_json(name, settings)
        with self._control.declaring(f"detector {name!r}") as layout:
            if name in self.detectors:
                raise ConfigError(f"a detector named {name!r} already exists in {str(self.path)!r}")
            detector = Detector(self._control, self._naming, name, settings_json, self._naming.detector())
            self.detectors[name] = detector
            layout.append(("detector", detector))
        return detector

    def add_scan(self, name: str, *, axes: Sequence[Axis], average: int = 1, overwrite: bool = False,
                 settings: Mapping[str, Any] | None = None) -> Scan:
        """Declare a scan (a ``ScanNNN`` group, as PyMoDAQ's DAQ_Scan writes); then add
        its detectors and their channels, and push each frame with its point.

        Safe from any thread. Like every declaration, scans must be added before the
        first push when the file is in SWMR mode (the default); open the saver with
        ``swmr=False`` to add scans while others are being written.

        :param name: the scan's title.
        :param axes: the navigation axes. With ``values`` on every axis, a grid scan
            of ``len(values)`` points per axis (``push(frame, index=(ix, iy))``);
            without values, an adaptive scan (``push(frame, position=(x, y))``).
        :param average: repetitions stored per grid point (PyMoDAQ's "N average": a
            leading axis of ``average`` entries; the n-th push at a point fills the
            n-th); 1 for none.
        :param overwrite: a point pushed once more than ``average`` replaces its last
            repetition instead of raising :class:`~streamsave.ScanPointError`.
        :param settings: the scan's settings (JSON values), stored like a detector's.
        :raises ~streamsave.ConfigError: invalid or duplicate name, axes or average.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        :raises ~streamsave.ConfigError: the backend cannot store a scan (scan points
            are stored by direct chunk write).
        """
        caps = self.config.capabilities
        if not caps.direct_chunk_write:
            raise ConfigError(f"backend {caps.name!r} cannot store scan {name!r}: scans are stored by direct chunk "
                              "write, which it has not; use backend='h5py' or 'tables'")
        return declare_scan(self._control, self.scans, name, axes, average=average, overwrite=overwrite,
                            settings=settings)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every channel, in the order added."""
        return self._control.channels

    @property
    def state(self) -> str:
        """``"opening"``, ``"open"``, ``"closing"``, ``"closed"`` or ``"failed"``."""
        return self._control.state

    def _publish(self, event: Event) -> None:
        """Deliver an event to subscribers (any thread; never waits)."""
        if self._hub.subscriptions or isinstance(event, FileClosed | WriterFailed):
            self._waker.call(partial(self._hub.publish, event))

    # ---------------------------------------------------------------- log messages
    def log(self, text: str, *, level: int = logging.INFO, timestamp: float | None = None) -> None:
        """Save a message in the file's log (``/RawData/Logger``, read back as ``run.log``).

        Never waits: the message is stored at the next flush, with the frames (so it is
        durable within ``flush_interval``). Safe from any thread.

        :param text: the message.
        :param level: a :mod:`logging` level (default ``logging.INFO``).
        :param timestamp: when it happened, seconds since the Unix epoch (default: now).
        :raises ~streamsave.LogMessageError: text not a str, level not an int, timestamp
            not a finite number.
        :raises ~streamsave.QueueFull: 100,000 messages are waiting for the writer.
        :raises ~streamsave.SaverClosedError: the saver is closed (or the writer's failure).
        """
        message, lvl, when = check_message(text, level, timestamp)
        outcome = self._control.log.post(message, lvl, when)
        if outcome == "closed":
            raise self._control.refusal()
        if outcome == "full":
            raise QueueFull(f"the log of {str(self.path)!r} has {MAX_PENDING:,} messages waiting for the writer; "
                            "this one was not saved")

    def log_handler(self, level: int = logging.NOTSET) -> LogHandler:
        """A :class:`logging.Handler` saving records in this file (see :class:`~streamsave.LogHandler`):
        ``logging.getLogger("mylab").addHandler(saver.log_handler(logging.INFO))``."""
        return LogHandler(self, level)

    # ---------------------------------------------------------------- public operations
    async def flush(self) -> dict[str, int]:
        """Write every frame accepted so far, flush the file, and return the number
        of durable frames per channel (``"detector/channel"`` keys).

        Waits for the writer (typically milliseconds). Cancelling the wait does not
        cancel the flush. Durable means: in the file as the operating system holds
        it, so a killed process loses none of them; with ``fsync="flush"`` also on
        the device, so a power cut loses none either.

        :raises ~streamsave.StorageError: the writer failed.
        """
        control = self._control
        if control.failure is not None:
            raise control.failure
        event = control.request_flush()
        if event is not None:
            await event.wait()
        if control.failure is not None:
            raise control.failure
        return {ch.full_name: ch.statistics().frames_durable for ch in control.channels}

    async def aclose(self, *, abort: bool = False) -> SaverStatistics:
        """Stop accepting frames, write everything accepted, close the file.

        With ``abort`` (used when the ``async with`` block raised or was cancelled),
        the writer keeps writing queued frames for ``close_timeout`` seconds; then it
        drops (and counts) everything not yet stored, queued or in its pipeline, and
        closes the file, so closing ends within ``close_timeout`` plus the one storage
        call in progress at that moment. Safe to call more than once and from any
        task; the wait is shielded from cancellation.

        :returns: the final statistics.
        :raises ~streamsave.StorageError: the writer failed (also when it failed earlier).
        """
        self._control.begin_close(abort=abort)
        with anyio.CancelScope(shield=True):
            await self._closed.wait()
            await anyio.to_thread.run_sync(self._thread.join)
        if self._control.failure is not None:
            raise self._control.failure
        return self.statistics()

    async def wait_closed(self) -> SaverStatistics:
        """Wait until the file is closed (by whoever closes it); return the final
        statistics, or raise the writer's failure."""
        await self._closed.wait()
        if self._control.failure is not None:
            raise self._control.failure
        return self.statistics()

    def statistics(self) -> SaverStatistics:
        """A snapshot of every channel's counters and the totals (final after close)."""
        chans = tuple(ch.statistics() for ch in self._control.channels)
        end = self._ended if self._ended is not None else time.monotonic()
        return SaverStatistics(
            path=str(self.path), state=self._control.state, channels=chans,
            frames_pushed=sum(c.frames_pushed for c in chans),
            frames_written=sum(c.frames_written for c in chans),
            frames_durable=sum(c.frames_durable for c in chans),
            frames_dropped=sum(c.frames_dropped for c in chans),
            bytes_written=sum(c.bytes_written for c in chans),
            bytes_stored=sum(c.bytes_stored for c in chans),
            elapsed=end - self._started, flushes=self._flushes, error=self._control.failure,
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

        Yields a :class:`~streamsave.Progress` now, then every ``progress_interval``
        while the count changes, and a last one when ``target`` frames are written or
        the file closes. It reads the channel's counters and holds no subscription,
        so breaking out of the loop leaves nothing behind.
        """
        if channel not in self._control.channels:
            raise ConfigError(f"channel {channel!r} does not belong to the saver of {str(self.path)!r}")
        start = time.monotonic()
        first = channel.statistics().frames_written

        def make() -> Progress:
            current = channel.statistics().frames_written
            elapsed = time.monotonic() - start
            rate = (current - first) / elapsed if elapsed > 0 else 0.0
            remaining = None
            if target is not None and rate > 0:
                remaining = max(0.0, (target - current) / rate)
            return Progress(channel.full_name, current, target, elapsed, remaining, rate)

        update = make()
        yield update
        while not self._closed.is_set() and (target is None or update.current < target):
            with anyio.move_on_after(self.config.progress_interval):
                await self._closed.wait()
            previous, update = update, make()
            if update.current != previous.current or self._closed.is_set():
                yield update


class _Hooks(WriterHooks):
    """The writer's three messages to its saver, each handed to the event loop."""

    def __init__(self, saver: Saver) -> None:
        self._saver = saver

    def opened(self) -> None:
        saver = self._saver
        saver._control.opened()
        saver._waker.call(saver._opened.set)

    def failed(self, exc: BaseException) -> None:
        # Logged at DEBUG only: the failure is raised to every caller, which decides.
        log.debug("streamsave writer for %s failed: %r", self._saver.path, exc)
        saver = self._saver
        saver._control.fail(exc)
        saver._publish(WriterFailed(error=exc))
        saver._waker.call(saver._opened.set)

    def done(self, flushes: int) -> None:
        saver = self._saver
        saver._flushes = flushes
        saver._ended = time.monotonic()
        saver._publish(FileClosed(statistics=saver.statistics()))
        saver._waker.call(saver._closed.set)


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
    :param queue_size: the most frames held per channel, queued or being written,
        for every channel (raised to two chunks where that is smaller; default: as
        many frames as fit in ``queue_bytes``, 256 MiB, capped by ``memory_budget``).
    :param memory_budget: the most bytes all channels' queues hold together
        (default 1 GiB), checked as channels are declared.
    :param overflow: policy of a full queue: ``"block"`` (default), ``"drop_oldest"``,
        ``"drop_newest"``, ``"error"``.
    :param swmr: switch the file to SWMR mode when writing starts, so readers can
        follow it live and a killed writer leaves every flushed frame readable; every
        detector and channel must then be added before the first push. ``None``
        (default): SWMR where the backend has it (h5py), a plain file where it does
        not (PyTables, HSDS); ``True`` on a backend without SWMR is a ``ConfigError``.
    :param backend: ``"h5py"`` (default, local file), ``"tables"`` (local file through
        PyTables, no SWMR), ``"h5pyd"`` (an HSDS domain, ``path`` like
        ``/home/USER/run.h5``), or a :class:`~streamsave.backends.Backend` class.
    :param backend_options: keywords for the backend (for h5pyd ``endpoint``,
        ``username``, ``password``); never shown in reprs, logs or errors.
    :param chunk_bytes: target size of one chunk (default 2 MiB, or the backend's
        largest request when that is smaller).
    :param compress_threads: threads that assemble and compress chunks (default:
        one per CPU but one, which is left to the event loop and the writer thread).
    :param fsync: ``"close"`` (default): wait until the file is on the device when
        closing; ``"flush"``: also at every flush, so durable frames survive a power
        cut, not only a killed process; ``"never"``. ``True``/``False`` mean
        ``"close"``/``"never"``.
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
            if exc is not saver._control.failure:  # the writer's own failure is raised to the caller
                log.warning("closing %s after an error also failed: %r", path, exc)
        raise
    await saver.aclose()

