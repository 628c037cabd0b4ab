"""The saver: one file, its detectors and channels, and its writer thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
import numpy.typing as npt

from ._channel import Channel
from ._compress import choose_chunk_frames
from ._errors import ConfigError, LayoutFrozenError, SaverClosedError, StreamSaveError
from ._events import Event, EventHub, FileClosed, Subscription, WriterFailed
from ._layout import Naming, check_name, settings_to_json
from ._spec import Axis, Compression, Overflow
from ._stats import Progress, SaverStatistics, Timer
from ._waker import LoopWaker
from ._writer import Writer
from .backends import Backend

__all__ = ("Detector", "Saver", "SaverConfig", "open_saver")

log = logging.getLogger(__name__)

Mode = Literal["w-", "x", "w"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SaverConfig:
    """Everything :func:`open_saver` accepts, validated. See :func:`open_saver`."""

    path: Path
    mode: Mode = "w-"
    compression: Compression | None = None
    flush_interval: float = 1.0
    queue_size: int | None = None
    queue_bytes: int = 256 * 2**20
    overflow: Overflow = Overflow.BLOCK
    swmr: bool = True
    chunk_bytes: int = 2 * 2**20
    max_chunk_frames: int = 16384
    max_frame_bytes: int = 1 << 30
    compress_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    max_inflight: int = 8
    fsync: bool = True
    close_timeout: float = 10.0
    title: str = "streamsave recording"
    progress_interval: float = 0.2
    high_water: float = 0.8
    backend: str | Callable[..., Backend] = "h5py"

    def __post_init__(self) -> None:
        if self.mode not in ("w-", "x", "w"):
            raise ConfigError(f"mode={self.mode!r} is not supported; expected 'w-' (create, never overwrite; "
                              "the default), 'x' (the same) or 'w' (create or overwrite)")
        if isinstance(self.high_water, bool) or not isinstance(self.high_water, int | float) or \
                not 0 < self.high_water <= 1:
            raise ConfigError(f"high_water must be a fraction of the queue in (0, 1], got {self.high_water!r}")
        for name in ("flush_interval", "close_timeout", "progress_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("queue_bytes", "chunk_bytes", "max_chunk_frames", "max_frame_bytes", "compress_threads",
                     "max_inflight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.queue_size is not None and (
                isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1):
            raise ConfigError(f"queue_size must be a positive number of frames or None, got {self.queue_size!r}")
        if self.backend != "h5py" and not callable(self.backend):
            raise ConfigError(f"backend={self.backend!r} is unknown; expected 'h5py' or a callable "
                              "(path, mode) -> Backend")

    def open_backend(self, mode: str | None = None) -> Backend:
        """Open the file: ``mode`` defaults to the saver's (``"x"`` means ``"w-"``)."""
        mode = mode or ("w-" if self.mode == "x" else self.mode)
        factory: Callable[..., Backend]
        if callable(self.backend):
            factory = self.backend
        else:
            from .backends.h5py import H5pyBackend as factory
        return factory(self.path, mode, swmr=self.swmr)


class Detector:
    """A group of channels recorded together (a camera, a spectrometer, ...): a
    ``DetectorNNN`` group in the file. Create with :meth:`Saver.add_detector`."""

    def __init__(self, saver: Saver, name: str, settings_json: str) -> None:
        self._saver = saver
        self.name = name
        self._settings_json = settings_json
        #: the detector's group in the file
        self.path = saver._naming.detector()
        self.channels: dict[str, Channel] = {}

    def __repr__(self) -> str:
        return f"<Detector {self.name!r} channels={list(self.channels)}>"

    def add_channel(
        self,
        name: str,
        *,
        shape: Sequence[int] = (),
        dtype: npt.DTypeLike = np.float64,
        units: str = "",
        label: str = "",
        axes: Sequence[Axis] = (),
        chunk_frames: int | None = None,
        queue_size: int | None = None,
        overflow: Overflow | str | None = None,
        copy: bool = False,
    ) -> Channel:
        """Declare a stream of frames of one shape and dtype.

        :param name: shown as the channel's title (any text without ``/``).
        :param shape: shape of one frame: ``()`` for a scalar, ``(2048,)`` for a
            spectrum, ``(512, 512)`` for an image, any length for ND data.
        :param dtype: numeric numpy dtype of the frames (bool, int, uint, float, complex).
        :param units: units of the frame values.
        :param label: what the values are (default: the name).
        :param axes: one :class:`Axis` per frame dimension, in order (may be shorter).
        :param chunk_frames: frames per HDF5 chunk (default: as many as fit in the
            saver's ``chunk_bytes``, at most ``max_chunk_frames``).
        :param queue_size: queue capacity in frames (default: the saver's
            ``queue_size``, or as many frames as fit in ``queue_bytes``).
        :param overflow: what a full queue does (default: the saver's policy).
        :param copy: copy every pushed frame, so the producer may reuse its buffer.
        :raises ~streamsave.ConfigError: invalid or duplicate name, shape, dtype, axes.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        saver = self._saver
        saver._check_can_add(f"channel {name!r}")
        check_name("channel", name)
        if name in self.channels:
            raise ConfigError(f"detector {self.name!r} already has a channel named {name!r}")
        shape_t = _check_shape(name, shape)
        dt = _check_dtype(name, dtype)
        if not isinstance(units, str) or not isinstance(label, str):
            raise ConfigError(f"channel {name!r}: units and label must be strings, got {units!r}, {label!r}")
        axes = tuple(axes)
        if len(axes) > len(shape_t) or not all(isinstance(a, Axis) for a in axes):
            raise ConfigError(f"channel {name!r}: axes must be at most {len(shape_t)} Axis objects "
                              f"(one per frame dimension), got {axes!r}")
        for i, axis in enumerate(axes):
            axis.coordinates(shape_t[i])
        cfg = saver.config
        frame_nbytes = int(np.prod(shape_t, dtype=np.int64)) * dt.itemsize
        if frame_nbytes > cfg.max_frame_bytes:
            raise ConfigError(f"channel {name!r}: frames of {frame_nbytes} bytes exceed max_frame_bytes="
                              f"{cfg.max_frame_bytes}")
        if chunk_frames is None:
            chunk_frames = choose_chunk_frames(frame_nbytes, cfg.chunk_bytes, cfg.max_chunk_frames)
        elif isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ConfigError(f"channel {name!r}: chunk_frames must be a positive integer, got {chunk_frames!r}")
        if queue_size is None:
            queue_size = cfg.queue_size or max(2 * chunk_frames, min(1 << 20, cfg.queue_bytes // frame_nbytes))
        elif isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"channel {name!r}: queue_size must be a positive integer, got {queue_size!r}")
        channel = Channel(
            saver, detector=self.name, name=name, shape=shape_t, dtype=dt, units=units, label=label or name,
            axes=axes, chunk_frames=chunk_frames, queue_size=queue_size,
            overflow=cfg.overflow if overflow is None else Overflow.parse(overflow), copy=bool(copy),
            paths=saver._naming.channel(self.path, len(shape_t), len(axes)))
        channel._detector_obj = self
        self.channels[name] = channel
        saver._channels.append(channel)
        saver._pending_layout.append(("channel", channel))
        return channel


def _check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape_t = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"channel {name!r}: shape must be a sequence of integers, got {shape!r}") from None
    if any(s < 1 for s in shape_t) or any(isinstance(s, bool) for s in shape):
        raise ConfigError(f"channel {name!r}: every dimension of shape must be at least 1, got {shape!r}")
    return shape_t


def _check_dtype(name: str, dtype: npt.DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"channel {name!r}: dtype {dtype!r} is not a numpy dtype") from None
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
        raise ConfigError(f"channel {name!r}: dtype {dt} is not supported; expected a numeric dtype "
                          "(bool, int, uint, float or complex)")
    return dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt


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
        saver = cls(_make_config(path, options))
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

    def _pending_layout_empty(self) -> bool:
        return not self._pending_layout

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


def _make_config(path: str | os.PathLike[str], options: dict[str, Any]) -> SaverConfig:
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"path must be a string or os.PathLike, got {path!r}")
    opts = dict(options)
    if "compression" in opts:
        opts["compression"] = Compression.parse(opts["compression"])
    if "overflow" in opts:
        opts["overflow"] = Overflow.parse(opts["overflow"])
    try:
        return SaverConfig(path=Path(path), **opts)
    except TypeError as exc:
        raise ConfigError(f"open_saver: {exc}") from None


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
        one per CPU).
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

