"""Statistics snapshots returned by ``statistics()``: plain NamedTuples, cheap to take
at any time from any thread, and still available after the saver has closed.

``repr()`` shows every field; ``str()`` (what ``print`` shows) is a short report::

    Saver run.h5: closed, 2.51 s, 3 flushes
      totals: 3,000 pushed, 3,000 written, 3,000 durable, 0 dropped; 1.57 GB written, 794 MB stored (ratio 1.98)
      channel       pushed  written  durable  dropped      queue     MB/s  ratio
      Camera/image   3,000    3,000    3,000        0  0 / 1,000  1,961.0   1.98
      timings, mean/max (calls): encode 2.03/2.88 ms (120), write 420 us/1.10 ms (60), flush 9.20/31.4 ms (3)
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Sequence
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

    def __str__(self) -> str:
        """Two lines: the frame counts, then the queue, rates and sizes."""
        counts = (f"{self.name}: {self.frames_pushed:,} pushed, {self.frames_written:,} written, "
                  f"{self.frames_durable:,} durable, {self.frames_dropped:,} dropped, "
                  f"{self.frames_rejected:,} rejected")
        details = (f"queue {self.queue_fill:,}/{self.queue_capacity:,} (high water {self.queue_high_water:,}); "
                   f"{self.frames_per_second:,.1f} frames/s, {self.mb_per_second:,.1f} MB/s; "
                   f"{_size(self.bytes_written)} written, {_size(self.bytes_stored)} stored "
                   f"(ratio {self.compression_ratio:.2f})")
        return "\n".join([*_wrap(counts), *_wrap(details, "  ")])


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

    def __str__(self) -> str:
        """A header (file, state, elapsed time, flushes, totals, error), one aligned row
        per channel, and the writer's timings; lines stay within about 120 characters."""
        ratio = self.bytes_written / self.bytes_stored if self.bytes_stored else 1.0
        lines = [*_wrap(f"Saver {self.path}: {self.state}, {_seconds(self.elapsed)}, {self.flushes:,} flushes")]
        lines += _wrap(f"totals: {self.frames_pushed:,} pushed, {self.frames_written:,} written, "
                       f"{self.frames_durable:,} durable, {self.frames_dropped:,} dropped; "
                       f"{_size(self.bytes_written)} written, {_size(self.bytes_stored)} stored (ratio {ratio:.2f})",
                       "  ")
        if self.error is not None:
            lines += _wrap(f"error: {type(self.error).__name__}: {self.error}", "  ")
        lines += _channel_table(self.channels) if self.channels else ["  (no channels)"]
        if self.timings:
            parts = [f"{name} {_timing(t.mean, t.max)} ({t.calls:,})" for name, t in self.timings.items()]
            lines += _wrap("timings, mean/max (calls): " + ", ".join(parts), "  ")
        return "\n".join(lines)


_WIDTH = 120
_COLUMNS = ("pushed", "written", "durable", "dropped", "queue", "MB/s", "ratio")


def _channel_table(channels: Sequence[ChannelStatistics]) -> list[str]:
    """One header and one row per channel, every column as wide as its widest cell."""
    rows = [[c.name, f"{c.frames_pushed:,}", f"{c.frames_written:,}", f"{c.frames_durable:,}",
             f"{c.frames_dropped:,}", f"{c.queue_fill:,} / {c.queue_capacity:,}", f"{c.mb_per_second:,.1f}",
             f"{c.compression_ratio:.2f}"] for c in channels]
    table = [["channel", *_COLUMNS], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  " + "  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:],
                                                                                          strict=True))])
            for row in table]


def _wrap(text: str, indent: str = "") -> list[str]:
    """``text`` as lines of at most :data:`_WIDTH` characters (continuations indented further)."""
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_long_words=False, break_on_hyphens=False) or [indent]


def _seconds(seconds: float) -> str:
    """A duration with three significant digits (``"250 us"``, ``"13.1 ms"``, ``"1.50 s"``),
    or in minutes and hours when long."""
    if seconds < 60:
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if seconds >= scale or unit == "us":
                return f"{_three_digits(seconds / scale)} {unit}"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes:.0f} min {rest:02.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours:.0f} h {minutes:02.0f} min"


def _timing(mean: float, longest: float) -> str:
    """``"2.03/13.1 ms"``: mean and max, the unit written once when they share it."""
    mean_text, longest_text = _seconds(mean), _seconds(longest)
    mean_value, mean_unit = mean_text.rsplit(" ", 1)
    if longest_text.endswith(" " + mean_unit):
        return f"{mean_value}/{longest_text}"
    return f"{mean_text}/{longest_text}"


def _three_digits(value: float) -> str:
    decimals = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{decimals}f}"


def _size(nbytes: int) -> str:
    """Decimal units, as the rest of streamsave (1 MB = 10**6 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.3g} {unit}" if nbytes < 100 * scale else f"{nbytes / scale:,.0f} {unit}"
    return f"{nbytes} B"


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
