"""``streamsave replay``: replay a recording with its timing, with a live status, or
into a new file through a saver (``-o``)."""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import anyio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._replay import Replay, ReplayStatistics
from .._replay_into import ReplayReport, replay_into
from ._common import EXIT_OK, CommandError, check_output, console, nbytes, positive, rate, short_count
from ._demo import _compression, _streamsave_error

__all__ = ("add_parser", "run", "status")

REFRESH: Final = 0.25  # seconds between two updates of the live status
RATE_WINDOW: Final = 1.0  # seconds over which the status measures frames/s


def _when(text: str) -> float | datetime:
    """``--start``/``--stop``: seconds after the first frame, or an ISO 8601 time."""
    try:
        value = float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected seconds after the recording's first frame (e.g. 2.5) or an ISO 8601 time "
                f"(e.g. 2026-12-01T10:00:00+00:00), got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"seconds after the first frame must be >= 0 and finite, got {text!r}")
    return value


def _channels(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"--channels takes names separated by commas (Camera/image,Th/T), "
                                         f"got {text!r}")
    return names


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "replay", help="replay a recording with its original timing (live status), or into a new file",
        description="Replay a recorded file's frames with their original timing, merged across channels in "
                    "timestamp order (streamsave files, also while being written with --follow, and PyMoDAQ's "
                    "continuous files). Without -o it shows a live status (frames/s per channel, how late frames "
                    "are released); with -o it writes the frames into a new file through a saver, keeping their "
                    "timestamps, with the saver's options (as fast as possible unless --speed is given).")
    p.add_argument("file", type=Path, metavar="SRC", help="the recording")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DST",
                   help="write the replayed frames into this new file instead of showing a status")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=positive(float, "--speed"), default=None, metavar="S",
                      help="1 replays at the recorded rate, 2 twice as fast (default: 1; with -o: as fast as "
                           "possible)")
    pace.add_argument("--as-fast-as-possible", action="store_true",
                      help="no pacing: as fast as the file can be read")
    p.add_argument("--channels", type=_channels, default=None, metavar="A,B",
                   help="replay only these channels (\"Detector/channel\" names, as `streamsave info` lists them)")
    p.add_argument("--start", type=_when, default=None, metavar="T",
                   help="from this time: seconds after the first frame, or an ISO 8601 time")
    p.add_argument("--stop", type=_when, default=None, metavar="T",
                   help="up to this time (excluded): seconds after the first frame, or an ISO 8601 time")
    p.add_argument("--follow", action="store_true",
                   help="the file is being written: keep replaying what its writer flushes until it closes it")
    p.add_argument("--idle-timeout", type=positive(float, "--idle-timeout"), default=None, metavar="SECONDS",
                   help="with --follow: stop after this long without a new frame (a killed writer never closes "
                        "its file)")
    p.add_argument("--compression", type=_compression, default=argparse.SUPPRESS, metavar="CODEC",
                   help="with -o: blosc2-lz4, blosc2-zstd, blosc2-lz4hc, blosc2-blosclz, blosc2-zlib or none "
                        "(default: as the source's channels)")
    p.add_argument("--chunk-bytes", type=positive(int, "--chunk-bytes"), default=None, metavar="BYTES",
                   help="with -o: target chunk size in bytes (default: the saver's, 2 MiB)")
    p.add_argument("--overwrite", action="store_true", help="with -o: replace DST if it exists")


def _speed(args: argparse.Namespace) -> float | None:
    if args.as_fast_as_possible:
        return None
    if args.speed is not None:
        return float(args.speed)
    return None if args.output is not None else 1.0


def run(args: argparse.Namespace) -> int:
    if args.output is None:
        for flag, given in (("--compression", hasattr(args, "compression")), ("--chunk-bytes", args.chunk_bytes),
                            ("--overwrite", args.overwrite)):
            if given:
                raise CommandError(f"{flag} applies to the file written with -o; give -o DST too")
    else:
        check_output(args.output, args.overwrite)
    out = console()
    try:
        if args.output is None:
            anyio.run(_show, args, out)
        else:
            report = anyio.run(_copy, args)
            _print_report(out, report)
    except BaseExceptionGroup as exc:
        found = _streamsave_error(exc)
        if found is None:
            raise
        raise found from None
    return EXIT_OK


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"speed": _speed(args), "channels": args.channels, "start": args.start, "stop": args.stop,
            "follow": args.follow}


async def _copy(args: argparse.Namespace) -> ReplayReport:
    saver: dict[str, Any] = {"mode": "w" if args.overwrite else "w-",
                             "compression": getattr(args, "compression", "source")}
    if args.chunk_bytes is not None:
        saver["chunk_bytes"] = args.chunk_bytes
    return await replay_into(args.file, args.output, **_options(args), **saver)


def _print_report(out: Console, report: ReplayReport) -> None:
    size = report.destination.stat().st_size if report.destination.exists() else 0
    frames = sum(report.frames.values())
    out.print(f"Wrote {frames:,} frames of {len(report.frames)} channels to {report.destination} in "
              f"{report.seconds:.2f} s ({nbytes(report.bytes_written)} of frames, {report.mb_per_s:,.1f} MB/s; "
              f"{nbytes(size)} on disk)", markup=False, soft_wrap=True)
    for name, n in report.frames.items():
        out.print(f"  {name}: {n:,} frames", markup=False, soft_wrap=True)


class _Rates:
    """Released frames per channel at each look, for recent frames/s."""

    def __init__(self) -> None:
        self.history: deque[tuple[float, tuple[int, ...]]] = deque()

    def sample(self, stats: ReplayStatistics) -> list[float]:
        now = time.monotonic()
        counts = tuple(stats.channel_frames.values())
        self.history.append((now, counts))
        while len(self.history) > 2 and now - self.history[1][0] >= RATE_WINDOW:
            self.history.popleft()
        (t0, first), (t1, last) = self.history[0], self.history[-1]
        if t1 <= t0 or len(first) != len(last):
            return [math.nan] * len(counts)
        return [(b - a) / (t1 - t0) for a, b in zip(first, last, strict=True)]


async def _show(args: argparse.Namespace, out: Console) -> None:
    rates = _Rates()
    speed = _speed(args)
    pace = "as fast as possible" if speed is None else f"speed {speed:g}"
    async with Replay(args.file, idle_timeout=args.idle_timeout, **_options(args)) as frames:
        done = False

        def render() -> RenderableType:  # on rich's refresh thread: the loop never waits for it
            stats = frames.statistics()
            if done:
                return status(stats, None, title=f"{args.file}  {pace}  done")
            return status(stats, rates.sample(stats), title=f"{args.file}  {pace}  {stats.elapsed:.1f} s")

        with Live(get_renderable=render, console=out, refresh_per_second=1 / REFRESH, redirect_stderr=False):
            async for _ in frames:
                pass
            done = True
        stats = frames.statistics()
    if not out.is_terminal:
        out.line()
    out.print(f"Replayed {stats.frames_released:,} frames of {len(stats.channel_frames)} channels in "
              f"{stats.elapsed:.2f} s ({pace}); lateness p50 {_ms(stats.lateness_p50)}, p99 "
              f"{_ms(stats.lateness_p99)}, max {_ms(stats.lateness_max)}", markup=False, soft_wrap=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def status(stats: ReplayStatistics, rates: list[float] | None, *, title: str) -> RenderableType:
    """One row per channel: frames released, frames/s (recent ones while replaying,
    ``rates``; else the mean), dropped; then the lateness figures."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    table.add_column("channel", no_wrap=True, min_width=max((len(k) for k in stats.channel_frames), default=7))
    for header in ("frames", "frames/s", "dropped"):
        table.add_column(header, justify="right", no_wrap=True)
    if rates is None:
        span = stats.elapsed if stats.elapsed > 0 else math.inf
        rates = [n / span for n in stats.channel_frames.values()]
    for (name, n), fps in zip(stats.channel_frames.items(), rates, strict=True):
        table.add_row(Text(name), short_count(n), rate(fps), short_count(stats.channel_dropped.get(name, 0)))
    behind = "  BEHIND: the consumer cannot keep up" if stats.behind else ""
    late = Text(f"lateness p50 {_ms(stats.lateness_p50)}  p99 {_ms(stats.lateness_p99)}  max "
                f"{_ms(stats.lateness_max)}{behind}")
    return Group(Text(title), table, late)
