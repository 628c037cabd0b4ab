"""The ``streamsave`` command (also ``python -m streamsave``).

``streamsave demo``
    records a simulated camera (512 x 512 ``uint16``, 1000 frames/s by default), a
    spectrometer (100 spectra/s) and a thermometer (10 readings/s) concurrently into
    one file, with a live table of what the saver is doing, then says where the file
    is and how to read it.
``streamsave info FILE``
    lists the detectors and channels of a file written by streamsave, reading it
    with plain h5py.
``streamsave recover FILE -o OUT [--overwrite]``
    copies the whole frames of a crashed writer's file into a new, clean file.

Exit status: 0 on success; 1 when streamsave (or the file system) reports an
error, with its message on stderr and no traceback; 2 for a usage error; 130 when
``demo`` was stopped with Ctrl-C (the recording is still closed cleanly: every
frame accepted before the interrupt is written, and the summary is printed).

This is the only module of streamsave that prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._errors import StreamSaveError
from ._saver import Saver, open_saver
from ._spec import Compression
from ._stats import ChannelStatistics, SaverStatistics
from ._version import __version__
from .simulate import (
    CAMERA_RATE,
    Instruments,
    add_simulated_instruments,
    camera_frames,
    run_camera,
    run_spectrometer,
    run_thermometer,
)

__all__ = ("main",)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

DEFAULT_OUTPUT = "streamsave-demo.h5"
REFRESH_PER_SECOND = 4
RATE_WINDOW = 1.0  # seconds over which the live table measures rates


# ---------------------------------------------------------------------------- arguments
def _positive(kind: type[int] | type[float], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{what} must be positive and finite, got {text!r}")
        return value

    return parse


def _compression(text: str) -> Compression | None:
    try:
        return Compression.parse(text)
    except StreamSaveError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamsave", description="Continuous, compressed saving of detector frames to HDF5.",
        epilog="Exit status: 0 ok, 1 error, 2 usage error, 130 interrupted (Ctrl-C).")
    parser.add_argument("--version", action="version", version=f"streamsave {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="record simulated camera, spectrometer and thermometer into a file",
        description="Record a simulated camera, spectrometer and thermometer concurrently into one "
                    "HDF5 file, showing live statistics. Ctrl-C stops early: the file is still closed "
                    "cleanly and the exit status is 130.")
    demo.add_argument("-o", "--output", type=Path, default=Path(DEFAULT_OUTPUT), metavar="PATH",
                      help=f"file to create (default: {DEFAULT_OUTPUT} in the current directory)")
    demo.add_argument("--duration", type=_positive(float, "--duration"), default=5.0, metavar="SECONDS",
                      help="how long to record (default: 5)")
    demo.add_argument("--rate", type=_positive(float, "--rate"), default=CAMERA_RATE, metavar="HZ",
                      help=f"camera frame rate (default: {CAMERA_RATE:g})")
    demo.add_argument("--compression", type=_compression, default="blosc2-lz4", metavar="CODEC",
                      help="blosc2-lz4 (default), blosc2-zstd, blosc2-lz4hc, blosc2-blosclz, blosc2-zlib "
                           "or none")
    demo.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    info = commands.add_parser("info", help="list the detectors and channels of a streamsave file",
                               description="List the channels of a file written by streamsave.")
    info.add_argument("file", type=Path, metavar="FILE")
    rec = commands.add_parser("recover", help="copy the whole frames of a crashed recording into a new, clean file")
    rec.add_argument("file", type=Path, metavar="FILE")
    rec.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="the file to create")
    rec.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamsave`` command line with ``argv`` (default: ``sys.argv[1:]``).

    :returns: the exit status (see the module docstring); usage errors return 2
        instead of raising :class:`SystemExit`.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "recover":
            return _recover(args.file, args.output, args.overwrite)
        return _info(args.file)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def _console() -> Console:
    """stdout; when it is not a terminal (a pipe, a CI log), 160 columns rather than
    rich's default 80, so tables are not squeezed (unless COLUMNS says otherwise)."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=160)
    return console


def _error(message: str) -> None:
    sys.stderr.write(f"streamsave: error: {message}\n")
    sys.stderr.flush()


def _streamsave_error(exc: BaseException) -> StreamSaveError | None:
    """The StreamSaveError behind ``exc``, looking inside exception groups."""
    if isinstance(exc, StreamSaveError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _streamsave_error(inner)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------- demo
@dataclass
class _Run:
    """What one ``demo`` run did, for the live table and the summary."""

    path: Path
    duration: float
    rate: float
    saver: Saver | None = None
    instruments: Instruments | None = None
    started: float | None = None
    stopped: float | None = None
    interrupted: bool = False
    history: deque[tuple[float, tuple[int, ...], tuple[int, ...]]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def recorded(self) -> float:
        if self.started is None:
            return 0.0
        return (self.stopped if self.stopped is not None else time.monotonic()) - self.started


def _demo(args: argparse.Namespace) -> int:
    path: Path = args.output
    if path.exists() and not args.overwrite:
        _error(f"{str(path)!r} already exists; pass --overwrite to replace it, or -o to choose another file")
        return EXIT_ERROR
    console = _console()
    run = _Run(path=path, duration=args.duration, rate=args.rate)
    try:
        anyio.run(_record, run, args.compression, args.overwrite, console)
    except KeyboardInterrupt:  # Ctrl-C before the handler was installed (or no signals here)
        run.interrupted = True
    except BaseException as exc:
        error = _streamsave_error(exc)
        if error is None:
            raise
        _error(str(error))
        return EXIT_ERROR
    if run.saver is not None:
        _print_summary(console, run, run.saver.statistics())
    return EXIT_INTERRUPTED if run.interrupted else EXIT_OK


async def _record(run: _Run, compression: Compression | None, overwrite: bool, console: Console) -> None:
    live = Live(get_renderable=lambda: _render(run), console=console, refresh_per_second=REFRESH_PER_SECOND,
                redirect_stderr=False)  # warnings and errors stay on stderr
    with live:
        async with anyio.create_task_group() as outer:
            async with open_saver(run.path, mode="w" if overwrite else "w-", compression=compression,
                                  flush_interval=1.0) as saver:
                instruments = add_simulated_instruments(saver)
                run.saver, run.instruments = saver, instruments
                rows, cols = instruments.camera.shape
                pool = await anyio.to_thread.run_sync(camera_frames, (rows, cols))
                try:
                    async with anyio.create_task_group() as drivers:
                        await outer.start(_watch_sigint, drivers.cancel_scope, run)
                        console.print(f"Recording to {str(run.path)!r} for {run.duration:g} s; press Ctrl-C "
                                      "to stop early.", markup=False, soft_wrap=True)
                        run.started = time.monotonic()
                        _start_drivers(drivers, instruments, run, pool)
                finally:
                    run.stopped = time.monotonic()
            outer.cancel_scope.cancel()
    if not console.is_terminal:
        console.line()  # rich leaves the last line of the final table open on files and pipes


def _start_drivers(
    tg: anyio.abc.TaskGroup, instruments: Instruments, run: _Run, pool: list[npt.NDArray[np.uint16]],
) -> None:
    tg.start_soon(partial(run_camera, instruments.camera, rate=run.rate, duration=run.duration, pool=pool))
    tg.start_soon(partial(run_spectrometer, instruments.spectrometer, duration=run.duration))
    tg.start_soon(partial(run_thermometer, instruments.thermometer, duration=run.duration))


async def _watch_sigint(
    scope: anyio.CancelScope, run: _Run, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Turn Ctrl-C into 'stop the drivers', so the saver then closes normally.

    Without signal handling (Windows, or not the main thread) Ctrl-C raises
    KeyboardInterrupt instead: the saver still closes, dropping what it cannot write
    within its close_timeout.
    """
    try:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                run.interrupted = True
                scope.cancel()
    except (NotImplementedError, ValueError):
        task_status.started()


# ---------------------------------------------------------------------------- live table
def _render(run: _Run) -> RenderableType:
    """The live table; called by rich's refresh thread. Only reads statistics()."""
    saver = run.saver
    if saver is None:  # opening: nothing to show yet (and nothing left behind if opening fails)
        return Text("")
    stats = saver.statistics()
    now = time.monotonic()
    final = stats.state in ("closed", "failed")
    rates = None if final else _recent_rates(run, now, stats.channels)
    return _table(run, stats, rates)


def _recent_rates(run: _Run, now: float, chans: tuple[ChannelStatistics, ...]) -> list[tuple[float, float]]:
    """(frames/s, MB/s) per channel over the last RATE_WINDOW seconds."""
    frames = tuple(c.frames_written for c in chans)
    nbytes = tuple(c.bytes_written for c in chans)
    with run.lock:
        history = run.history
        history.append((now, frames, nbytes))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        then, old_frames, old_bytes = history[0]
    dt = now - then
    if dt <= 0:
        return [(0.0, 0.0)] * len(chans)
    return [((f - f0) / dt, (b - b0) / dt / 1e6) for f, f0, b, b0 in zip(frames, old_frames, nbytes, old_bytes,
                                                                           strict=True)]


def _table(run: _Run, stats: SaverStatistics, rates: list[tuple[float, float]] | None) -> Table:
    state = stats.state if not run.interrupted else f"{stats.state}, interrupted"
    recorded = run.recorded()
    caption = ("rates over the last second" if rates is not None
               else f"rates are means over the {recorded:.2f} s recording")
    table = Table(title=Text(f"{run.path}  {recorded:.1f} / {run.duration:g} s  ({state})"),
                  title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    table.add_column("channel", no_wrap=True, min_width=max((len(c.name) for c in stats.channels), default=7))
    for header in ("written", "frames/s", "MB/s", "queue", "dropped", "durable", "ratio"):
        table.add_column(header, justify="right")
    if rates is None:
        span = recorded if recorded > 0 else math.inf
        rates = [(c.frames_written / span, c.bytes_written / span / 1e6) for c in stats.channels]
    for chan, (fps, mbps) in zip(stats.channels, rates, strict=True):
        table.add_row(Text(chan.name), f"{chan.frames_written:,}", f"{fps:,.1f}", f"{mbps:,.1f}",
                      f"{_short(chan.queue_fill)}/{_short(chan.queue_capacity)}", f"{chan.frames_dropped:,}",
                      f"{chan.frames_durable:,}", f"{chan.compression_ratio:.2f}")
    ratio = stats.bytes_written / stats.bytes_stored if stats.bytes_stored else 1.0
    table.add_section()
    table.add_row("total", f"{stats.frames_written:,}", f"{sum(r[0] for r in rates):,.1f}",
                  f"{sum(r[1] for r in rates):,.1f}",
                  _short(sum(c.queue_fill for c in stats.channels)), f"{stats.frames_dropped:,}",
                  f"{stats.frames_durable:,}", f"{ratio:.2f}")
    return table


def _short(count: int) -> str:
    """A queue size in at most 5 characters: 512, 16384, 262k, 1048k, 17M."""
    if count < 100_000:
        return str(count)
    if count < 10_000_000:
        return f"{count // 1000}k"
    return f"{count // 1_000_000}M"


# ---------------------------------------------------------------------------- summary
def _print_summary(console: Console, run: _Run, stats: SaverStatistics) -> None:
    path = run.path.resolve()
    size = path.stat().st_size if path.exists() else 0
    lines: list[RenderableType] = []
    if run.interrupted:
        lines.append(Text("Interrupted: the recording stopped early and the file was closed cleanly."))
    lines.append(Text(f"Saved {stats.frames_written:,} frames in {run.recorded():.2f} s to {path}"))
    lines.append(Text(f"  {size / 1e6:,.1f} MB on disk, {stats.flushes} flushes, "
                      f"{stats.frames_dropped:,} frames dropped"))
    camera = next((c for c in stats.channels if c.name == "Camera/image"), None)
    if camera is not None and run.recorded() > 0:
        achieved = camera.frames_written / run.recorded()
        lines.append(Text(f"  camera: {camera.frames_written:,} frames, {achieved:,.1f} frames/s achieved "
                          f"of {run.rate:,.1f} requested, {camera.bytes_written / run.recorded() / 1e6:,.1f} MB/s raw"))
        lines.append(Text(f"  camera: compression ratio {camera.compression_ratio:.2f}, queue high water "
                          f"{camera.queue_high_water}/{camera.queue_capacity} frames"))
    dataset = "/RawData/Detector000/Data2D/CH00/EnlData00"
    if run.instruments is not None and run.instruments.camera.paths is not None:
        dataset = run.instruments.camera.paths.data
    lines.append(Text("Read it back with h5py and hdf5plugin (no streamsave needed):"))
    console.print(Group(*lines))
    console.print(f"    import h5py, hdf5plugin\n"
                  f"    with h5py.File({str(path)!r}, 'r') as f:\n"
                  f"        images = f[{dataset!r}][-10:]  # the last 10 camera images\n"
                  f"List every channel with: streamsave info {path}", markup=False, soft_wrap=True)


# ---------------------------------------------------------------------------- info
def _info(path: Path) -> int:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the Blosc2 filter for h5py)

    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        _error(f"cannot open {str(path)!r} as an HDF5 file: {exc}")
        return EXIT_ERROR
    with file:
        raw = file.get("RawData")
        if not isinstance(raw, h5py.Group):
            _error(f"{str(path)!r} is an HDF5 file but not a streamsave file (it has no /RawData group)")
            return EXIT_ERROR
        table = Table(title=Text(f"{path}  ({path.stat().st_size / 1e6:,.1f} MB)"), title_justify="left",
                      box=box.SIMPLE_HEAD)
        for header in ("channel / dataset", "frames", "frame shape", "dtype", "units", "compression",
                       "time span (s)"):
            table.add_column(header, justify="right" if header in ("frames", "time span (s)") else "left",
                             no_wrap=header == "channel / dataset")
        rows = _channel_rows(raw)
        for name, dataset, *cells in rows:
            label = Text(name)  # Text, not markup: names may contain [brackets]
            label.append(f"\n{dataset}", style="dim")
            table.add_row(label, *(Text(cell) for cell in cells))
    console = _console()
    console.print(table)
    if not rows:
        console.print("(no channels)")
    return EXIT_OK


def _attr(node: Any, name: str, default: str = "") -> str:
    value = node.attrs.get(name, default)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    if text.startswith('{"module"'):  # PyMoDAQ's JSON envelope for typed values
        text = str(json.loads(text).get("data", text)).strip("'\"")
    return text


def _channel_rows(raw: Any) -> list[tuple[str, ...]]:
    import h5py

    rows = []
    for det_name in sorted(raw):
        detector = raw[det_name]
        if not (isinstance(detector, h5py.Group) and det_name.startswith("Detector")):
            continue
        for dim_name in sorted(detector):
            dim = detector[dim_name]
            if not isinstance(dim, h5py.Group):
                continue
            for ch_name in sorted(dim):
                group = dim[ch_name]
                signal_name = _attr(group, "signal", "EnlData00")
                data = group.get(signal_name) if isinstance(group, h5py.Group) else None
                if not isinstance(data, h5py.Dataset):
                    continue
                rows.append(_channel_row(detector, group, data))
    return rows


def _channel_row(detector: Any, group: Any, data: Any) -> tuple[str, ...]:
    import h5py

    time_ds = next((group[k] for k in group if isinstance(group[k], h5py.Dataset)
                    and _attr(group[k], "label") == "time"), None)
    span = _time_span(time_ds[()]) if time_ds is not None and time_ds.shape and time_ds.shape[0] > 1 else ""
    shape = "scalar" if data.shape[1:] == (1,) and _attr(data, "data_dimension") == "Data0D" else str(data.shape[1:])
    compression = _attr(data, "compression") or (str(data.compression) if data.compression else "none")
    name = f"{_attr(detector, 'TITLE', detector.name)}/{_attr(group, 'TITLE', group.name)}"
    return (name, data.name, f"{data.shape[0]:,}", shape, str(data.dtype), _attr(data, "units"), compression, span)


def _time_span(times: npt.NDArray[Any]) -> str:
    """From the earliest to the latest timestamp (never negative: timestamps a program
    gave may go backwards), noting when they are not in order."""
    times = np.asarray(times, dtype=np.float64)
    finite = times[np.isfinite(times)]
    if finite.size < 2:
        return ""
    span = f"{float(finite.max()) - float(finite.min()):.3f}"
    return span if bool(np.all(times[1:] >= times[:-1])) else f"{span} (not in order)"


def _recover(src: Path, dst: Path, overwrite: bool) -> int:
    from ._errors import RecoveryError
    from ._recover import recover

    try:
        print(recover(src, dst, overwrite=overwrite).summary())  # FILE is only read
    except RecoveryError as exc:
        _error(str(exc))
        return EXIT_ERROR
    return EXIT_OK
