"""Statistics snapshots returned by ``statistics()``: plain NamedTuples, cheap to take
at any time from any thread, and still available after the saver has closed."""

from __future__ import annotations

import threading
from typing import NamedTuple

__all__ = ("ChannelStatistics", "OperationTiming", "Progress", "SaverStatistics", "Timer")


class ChannelStatistics(NamedTuple):
    """One channel's counters. Frame counts are cumulative since the saver opened.

    After close, ``frames_pushed == frames_written + frames_dropped`` always holds.
    """

    #: ``"<detector>/<channel>"``
    name: str
    #: frames accepted by push/push_nowait/push_many (dropped ones included)
    frames_pushed: int
    #: frames stored in the file (visible in the dataset)
    frames_written: int
    #: frames known to be on disk: written and flushed
    frames_durable: int
    #: frames discarded by the overflow policy, by a failed writer or at an aborted close
    frames_dropped: int
    #: frames refused with QueueFull (never accepted, so not in frames_pushed)
    frames_rejected: int
    #: raw bytes of frames accepted
    bytes_pushed: int
    #: raw bytes of frames written
    bytes_written: int
    #: bytes the written chunks take in the file after compression
    bytes_stored: int
    #: frames waiting in the queue now
    queue_fill: int
    #: the queue's capacity in frames
    queue_capacity: int
    #: the highest queue fill seen
    queue_high_water: int
    #: bytes_written / bytes_stored (1.0 when uncompressed or before any write)
    compression_ratio: float
    #: frames written per second since the first frame was pushed
    frames_per_second: float
    #: raw MB (10**6 bytes) written per second since the first frame was pushed
    mb_per_second: float
    #: timestamp (epoch s) of the last durable frame, or None
    durable_timestamp: float | None
    #: wall-clock time (epoch s) of the flush that made frames_durable durable, or None
    durable_at: float | None


class SaverStatistics(NamedTuple):
    """The whole saver: per-channel statistics and totals."""

    #: the file being written
    path: str
    #: ``"opening"``, ``"open"``, ``"closing"``, ``"closed"`` or ``"failed"``
    state: str
    #: per channel, in the order they were added
    channels: tuple[ChannelStatistics, ...]
    frames_pushed: int
    frames_written: int
    frames_durable: int
    frames_dropped: int
    bytes_written: int
    bytes_stored: int
    #: seconds since the saver opened (frozen at close)
    elapsed: float
    #: number of flushes done
    flushes: int
    #: the failure that stopped the writer, if any
    error: BaseException | None
    #: durations of the writer's operations: "encode" (assemble + compress a chunk),
    #: "write" (store a batch of chunks), "flush"
    timings: dict[str, OperationTiming]


class OperationTiming(NamedTuple):
    """Durations of one kind of writer operation, in seconds (odin-data style)."""

    #: how many times it ran
    calls: int
    last: float
    max: float
    mean: float


class Timer:
    """Accumulates durations; updated and read from any thread."""

    __slots__ = ("_lock", "count", "last", "max", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last = 0.0
        self.max = 0.0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.last = seconds
            self.total += seconds
            if seconds > self.max:
                self.max = seconds

    def snapshot(self) -> OperationTiming:
        return OperationTiming(self.count, self.last, self.max, self.total / self.count if self.count else 0.0)


class Progress(NamedTuple):
    """Where a channel stands against a target number of frames (see ``Saver.progress``)."""

    channel: str
    #: frames written so far
    current: int
    #: the target, or None when open-ended
    target: int | None
    #: seconds since progress() was called
    elapsed: float
    #: estimated seconds to reach the target at the current rate, or None
    remaining: float | None
    #: frames written per second since progress() was called
    rate: float
