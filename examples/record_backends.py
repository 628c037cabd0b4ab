"""Record the same three instruments to any storage backend by changing one argument.

The situation: the same acquisition code has to save to a local HDF5 file written
by h5py (the default: SWMR, live readers), to a local file written by PyTables (no
SWMR: readers wait until it is closed), or to an HSDS service through h5pyd (the
file is a domain such as ``/home/USER/run.h5`` on a server whose data nodes and
object storage can be far larger than one machine's disk). Only ``backend=``
changes; the file's tree is the same, and ``streamsave.open_reader`` reads it back
from any of them.

For h5pyd the connection follows h5pyd's conventions: the ``HS_ENDPOINT``,
``HS_USERNAME`` and ``HS_PASSWORD`` environment variables or ``~/.hscfg``, unless
``--endpoint``/``--username`` are given (the password is only ever read from the
environment or the configuration file, never from the command line, where other
users could see it in ``ps``).

Run it::

    python examples/record_backends.py run.h5 --backend tables --duration 2
    HS_ENDPOINT=http://hsds.example.org:5101 HS_USERNAME=me HS_PASSWORD=... \\
        python examples/record_backends.py /home/me/run.h5 --backend h5pyd
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from typing import Any

import anyio

import streamsave
from streamsave.simulate import (
    add_simulated_instruments,
    camera_frames,
    run_camera,
    run_spectrometer,
    run_thermometer,
)


async def record(target: str, *, backend: str, backend_options: dict[str, Any], duration: float,
                 camera_rate: float, compression: str) -> None:
    images = camera_frames()
    async with streamsave.open_saver(target, mode="w", backend=backend, backend_options=backend_options,
                                     compression=compression, flush_interval=1.0) as saver:
        instruments = add_simulated_instruments(saver)
        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_camera, instruments.camera, rate=camera_rate, duration=duration,
                                  pool=images))
            tg.start_soon(partial(run_spectrometer, instruments.spectrometer, duration=duration))
            tg.start_soon(partial(run_thermometer, instruments.thermometer, duration=duration))
        elapsed = time.monotonic() - start
    stats = saver.statistics()
    print(f"recorded {elapsed:.2f} s to {target} with backend {backend!r} (SWMR: {saver.config.swmr}, "
          f"{stats.flushes} flushes)")
    for chan in stats.channels:
        print(f"  {chan.name:<24} {chan.frames_written:>7} frames  {chan.mb_per_second:7.1f} MB/s  "
              f"dropped {chan.frames_dropped}")


def read_back(target: str, *, backend: str, backend_options: dict[str, Any]) -> None:
    with streamsave.open_reader(target, backend=backend, backend_options=backend_options) as run:
        for name, channel in run.channels.items():
            times = channel.timestamps[:]
            print(f"  read back {name}: {channel.shape[0]} frames of {channel.frame_shape} {channel.dtype}, "
                  f"{times[-1] - times[0]:.3f} s of timestamps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="the file to create (for h5pyd: the domain, /home/USER/NAME.h5)")
    parser.add_argument("--backend", choices=("h5py", "tables", "h5pyd"), default="h5py",
                        help="where to record (default: h5py)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds to record (default: 2)")
    parser.add_argument("--camera-rate", type=float, default=200.0, help="camera frames/s (default: 200)")
    parser.add_argument("--compression", default="blosc2-lz4",
                        help="blosc2-lz4 (default; every backend stores it), another codec, or none")
    parser.add_argument("--endpoint", help="h5pyd: the HSDS endpoint (default: HS_ENDPOINT or ~/.hscfg)")
    parser.add_argument("--username", help="h5pyd: the HSDS user (default: HS_USERNAME or ~/.hscfg)")
    args = parser.parse_args()
    options: dict[str, Any] = {}
    if args.backend == "h5pyd":
        options = {key: value for key, value in (("endpoint", args.endpoint), ("username", args.username))
                   if value}
        if "username" in options and "HS_PASSWORD" in os.environ:
            options["password"] = os.environ["HS_PASSWORD"]
    try:
        anyio.run(partial(record, args.target, backend=args.backend, backend_options=options,
                          duration=args.duration, camera_rate=args.camera_rate, compression=args.compression))
        read_back(args.target, backend=args.backend, backend_options=options)
    except streamsave.StreamSaveError as exc:
        sys.exit(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
