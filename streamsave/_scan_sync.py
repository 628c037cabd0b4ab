"""Blocking counterparts of scans for :mod:`streamsave.sync` (scripts, Qt code)::

    with streamsave.sync.open_saver("scan.h5") as saver:
        scan = saver.add_scan("Scan", axes=[streamsave.Axis("x", units="mm", values=xs)])
        image = scan.add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16")
        image.push(frame, index=(ix,))     # blocks this thread while the queue is full
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._scan import Scan as _AsyncScan
from ._scan import ScanChannel as _AsyncScanChannel
from ._scan import ScanDetector as _AsyncScanDetector
from ._spec import Axis, Overflow
from ._stats import ChannelStatistics

__all__ = ("Scan", "ScanChannel", "ScanDetector")


class ScanChannel:
    """Blocking counterpart of :class:`streamsave.ScanChannel` (the real one is ``channel``)."""

    def __init__(self, channel: _AsyncScanChannel) -> None:
        self.channel = channel

    def __repr__(self) -> str:
        return f"<sync {self.channel!r}>"

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def full_name(self) -> str:
        """``"<scan>/<detector>/<channel>"``."""
        return self.channel.full_name

    @property
    def dataset_path(self) -> str:
        return self.channel.dataset_path

    @property
    def shape(self) -> tuple[int, ...]:
        return self.channel.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.channel.dtype

    def push(self, frame: Any, *, index: Any = None, position: Any = None, timestamp: float | None = None) -> None:
        """Queue one point's frame, blocking this thread while the queue is full; see
        :meth:`streamsave.ScanChannel.push`."""
        self.channel.push_from_thread(frame, index=index, position=position, timestamp=timestamp)

    def push_nowait(self, frame: Any, *, index: Any = None, position: Any = None,
                    timestamp: float | None = None) -> None:
        """Queue one point's frame or raise :class:`~streamsave.QueueFull`; never blocks."""
        self.channel.push_nowait(frame, index=index, position=position, timestamp=timestamp)

    def statistics(self) -> ChannelStatistics:
        return self.channel.statistics()


class ScanDetector:
    """Blocking counterpart of :class:`streamsave.ScanDetector`."""

    def __init__(self, detector: _AsyncScanDetector) -> None:
        self.detector = detector
        self._wrapped: dict[_AsyncScanChannel, ScanChannel] = {}

    def _wrap(self, channel: _AsyncScanChannel) -> ScanChannel:
        if channel not in self._wrapped:
            self._wrapped[channel] = ScanChannel(channel)
        return self._wrapped[channel]

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def channels(self) -> dict[str, ScanChannel]:
        return {name: self._wrap(ch) for name, ch in self.detector.channels.items()}

    def add_channel(self, name: str, *, shape: Sequence[int] = (), dtype: npt.DTypeLike = np.float64,
                    units: str = "", label: str = "", axes: Sequence[Axis] = (), queue_size: int | None = None,
                    overflow: Overflow | str | None = None, copy: bool = False,
                    fill_value: float | None = None) -> ScanChannel:
        """See :meth:`streamsave.ScanDetector.add_channel`."""
        return self._wrap(self.detector.add_channel(
            name, shape=shape, dtype=dtype, units=units, label=label, axes=axes, queue_size=queue_size,
            overflow=overflow, copy=copy, fill_value=fill_value))


class Scan:
    """Blocking counterpart of :class:`streamsave.Scan`."""

    def __init__(self, scan: _AsyncScan) -> None:
        self.scan = scan
        self._wrapped: dict[_AsyncScanDetector, ScanDetector] = {}

    def __repr__(self) -> str:
        return f"<sync {self.scan!r}>"

    def _wrap(self, detector: _AsyncScanDetector) -> ScanDetector:
        if detector not in self._wrapped:
            self._wrapped[detector] = ScanDetector(detector)
        return self._wrapped[detector]

    @property
    def name(self) -> str:
        return self.scan.name

    @property
    def path(self) -> str:
        return self.scan.path

    @property
    def shape(self) -> tuple[int, ...]:
        return self.scan.shape

    @property
    def detectors(self) -> dict[str, ScanDetector]:
        return {name: self._wrap(det) for name, det in self.scan.detectors.items()}

    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> ScanDetector:
        """See :meth:`streamsave.Scan.add_detector`."""
        return self._wrap(self.scan.add_detector(name, settings=settings))

    def finish(self) -> None:
        """See :meth:`streamsave.Scan.finish`."""
        self.scan.finish()
