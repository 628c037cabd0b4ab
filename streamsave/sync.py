"""A blocking facade for scripts and Qt/PyMoDAQ-style code without an event loop.

::

    import streamsave.sync

    with streamsave.sync.open_saver("run.h5", compression="blosc2-lz4") as saver:
        image = saver.add_detector("Camera").add_channel("image", shape=(512, 512), dtype="uint16")
        image.push(frame)              # blocks this thread while the queue is full
        saver.flush()

The facade runs the real (async) saver on its own event-loop thread, started by
``open_saver`` and stopped when the block ends. Pushes go straight into the channel's
queue from the calling thread (:meth:`Channel.push_from_thread`), so they cost about
as much as the async ``push`` and never wait for the loop thread. Any thread may push.

Events and progress are blocking iterators; another thread may consume them while
this one pushes::

    with saver.subscribe() as events:          # inside the open_saver block
        for event in events:                   # ends after FileClosed
            ...
    for p in saver.progress(image, target=1000):
        print(f"{p.current}/{p.target}")
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, SupportsIndex, TypeVar

import anyio.from_thread
import numpy as np
import numpy.typing as npt

from ._channel import Channel as _AsyncChannel
from ._config import SaverConfig
from ._detector import Detector as _AsyncDetector
from ._errors import StreamSaveError
from ._events import Event
from ._events import Subscription as _AsyncSubscription
from ._layout import ChannelPaths
from ._log import LogHandler
from ._replay import Replay, ReplayItem
from ._replay_into import ReplayReport
from ._replay_into import replay_into as _replay_into
from ._saver import Saver as _AsyncSaver
from ._scan import ScanChannel as _AsyncScanChannel
from ._scan_sync import Scan, ScanChannel
from ._spec import Axis, Overflow
from ._stats import ChannelStatistics, Progress, SaverStatistics

__all__ = ("Channel", "Detector", "Saver", "Scan", "ScanChannel", "Subscription", "open_saver", "replay", "replay_into")

T = TypeVar("T")


class Channel:
    """Blocking counterpart of :class:`streamsave.Channel`; same arguments and errors.

    Its attributes are the async channel's (``channel``), read through."""

    def __init__(self, channel: _AsyncChannel) -> None:
        self.channel = channel

    def __repr__(self) -> str:
        return f"<sync {self.channel!r}>"

    # -------------------------------------------------------------- description
    @property
    def detector(self) -> str:
        """The detector's name."""
        return self.channel.detector

    @property
    def name(self) -> str:
        """The channel's name within its detector."""
        return self.channel.name

    @property
    def full_name(self) -> str:
        """``"<detector>/<channel>"``, the key used in statistics, events and :meth:`Saver.flush`."""
        return self.channel.full_name

    @property
    def file_path(self) -> str:
        """The HDF5 file the channel is written to."""
        return self.channel.file_path

    @property
    def dataset_path(self) -> str:
        """The frames' dataset, shape ``(N, *stored_shape)``."""
        return self.channel.dataset_path

    @property
    def time_axis_path(self) -> str:
        """The per-frame timestamps' dataset, shape ``(N,)``, epoch seconds."""
        return self.channel.time_axis_path

    @property
    def paths(self) -> ChannelPaths:
        """Where the channel's nodes are in the file."""
        return self.channel.paths

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one frame, ``()`` for scalars."""
        return self.channel.shape

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape of one frame in the file (scalars are stored as ``(1,)``)."""
        return self.channel.stored_shape

    @property
    def dtype(self) -> np.dtype[Any]:
        """The frames' dtype."""
        return self.channel.dtype

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The dataset's chunk shape."""
        return self.channel.chunk_shape

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk in the file."""
        return self.channel.chunk_frames

    @property
    def frame_nbytes(self) -> int:
        """Raw bytes of one frame."""
        return self.channel.frame_nbytes

    @property
    def units(self) -> str:
        return self.channel.units

    @property
    def label(self) -> str:
        return self.channel.label

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.channel.axes

    @property
    def queue_size(self) -> int:
        """The queue's capacity in frames."""
        return self.channel.queue_size

    @property
    def overflow(self) -> Overflow:
        """What a full queue does."""
        return self.channel.overflow

    @property
    def copy(self) -> bool:
        """Whether pushed frames are copied."""
        return self.channel.copy

    @property
    def monotonic(self) -> bool:
        """Whether given timestamps must not go backwards (see :meth:`streamsave.Detector.add_channel`)."""
        return self.channel.monotonic

    @property
    def frame_numbers(self) -> bool:
        """Whether the channel stores a frame number per frame."""
        return self.channel.frame_numbers

    @property
    def frame_numbers_path(self) -> str | None:
        """The frame numbers' dataset, or ``None``."""
        return self.channel.frame_numbers_path

    @property
    def metadata(self) -> dict[str, np.dtype[Any]]:
        """The per-frame metadata the channel declares: name -> dtype."""
        return self.channel.metadata

    @property
    def metadata_paths(self) -> dict[str, str]:
        """Each metadata value's dataset: name -> path."""
        return self.channel.metadata_paths

    # -------------------------------------------------------------- operations
    def push(self, frame: Any, *, timestamp: float | None = None, frame_number: SupportsIndex | None = None,
             metadata: Mapping[str, Any] | None = None) -> None:
        """Queue one frame, blocking this thread while the queue is full (``block``)."""
        self.channel.push_from_thread(frame, timestamp=timestamp, frame_number=frame_number, metadata=metadata)

    def push_nowait(self, frame: Any, *, timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """Queue one frame or raise :class:`~streamsave.QueueFull`; never blocks."""
        self.channel.push_nowait(frame, timestamp=timestamp, frame_number=frame_number, metadata=metadata)

    def push_many(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                  frame_numbers: npt.ArrayLike | None = None,
                  metadata: Mapping[str, npt.ArrayLike] | None = None) -> None:
        """Queue a block of frames, blocking while the queue is full."""
        self.channel.push_many_from_thread(frames, timestamps=timestamps, frame_numbers=frame_numbers,
                                           metadata=metadata)

    def statistics(self) -> ChannelStatistics:
        """See :meth:`streamsave.Channel.statistics`."""
        return self.channel.statistics()


class Detector:
    """Blocking counterpart of :class:`streamsave.Detector`."""

    def __init__(self, detector: _AsyncDetector) -> None:
        self.detector = detector
        self._wrapped: dict[_AsyncChannel, Channel] = {}

    def __repr__(self) -> str:
        return f"<sync {self.detector!r}>"

    def _wrap(self, channel: _AsyncChannel) -> Channel:
        wrapped = self._wrapped.get(channel)
        if wrapped is None:
            wrapped = self._wrapped[channel] = Channel(channel)
        return wrapped

    @property
    def name(self) -> str:
        """The detector's title."""
        return self.detector.name

    @property
    def path(self) -> str:
        """The detector's group in the file."""
        return self.detector.path

    @property
    def channels(self) -> dict[str, Channel]:
        """This detector's channels by name, in the order added."""
        return {name: self._wrap(ch) for name, ch in self.detector.channels.items()}

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
        monotonic: bool = False,
        frame_numbers: bool | None = None,
        metadata: Mapping[str, npt.DTypeLike] | None = None,
    ) -> Channel:
        """See :meth:`streamsave.Detector.add_channel`."""
        return self._wrap(self.detector.add_channel(
            name, shape=shape, dtype=dtype, units=units, label=label, axes=axes, chunk_frames=chunk_frames,
            queue_size=queue_size, overflow=overflow, copy=copy, monotonic=monotonic, frame_numbers=frame_numbers,
            metadata=metadata))


class Subscription:
    """Blocking counterpart of :class:`streamsave.Subscription`: ``for event in events``
    blocks the calling thread until the next event and ends after
    :class:`~streamsave.FileClosed`. Obtain with :meth:`Saver.subscribe`."""

    def __init__(self, subscription: _AsyncSubscription, portal: anyio.from_thread.BlockingPortal) -> None:
        self.subscription = subscription
        self._portal = portal

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event:
        try:
            return self._portal.call(self.subscription.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def lost(self) -> int:
        """Progress events dropped because this subscriber fell behind."""
        return self.subscription.lost


class Saver:
    """Blocking counterpart of :class:`streamsave.Saver`; obtain with :func:`open_saver`."""

    def __init__(self, saver: _AsyncSaver, portal: anyio.from_thread.BlockingPortal) -> None:
        self.saver = saver
        self._portal = portal
        self._wrapped: dict[_AsyncDetector, Detector] = {}
        self._scans: dict[str, Scan] = {}

    def __repr__(self) -> str:
        return f"<sync {self.saver!r}>"

    def _wrap(self, detector: _AsyncDetector) -> Detector:
        wrapped = self._wrapped.get(detector)
        if wrapped is None:
            wrapped = self._wrapped[detector] = Detector(detector)
        return wrapped

    @property
    def path(self) -> os.PathLike[str]:
        """The file being written."""
        return self.saver.path

    @property
    def state(self) -> str:
        """``"opening"``, ``"open"``, ``"closing"``, ``"closed"`` or ``"failed"``."""
        return self.saver.statistics().state

    @property
    def config(self) -> SaverConfig:
        """The options the saver was opened with."""
        return self.saver.config

    @property
    def detectors(self) -> dict[str, Detector]:
        """Every detector by name, in the order added."""
        return {name: self._wrap(det) for name, det in self.saver.detectors.items()}

    @property
    def channels(self) -> tuple[Channel | ScanChannel, ...]:
        """Every channel, in the order added (those of scans too)."""
        return tuple(self._scan_channel(ch) if isinstance(ch, _AsyncScanChannel) else
                     self._wrap(self.saver.detectors[ch.detector])._wrap(ch) for ch in self.saver.channels)

    def _scan_channel(self, channel: _AsyncScanChannel) -> ScanChannel:
        return self.scans[channel.scan.name].detectors[channel.detector].channels[channel.name]

    @property
    def scans(self) -> dict[str, Scan]:
        """Every scan by name, in the order added."""
        for name, scan in self.saver.scans.items():
            if name not in self._scans:
                self._scans[name] = Scan(scan)
        return dict(self._scans)

    def add_scan(self, name: str, *, axes: Sequence[Axis], average: int = 1, overwrite: bool = False,
                 settings: Mapping[str, Any] | None = None) -> Scan:
        """See :meth:`streamsave.Saver.add_scan`."""
        self.saver.add_scan(name, axes=axes, average=average, overwrite=overwrite, settings=settings)
        return self.scans[name]

    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> Detector:
        """See :meth:`streamsave.Saver.add_detector`."""
        return self._wrap(self.saver.add_detector(name, settings=settings))

    def log(self, text: str, *, level: int = logging.INFO, timestamp: float | None = None) -> None:
        """See :meth:`streamsave.Saver.log`; never blocks."""
        self.saver.log(text, level=level, timestamp=timestamp)

    def log_handler(self, level: int = logging.NOTSET) -> LogHandler:
        """See :meth:`streamsave.Saver.log_handler`."""
        return self.saver.log_handler(level)

    def flush(self) -> dict[str, int]:
        """See :meth:`streamsave.Saver.flush`; blocks until the flush is done."""
        return self._portal.call(self.saver.flush)

    def aclose(self, *, abort: bool = False) -> SaverStatistics:
        """Close the file (the block's end does it for you); see :meth:`streamsave.Saver.aclose`.

        Safe to call more than once, also after the block has ended."""
        return self._call_unless_closed(partial(self.saver.aclose, abort=abort))

    close = aclose

    def wait_closed(self) -> SaverStatistics:
        """Block until the file is closed (by whoever closes it); return the final
        statistics, or raise the writer's failure. See :meth:`streamsave.Saver.wait_closed`."""
        return self._call_unless_closed(self.saver.wait_closed)

    def statistics(self) -> SaverStatistics:
        """See :meth:`streamsave.Saver.statistics`."""
        return self.saver.statistics()

    @contextmanager
    def subscribe(self, *, buffer: int = 1024) -> Iterator[Subscription]:
        """Receive the saver's events while the ``with`` block runs, as a blocking
        iterator (any thread may iterate it); see :meth:`streamsave.Saver.subscribe`.

        Use it inside the :func:`open_saver` block: the loop thread it runs on stops there.
        """
        with self._portal.wrap_async_context_manager(self.saver.subscribe(buffer=buffer)) as subscription:
            yield Subscription(subscription, self._portal)

    def progress(self, channel: Channel | _AsyncChannel, *,
                 target: int | None = None) -> Generator[Progress, None, None]:
        """Follow one channel's written frames as a blocking iterator of
        :class:`~streamsave.Progress`; see :meth:`streamsave.Saver.progress`.

        Breaking out of the loop (or calling the iterator's ``close()``) ends the
        underlying async iteration.
        """
        inner = channel.channel if isinstance(channel, Channel) else channel
        return self._blocking_iter(self.saver.progress(inner, target=target))

    def _blocking_iter(self, updates: AsyncIterator[T]) -> Generator[T, None, None]:
        try:
            while True:
                try:
                    item = self._portal.call(updates.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            close: Callable[[], Any] | None = getattr(updates, "aclose", None)
            if close is not None:
                with suppress(RuntimeError):  # the loop thread has stopped: it finalized the generator
                    self._portal.call(close)

    def _call_unless_closed(self, fn: Callable[[], Any]) -> SaverStatistics:
        try:
            result: SaverStatistics = self._portal.call(fn)
            return result
        except RuntimeError:
            final = self.saver.statistics()
            if final.state not in ("closed", "failed"):
                raise
        # the block has ended (and stopped the loop thread): the outcome is final
        if final.error is not None:
            raise final.error
        return final


@contextmanager
def open_saver(path: str | os.PathLike[str], **options: Any) -> Iterator[Saver]:
    """Blocking :func:`streamsave.open_saver`: same arguments, same errors.

    The block's end writes everything accepted and closes the file; an exception in
    the block closes it too (dropping, and counting, what is still queued after
    ``close_timeout``) and propagates.
    """
    with anyio.from_thread.start_blocking_portal() as portal:
        saver = Saver(portal.call(partial(_AsyncSaver.open, path, **options)), portal)
        try:
            yield saver
        except BaseException:
            with suppress(StreamSaveError):
                saver.aclose(abort=True)
            raise
        saver.aclose()


def replay(source: str | os.PathLike[str], **options: Any) -> Generator[ReplayItem, None, None]:
    """Blocking :func:`streamsave.replay`: same arguments, same errors; a blocking
    iterator of :class:`~streamsave.ReplayItem` paced on its own event-loop thread.
    Leaving the loop early (or calling the iterator's ``close()``) stops the replay.

    Each item crosses from the loop thread to yours (tens of microseconds): use the
    async API for tens of thousands of frames per second.

    :raises ~streamsave.ConfigError: an invalid argument (at once).
    """
    frames = Replay(source, **options)
    return _blocking_replay(frames)


def _blocking_replay(frames: Replay) -> Generator[ReplayItem, None, None]:
    with anyio.from_thread.start_blocking_portal() as portal:
        try:
            portal.call(frames.__aenter__)
            while True:
                try:
                    item = portal.call(frames.__anext__)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            portal.call(frames.aclose)


def replay_into(source: str | os.PathLike[str], destination: str | os.PathLike[str], **options: Any) -> ReplayReport:
    """Blocking :func:`streamsave.replay_into`: same arguments, same errors."""
    with anyio.from_thread.start_blocking_portal() as portal:
        return portal.call(partial(_replay_into, source, destination, **options))
