"""``streamsave follow``: a live status of a file being written, until its writer closes it."""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._channel_reader import ChannelReader
from .._errors import ReadError
from .._reader import Run, open_reader
from ._common import EXIT_OK, CommandError, console, nbytes, positive, rate, short_count

__all__ = ("add_parser", "run", "status")

_MIN_WINDOW: Final = 2.0  # seconds: recent rates span at least two of the writer's (1 s) flushes


def add_parser(commands: Any) -> None:
    follow = commands.add_parser(
        "follow", help="show a live status of a file being written, until its writer closes it",
        description="Follow a file a streamsave writer is recording, from another process (as an SWMR reader, "
                    "read only): per channel the durable frames (those the writer's last flush made durable, "
                    "all a reader can see), recent frames/s and MB/s, and how long ago the last durable frame "
                    "was taken. Refreshes until the writer closes the file (exit status 0), or Ctrl-C (130). "
                    "A file that is already closed is described once.")
    follow.add_argument("file", type=Path, metavar="FILE", help="the HDF5 file being written")
    follow.add_argument("--interval", type=positive(float, "--interval"), default=0.5, metavar="SECONDS",
                        help="seconds between two looks at the file (default: 0.5)")
    follow.add_argument("--wait", type=_non_negative, default=0.0, metavar="SECONDS",
                        help="keep trying this long to open a file that does not exist yet or that its writer "
                             "has not started writing (default: 0, fail at once)")
    follow.add_argument("--idle-timeout", type=positive(float, "--idle-timeout"), default=None, metavar="SECONDS",
                        help="give up (exit status 1) after this long without a new durable frame while the "
                             "file still says it is being written, as a killed writer leaves it "
                             "(default: wait for ever)")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--wait must be a number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"--wait must be zero or positive and finite, got {text!r}")
    return value


@dataclass
class _Tracker:
    """Counts seen at each look, for recent rates."""

    opened: Run
    window: float
    started: float = field(default_factory=time.monotonic)
    history: deque[tuple[float, tuple[int, ...]]] = field(default_factory=deque)
    last_change: float = field(default_factory=time.monotonic)

    def sample(self) -> None:
        now = time.monotonic()
        counts = tuple(len(ch) for ch in self.opened.channels.values())
        if self.history and counts != self.history[-1][1]:
            self.last_change = now
        self.history.append((now, counts))
        while len(self.history) > 2 and now - self.history[1][0] >= self.window:
            self.history.popleft()

    def recent_rates(self) -> list[float]:
        (t0, first), (t1, last) = self.history[0], self.history[-1]
        if t1 <= t0:
            return [math.nan] * len(last)
        return [(b - a) / (t1 - t0) for a, b in zip(first, last, strict=True)]


def run(args: argparse.Namespace) -> int:
    opened = _open(args.file, args.wait)
    out = console()
    with opened:
        if not opened.writing:
            out.print(status(opened, None, title=f"{args.file}  (closed: not being written)"))
            return EXIT_OK
        tracker = _Tracker(opened, window=max(_MIN_WINDOW, 2 * args.interval))
        with Live(console=out, auto_refresh=False, redirect_stderr=False) as live:
            writing, announced = True, False
            while writing:
                writing = opened.refresh()
                tracker.sample()
                elapsed = time.monotonic() - tracker.started
                state = f"being written, followed for {elapsed:.0f} s" if writing else "closed by its writer"
                live.update(status(opened, tracker.recent_rates() if writing else None,
                                         title=f"{args.file}  {_size(opened.path)}  ({state})"), refresh=True)
                if not announced:  # once a status is shown (so Ctrl-C from now on leaves one)
                    out.print(f"Following {str(args.file)!r} until its writer closes it; press Ctrl-C to stop.",
                              markup=False, soft_wrap=True)
                    announced = True
                if writing and args.idle_timeout is not None and time.monotonic() - tracker.last_change \
                        >= args.idle_timeout:
                    raise CommandError(f"no new frames in {str(args.file)!r} for {args.idle_timeout:g} s, and it "
                                       "still says it is being written: its writer may have been killed "
                                       "(`streamsave recover` makes a clean copy)")
                if writing:
                    time.sleep(args.interval)
        frames = sum(len(ch) for ch in opened.channels.values())
    if not out.is_terminal:
        out.line()
    out.print(f"The writer closed {str(args.file)!r}: {frames:,} frames in {len(opened.channels)} channels.",
              markup=False, soft_wrap=True)
    return EXIT_OK


def _open(path: Path, wait: float) -> Run:
    """open_reader, retried for ``wait`` seconds while the file is missing or not yet readable."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return open_reader(path)
        except ReadError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _size(path: Path) -> str:
    try:
        return nbytes(path.stat().st_size)
    except OSError:
        return "?"


def status(opened: Run, rates: list[float] | None, *, title: str) -> RenderableType:
    """One row per channel: durable frames, frames/s and MB/s (recent ones while the file
    is written, ``rates``; else the means over its timestamps), the last frame's age;
    then what the columns mean."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    channels = list(opened.channels.values())
    table.add_column("channel", no_wrap=True, min_width=max((len(k) for k in opened.channels), default=7))
    for header in ("durable", "frames/s", "MB/s", "last frame"):
        table.add_column(header, justify="right", no_wrap=True)
    now = time.time()
    means = [_mean_rate(ch) for ch in channels] if rates is None else rates
    for ch, fps in zip(channels, means, strict=True):
        frame_mb = ch.dtype.itemsize * math.prod(ch.frame_shape) / 1e6
        table.add_row(Text(ch.full_name), short_count(ch.frames_durable), rate(fps),
                      rate(fps * frame_mb) if math.isfinite(fps) else "-", _age(ch, now))
    if not channels:
        table.add_row("(no channels yet)", "", "", "", "")
    note = ("durable: frames up to the writer's last flush (what a reader sees); "
            + ("rates over the last few seconds" if rates is not None else "rates: means over the timestamps"))
    return Group(Text(title), table, Text(note))


def _last_time(ch: ChannelReader) -> float:
    if not len(ch) or ch.time_axis_path is None:
        return math.nan
    return float(ch.timestamps[-1])


def _mean_rate(ch: ChannelReader) -> float:
    n = len(ch)
    if n < 2 or ch.time_axis_path is None:
        return math.nan
    span = float(ch.timestamps[-1]) - float(ch.timestamps[0])
    return (n - 1) / span if span > 0 else math.nan


def _age(ch: ChannelReader, now: float) -> str:
    last = _last_time(ch)
    if not math.isfinite(last):
        return "-"
    age = now - last
    return f"{age:,.1f} s ago" if age >= 0 else "in the future"
