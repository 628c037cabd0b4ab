"""Read a streamsave file with nothing but h5py and hdf5plugin, during the recording and after it.

streamsave writes ordinary HDF5: any program that can read HDF5 and has the Blosc2
filter (``pip install h5py hdf5plugin``; ``import hdf5plugin`` registers it) can
open the file. The layout follows PyMoDAQ's, with NeXus attributes so generic
viewers find the data::

    /RawData/Detector000                    one group per detector (TITLE = its name)
    /RawData/Detector000/Data2D/CH00        one NXdata group per channel (TITLE = its name)
        EnlData00                           the frames: shape (frames, *frame_shape)
        Axis00, Axis01, ...                 signal axes (e.g. wavelength) and the time axis
                                            (the group's ``axes`` attribute names time first)

Every channel has its own timestamps (Unix epoch seconds, one per frame), because
instruments run at different rates. This script lists the channels, loads the last
frame of each and its timestamps, and prints the frame rate they imply.

**After the recording** the file opens with a plain ``h5py.File(path, "r")``.

**During the recording** (``--follow``) the writer holds the file in SWMR mode, where a
plain reader fails with "file is already open for write". A reader must then

1. open it as an SWMR reader: ``h5py.File(path, "r", swmr=True)``, which works once
   writing has started (the first push; before that the file is locked);
2. call ``dataset.refresh()`` before each look: an open dataset keeps the size it had
   when it was opened (or last refreshed);
3. read: every frame up to the writer's last flush (``flush_interval``, 1 s by
   default) is there, complete.

The data and time datasets are refreshed one after the other, so they may differ by
a flush; a frame is complete when both have it.

Follow a recording from another process, then read the finished file::

    streamsave demo -o live.h5 --duration 10 &
    python examples/read_back.py live.h5 --follow 8
    python examples/read_back.py live.h5          # once the recording has ended

or read a file from ``streamsave demo`` or ``record_three_detectors.py``::

    python examples/read_back.py streamsave-demo.h5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc2 decompression filter with h5py)
import numpy as np


def text(value: Any) -> str:
    """An HDF5 string attribute as str (h5py may return bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def channels(f: h5py.File) -> list[h5py.Group]:
    """Every channel group (NXdata) in the file, in file order."""
    found: list[h5py.Group] = []

    def visit(_name: str, node: object) -> None:
        if isinstance(node, h5py.Group) and text(node.attrs.get("NX_class", "")) == "NXdata":
            found.append(node)

    f["RawData"].visititems(visit)
    return found


def title(group: h5py.Group) -> str:
    """``"<detector>/<channel>"``, as streamsave names the channel."""
    return f"{text(group.attrs.get('origin', '?'))}/{text(group.attrs.get('TITLE', group.name))}"


def frames_and_times(group: h5py.Group, *, refresh: bool = False) -> tuple[h5py.Dataset, h5py.Dataset, int]:
    """The channel's data and time datasets and how many complete frames they hold.

    With ``refresh`` (SWMR readers), first bring both up to the writer's last flush.
    """
    data = group[text(group.attrs["signal"])]
    time_axis = group[text(group.attrs["axes"][0])]
    if refresh:
        data.refresh()
        time_axis.refresh()
    return data, time_axis, min(data.shape[0], time_axis.shape[0])


def describe(group: h5py.Group, *, refresh: bool = False) -> None:
    """Print one channel: its data, last frame and timestamps."""
    data, time_axis, n = frames_and_times(group, refresh=refresh)
    print(f"{title(group)}  ({group.name})")
    print(f"  data: {n} frames of shape {data.shape[1:]}, {data.dtype}, "
          f"units {text(data.attrs.get('units', '')).strip(chr(34))!r}")
    if n == 0:
        print("  (no frames yet)")
        return
    last = data[n - 1]  # reads (and decompresses) only the chunk holding the last frame
    times = time_axis[:n]
    print(f"  last frame: min {np.min(last):.4g}, mean {np.mean(last):.4g}, max {np.max(last):.4g}")
    if times.size > 1:
        span = float(np.max(times) - np.min(times))
        rate = (times.size - 1) / span if span > 0 else float("nan")
        print(f"  timestamps: {times.size}, spanning {span:.3f} s, {rate:.1f} frames/s")
    for axis_name in group.attrs["axes"][1:]:
        if text(axis_name) != ".":
            axis = group[text(axis_name)]
            print(f"  axis {text(axis.attrs.get('TITLE', axis_name))}: {axis[0]:.4g} .. {axis[-1]:.4g}")


def open_swmr_reader(path: Path, deadline: float) -> h5py.File:
    """Open a file being written as an SWMR reader, retrying until ``deadline`` while it
    does not exist yet or its writer has not started SWMR mode (then it is locked)."""
    waiting = False
    while True:
        try:
            return h5py.File(path, "r", swmr=True)
        except OSError as exc:  # FileNotFoundError, or "unable to lock file"
            if time.monotonic() > deadline:
                raise SystemExit(f"{path}: still not readable as an SWMR reader: {exc}") from exc
            if not waiting:
                print(f"waiting for {path} to be readable (the writer has not started yet)", flush=True)
                waiting = True
            time.sleep(0.1)


def follow(path: Path, seconds: float, every: float) -> None:
    """Watch a recording grow for ``seconds``, then describe every channel."""
    start = time.monotonic()
    with open_swmr_reader(path, start + seconds) as f:
        found = channels(f)  # in SWMR mode no channel can be added any more: this list is final
        print(f"following {path} ({len(found)} channels) as an SWMR reader, every {every:g} s", flush=True)
        while True:
            counts = [f"{title(g)}: {frames_and_times(g, refresh=True)[2]:,} frames" for g in found]
            print(f"[{time.monotonic() - start:5.1f} s] " + ", ".join(counts), flush=True)
            if time.monotonic() + every > start + seconds:
                break
            time.sleep(every)
        for group in found:
            describe(group, refresh=True)


def read_finished(path: Path) -> None:
    """Read a file nobody is writing any more, with a plain reader."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" not in str(exc):
            raise
        raise SystemExit(f"{path} is still being written (follow it with --follow SECONDS, an SWMR reader), "
                         "or its writer was killed (then `streamsave recover` it)") from exc
    with f:
        found = channels(f)
        print(f"{path}: {len(found)} channels")
        for group in found:
            describe(group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="an HDF5 file written by streamsave")
    parser.add_argument("--follow", type=float, metavar="SECONDS",
                        help="the file is being recorded: follow it for SECONDS as an SWMR reader")
    parser.add_argument("--every", type=float, default=0.5, metavar="SECONDS",
                        help="with --follow, seconds between refreshes (default: 0.5)")
    args = parser.parse_args()
    if args.follow is not None:
        follow(args.file, args.follow, args.every)
    else:
        read_finished(args.file)


if __name__ == "__main__":
    main()
