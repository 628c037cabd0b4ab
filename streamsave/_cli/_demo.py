"""``streamsave demo``: record the simulated instruments, with a live table."""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import numpy as np
import numpy.typing as npt
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._errors import StreamSaveError
from .._saver import Saver, open_saver
from .._spec import Compression
from .._stats import ChannelStatistics, SaverStatistics
from ..simulate import (
    CAMERA_RATE,
    SPECTROMETER_RATE,
    THERMOMETER_RATE,
    Instruments,
    add_simulated_instruments,
    camera_frames,
    run_camera,
    run_spectrometer,
    run_thermometer,
)
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, console, error, nbytes, positive, rate, short_count

__all__ = ("DEFAULT_OUTPUT", "add_parser", "estimate", "run", "table")

DEFAULT_OUTPUT: Final = "streamsave-demo.h5"
REFRESH_PER_SECOND: Final = 4
RATE_WINDOW: Final = 1.0  # seconds over which the live table measures rates


def _compression(text: str) -> Compression | None:
    try:
        return Compression.parse(text)
    except StreamSaveError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="record a simulated camera, spectrometer and thermometer into a file",
        description="Record a simulated camera (512 x 512 uint16 images), spectrometer (2048-pixel spectra, "
                    f"{SPECTROMETER_RATE:g}/s) and thermometer ({THERMOMETER_RATE:g} readings/s) concurrently "
                    "into one HDF5 file, with a live table of what the saver is doing. It says how large the "
                    "file can grow before it starts. Ctrl-C stops early: the file is still closed cleanly and "
                    "the exit status is 130.")
    demo.add_argument("-o", "--output", type=Path, default=Path(DEFAULT_OUTPUT), metavar="PATH",
                      help=f"file to create (default: {DEFAULT_OUTPUT} in the current directory)")
    demo.add_argument("--duration", type=positive(float, "--duration"), default=5.0, metavar="SECONDS",
                      help="how long to record, in seconds (default: 5)")
    demo.add_argument("--rate", type=positive(float, "--rate"), default=CAMERA_RATE, metavar="HZ",
                      help=f"camera frame rate, frames per second (default: {CAMERA_RATE:g}; a 512 x 512 "
                           "uint16 image is 0.52 MB)")
    demo.add_argument("--compression", type=_compression, default="blosc2-lz4", metavar="CODEC",
                      help="blosc2-lz4 (default), blosc2-zstd, blosc2-lz4hc, blosc2-blosclz, blosc2-zlib "
                           "or none")
    demo.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")


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


def run(args: argparse.Namespace) -> int:
    path: Path = args.output
    if path.exists() and not args.overwrite:
        error(f"{str(path)!r} already exists; pass --overwrite to replace it, or -o to choose another file")
        return EXIT_ERROR
    out = console()
    state = _Run(path=path, duration=args.duration, rate=args.rate)
    try:
        anyio.run(_record, state, args.compression, args.overwrite, out)
    except KeyboardInterrupt:  # Ctrl-C before the handler was installed (or no signals here)
        state.interrupted = True
    except BaseException as exc:
        found = _streamsave_error(exc)
        if found is None:
            raise
        error(str(found))
        return EXIT_ERROR
    if state.saver is not None:
        _print_summary(out, state, state.saver.statistics())
    return EXIT_INTERRUPTED if state.interrupted else EXIT_OK


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


# ---------------------------------------------------------------------------- recording
def estimate(instruments: Instruments, camera_rate: float, duration: float) -> dict[str, int]:
    """The most raw bytes each channel (``"Detector/channel"``) can write in ``duration``
    seconds: its rate times its frame size, what the file holds before compression."""
    rates = ((instruments.camera, camera_rate), (instruments.spectrometer, SPECTROMETER_RATE),
             (instruments.thermometer, THERMOMETER_RATE))
    return {ch.full_name: math.ceil(hz * duration) * np.dtype(ch.dtype).itemsize * math.prod(ch.shape)
            for ch, hz in rates}


def _announce(out: Console, state: _Run, instruments: Instruments, compression: Compression | None) -> None:
    """Say where the recording goes and how large it can grow, before the first frame."""
    sizes = estimate(instruments, state.rate, state.duration)
    total = sum(sizes.values())
    camera = instruments.camera
    frame = np.dtype(camera.dtype).itemsize * math.prod(camera.shape)
    out.print(f"Recording to {str(state.path)!r} for {state.duration:g} s; press Ctrl-C to stop early.",
              markup=False, soft_wrap=True)
    squeezed = "less once compressed" if compression is not None else "uncompressed"
    out.print(Text(f"The file will hold up to {nbytes(total)} of frames ({squeezed}): the camera's "
                   f"{'x'.join(map(str, camera.shape))} {camera.dtype} images ({nbytes(frame)} each) at "
                   f"{state.rate:,g} frames/s make {nbytes(sizes[camera.full_name])}."))
    free = _free_bytes(state.path)
    if free is not None and free < total:
        sys.stderr.write(f"streamsave: warning: only {nbytes(free)} free where {str(state.path)!r} is written; "
                         "the recording may stop with a storage error\n")


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.resolve().parent).free
    except OSError:
        return None


async def _record(state: _Run, compression: Compression | None, overwrite: bool, out: Console) -> None:
    live = Live(get_renderable=lambda: _render(state), console=out, refresh_per_second=REFRESH_PER_SECOND,
                redirect_stderr=False)  # warnings and errors stay on stderr
    with live:
        async with anyio.create_task_group() as outer:
            async with open_saver(state.path, mode="w" if overwrite else "w-", compression=compression,
                                  flush_interval=1.0) as saver:
                instruments = add_simulated_instruments(saver)
                state.saver, state.instruments = saver, instruments
                rows, cols = instruments.camera.shape
                pool = await anyio.to_thread.run_sync(camera_frames, (rows, cols))
                try:
                    async with anyio.create_task_group() as drivers:
                        await outer.start(_watch_sigint, drivers.cancel_scope, state)
                        _announce(out, state, instruments, compression)
                        state.started = time.monotonic()
                        _start_drivers(drivers, instruments, state, pool)
                finally:
                    state.stopped = time.monotonic()
            outer.cancel_scope.cancel()
    if not out.is_terminal:
        out.line()  # rich leaves the last line of the final table open on files and pipes


def _start_drivers(
    tg: anyio.abc.TaskGroup, instruments: Instruments, state: _Run, pool: list[npt.NDArray[np.uint16]],
) -> None:
    tg.start_soon(partial(run_camera, instruments.camera, rate=state.rate, duration=state.duration, pool=pool))
    tg.start_soon(partial(run_spectrometer, instruments.spectrometer, duration=state.duration))
    tg.start_soon(partial(run_thermometer, instruments.thermometer, duration=state.duration))


async def _watch_sigint(
    scope: anyio.CancelScope, state: _Run, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
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
                state.interrupted = True
                scope.cancel()
    except (NotImplementedError, ValueError):
        task_status.started()


# ---------------------------------------------------------------------------- live table
def _render(state: _Run) -> RenderableType:
    """The live table; called by rich's refresh thread. Only reads statistics()."""
    saver = state.saver
    if saver is None:  # opening: nothing to show yet (and nothing left behind if opening fails)
        return Text("")
    stats = saver.statistics()
    final = stats.state in ("closed", "failed")
    rates = None if final else _recent_rates(state, time.monotonic(), stats.channels)
    state_text = stats.state if not state.interrupted else f"{stats.state}, interrupted"
    return table(stats, rates, title=f"{state.path}  {state.recorded():.1f} / {state.duration:g} s  ({state_text})",
                 recorded=state.recorded())


def _recent_rates(state: _Run, now: float, chans: tuple[ChannelStatistics, ...]) -> list[tuple[float, float]]:
    """(frames/s, MB/s) per channel over the last RATE_WINDOW seconds."""
    frames = tuple(c.frames_written for c in chans)
    written = tuple(c.bytes_written for c in chans)
    with state.lock:
        history = state.history
        history.append((now, frames, written))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        then, old_frames, old_bytes = history[0]
    dt = now - then
    if dt <= 0:
        return [(0.0, 0.0)] * len(chans)
    return [((f - f0) / dt, (b - b0) / dt / 1e6) for f, f0, b, b0 in zip(frames, old_frames, written, old_bytes,
                                                                           strict=True)]


def table(stats: SaverStatistics, rates: list[tuple[float, float]] | None, *, title: str,
          recorded: float) -> Table:
    """The demo's table: one row per channel and a total. ``rates`` are the recent
    (frames/s, MB/s) per channel while recording, ``None`` for means over ``recorded``
    seconds. Every cell has at most 7 characters, so with channel names up to 29
    characters the table fits 80 columns."""
    ratio = stats.bytes_written / stats.bytes_stored if stats.bytes_stored else 1.0
    caption = ("rates over the last second" if rates is not None
               else f"rates are means over the {recorded:.2f} s recording")
    table = Table(title=Text(title), title_justify="left", caption=f"{caption}; compression ratio {ratio:.2f}",
                  caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  show_edge=False)
    table.add_column("channel", no_wrap=True, min_width=max((len(c.name) for c in stats.channels), default=7))
    for header in ("written", "frames/s", "MB/s", "queue", "dropped", "durable"):
        table.add_column(header, justify="right", no_wrap=True)
    if rates is None:
        span = recorded if recorded > 0 else math.inf
        rates = [(c.frames_written / span, c.bytes_written / span / 1e6) for c in stats.channels]
    for chan, (fps, mbps) in zip(stats.channels, rates, strict=True):
        table.add_row(Text(chan.name), short_count(chan.frames_written), rate(fps), _mb(mbps),
                      f"{_short(chan.queue_fill)}/{_short(chan.queue_capacity)}", short_count(chan.frames_dropped),
                      short_count(chan.frames_durable))
    table.add_section()
    table.add_row("total", short_count(stats.frames_written), rate(sum(r[0] for r in rates)),
                  _mb(sum(r[1] for r in rates)), _short(sum(c.queue_fill for c in stats.channels)),
                  short_count(stats.frames_dropped), short_count(stats.frames_durable))
    return table


def _mb(value: float) -> str:
    """MB/s in at most 6 characters: 1.6, 523, 2,000, 12.3k."""
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _short(count: int) -> str:
    """A queue size in at most 3 characters: 73, 512, 16k, 262k, 1M, 17M."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count // 1_000_000}M"


# ---------------------------------------------------------------------------- summary
def _print_summary(out: Console, state: _Run, stats: SaverStatistics) -> None:
    path = state.path.resolve()
    size = path.stat().st_size if path.exists() else 0
    lines: list[RenderableType] = []
    if state.interrupted:
        lines.append(Text("Interrupted: the recording stopped early and the file was closed cleanly."))
    lines.append(Text(f"Saved {stats.frames_written:,} frames in {state.recorded():.2f} s to {path}"))
    lines.append(Text(f"  {size / 1e6:,.1f} MB on disk, {stats.flushes} flushes, "
                      f"{stats.frames_dropped:,} frames dropped"))
    camera = next((c for c in stats.channels if c.name == "Camera/image"), None)
    if camera is not None and state.recorded() > 0:
        achieved = camera.frames_written / state.recorded()
        lines.append(Text(f"  camera: {camera.frames_written:,} frames, {achieved:,.1f} frames/s achieved "
                          f"of {state.rate:,.1f} requested"))
        lines.append(Text(f"  camera: {camera.bytes_written / state.recorded() / 1e6:,.1f} MB/s raw, compression "
                          f"ratio {camera.compression_ratio:.2f}, queue high water "
                          f"{camera.queue_high_water}/{camera.queue_capacity}"))
    dataset = "/RawData/Detector000/Data2D/CH00/EnlData00"
    if state.instruments is not None and state.instruments.camera.paths is not None:
        dataset = state.instruments.camera.paths.data
    lines.append(Text("Read it back with h5py and hdf5plugin (no streamsave needed):"))
    out.print(Group(*lines))
    out.print(f"    import h5py, hdf5plugin\n"
              f"    with h5py.File({str(path)!r}, 'r') as f:\n"
              f"        images = f[{dataset!r}]\n"
              f"        last = images[-10:]  # the last 10 camera images", markup=False, soft_wrap=True)
    quoted = shlex.quote(str(path))
    out.print(f"Or look at it with streamsave:\n"
              f"    streamsave info {quoted}\n"
              f"    streamsave plot {quoted} Camera/image -o image.png", markup=False, soft_wrap=True)
