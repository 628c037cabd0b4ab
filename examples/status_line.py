"""A subscriber that prints a live status line while a recording runs.

The situation: an operator wants to see, at a glance and without a GUI, how the
recording is going: frames written, compression, what is durable on disk, and
whether anything was dropped. Any number of such subscribers can watch one saver;
none of them can slow the writer down (a slow one just skips updates).

Run it::

    python examples/status_line.py status.h5 --duration 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

import streamsave
from streamsave.simulate import add_simulated_instruments, run_camera, run_thermometer


async def status(saver: streamsave.Saver) -> None:
    """Print one line per progress event, and a final line when the file closes."""
    async with saver.subscribe() as events:
        async for event in events:
            match event:
                case streamsave.FramesWritten(channel=ch, frames_written=n, frames_durable=d,
                                              compression_ratio=r, queue_fill=q):
                    print(f"\r{ch:<24} written {n:>7}  durable {d:>7}  ratio {r:4.2f}  queue {q:>4}",
                          end="", flush=True)
                case streamsave.FramesDropped(channel=ch, count=n, total=total):
                    print(f"\n{ch}: dropped {n} frames ({total} in all)", flush=True)
                case streamsave.WriterFailed(error=error):
                    print(f"\nwriter failed: {error}", file=sys.stderr)
                case streamsave.FileClosed(statistics=final):
                    print(f"\nclosed {final.path}: {final.frames_written} frames written, "
                          f"{final.frames_dropped} dropped, {final.flushes} flushes")


async def main(path: Path, duration: float) -> None:
    async with streamsave.open_saver(path, mode="w", compression="blosc2-lz4", progress_interval=0.25) as saver:
        instruments = add_simulated_instruments(saver)
        async with anyio.create_task_group() as tg:
            tg.start_soon(status, saver)
            async with anyio.create_task_group() as drivers:
                drivers.start_soon(lambda: run_camera(instruments.camera, rate=200, duration=duration))
                drivers.start_soon(lambda: run_thermometer(instruments.thermometer, rate=10, duration=duration))
            await saver.aclose()  # the status task ends with the FileClosed event


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    anyio.run(main, args.output, args.duration)
