"""Record a camera, a spectrometer and a thermometer at once into one HDF5 file.

The situation: a pump-probe or imaging experiment where a fast camera (here
512 x 512 pixels, 16 bit, 1000 frames/s), a spectrometer (2048 pixels, 100
spectra/s) and a sample thermometer (10 readings/s) all run at the same time and
every frame must reach the disk, each with its own acquisition timestamp.

Each instrument is driven by an asyncio task (simulated here by
``streamsave.simulate``; a real driver would await its hardware instead) that
pushes frames into its own channel. streamsave queues them, compresses them with
Blosc2/LZ4 in worker threads and writes them from one writer thread, so the
drivers never wait on the disk unless the disk cannot keep up (then ``await
push()`` slows them down instead of losing data).

After recording, the file is read back with nothing but h5py and hdf5plugin, to
show that it is an ordinary HDF5 file.

Run it::

    python examples/record_three_detectors.py run.h5 --duration 5
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import anyio
import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc2 decompression filter with h5py)
import numpy as np

import streamsave
from streamsave.simulate import (
    add_simulated_instruments,
    camera_frames,
    run_camera,
    run_spectrometer,
    run_thermometer,
)


async def record(path: Path, *, duration: float, camera_rate: float, overwrite: bool) -> None:
    """Record the three simulated instruments for ``duration`` seconds."""
    images = camera_frames()  # the simulated camera's images, made before the clock starts
    async with streamsave.open_saver(path, mode="w" if overwrite else "w-", compression="blosc2-lz4",
                                     flush_interval=1.0) as saver:
        # Declare every detector and channel before the first frame (SWMR).
        instruments = add_simulated_instruments(saver)
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_camera, instruments.camera, rate=camera_rate, duration=duration,
                                  pool=images))
            tg.start_soon(partial(run_spectrometer, instruments.spectrometer, duration=duration))
            tg.start_soon(partial(run_thermometer, instruments.thermometer, duration=duration))
        elapsed = time.monotonic() - start
    # Leaving the block wrote every queued frame and closed the file.
    stats = saver.statistics()
    print(f"recorded {elapsed:.2f} s into {path} ({stats.flushes} flushes)")
    for chan in stats.channels:
        print(f"  {chan.name:<24} {chan.frames_written:>7} frames  {chan.frames_written / elapsed:8.1f} frames/s"
              f"  {chan.mb_per_second:7.1f} MB/s  compression {chan.compression_ratio:.2f}x"
              f"  dropped {chan.frames_dropped}")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def summarize(path: Path) -> None:
    """Read the file back with plain h5py and print what is in it."""
    with h5py.File(path, "r") as f:
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")

        def show(name: str, node: object) -> None:
            if isinstance(node, h5py.Dataset) and name.rsplit("/", 1)[-1].startswith("EnlData"):
                group = node.parent
                times = group[_text(group.attrs["axes"][0])]  # NeXus: the first axis is time
                last = node[-1]
                print(f"  {group.attrs['origin']}/{group.attrs['TITLE']} at /{name}: {node.shape[0]} frames of "
                      f"{node.shape[1:]} {node.dtype}, last frame mean {np.mean(last):.3f}, "
                      f"{times[-1] - times[0]:.3f} s of timestamps")

        f.visititems(show)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, nargs="?", default=Path("three_detectors.h5"),
                        help="HDF5 file to create (default: three_detectors.h5)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to record (default: 5)")
    parser.add_argument("--camera-rate", type=float, default=1000.0, help="camera frames/s (default: 1000)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args()
    anyio.run(partial(record, args.output, duration=args.duration, camera_rate=args.camera_rate,
                      overwrite=args.overwrite))
    summarize(args.output)


if __name__ == "__main__":
    main()
