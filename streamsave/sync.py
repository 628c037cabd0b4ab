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
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

import anyio.from_thread
import numpy as np
import numpy.typing as npt

from ._channel import Channel as _AsyncChannel
from ._detector import Detector as _AsyncDetector
from ._errors import StreamSaveError
from ._saver import Saver as _AsyncSaver
from ._spec import Axis, Overflow
from ._stats import ChannelStatistics, SaverStatistics

__all__ = ("Channel", "Detector", "Saver", "open_saver")


class Channel:
    """Blocking counterpart of :class:`streamsave.Channel`; same arguments and errors."""

    def __init__(self, channel: _AsyncChannel) -> None:
        self.channel = channel

    def __repr__(self) -> str:
        return f"<sync {self.channel!r}>"

    def push(self, frame: Any, *, timestamp: float | None = None) -> None:
        """Queue one frame, blocking this thread while the queue is full (``block``)."""
        self.channel.push_from_thread(frame, timestamp=timestamp)

    def push_nowait(self, frame: Any, *, timestamp: float | None = None) -> None:
        """Queue one frame or raise :class:`~streamsave.QueueFull`; never blocks."""
        self.channel.push_nowait(frame, timestamp=timestamp)

    def push_many(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None) -> None:
        """Queue a block of frames, blocking while the queue is full."""
        self.channel.push_many_from_thread(frames, timestamps=timestamps)

    def statistics(self) -> ChannelStatistics:
        """See :meth:`streamsave.Channel.statistics`."""
        return self.channel.statistics()


class Detector:
    """Blocking counterpart of :class:`streamsave.Detector`."""

    def __init__(self, detector: _AsyncDetector) -> None:
        self.detector = detector

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
        """See :meth:`streamsave.Detector.add_channel`."""
        return Channel(self.detector.add_channel(
            name, shape=shape, dtype=dtype, units=units, label=label, axes=axes, chunk_frames=chunk_frames,
            queue_size=queue_size, overflow=overflow, copy=copy))


class Saver:
    """Blocking counterpart of :class:`streamsave.Saver`; obtain with :func:`open_saver`."""

    def __init__(self, saver: _AsyncSaver, portal: anyio.from_thread.BlockingPortal) -> None:
        self.saver = saver
        self._portal = portal

    @property
    def path(self) -> os.PathLike[str]:
        return self.saver.path

    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> Detector:
        """See :meth:`streamsave.Saver.add_detector`."""
        return Detector(self.saver.add_detector(name, settings=settings))

    def flush(self) -> dict[str, int]:
        """See :meth:`streamsave.Saver.flush`; blocks until the flush is done."""
        return self._portal.call(self.saver.flush)

    def aclose(self, *, abort: bool = False) -> SaverStatistics:
        """Close the file (the block's end does it for you); see :meth:`streamsave.Saver.aclose`."""
        return self._portal.call(partial(self.saver.aclose, abort=abort))

    close = aclose

    def statistics(self) -> SaverStatistics:
        """See :meth:`streamsave.Saver.statistics`."""
        return self.saver.statistics()


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
