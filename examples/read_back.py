"""Read a streamsave file with nothing but h5py and hdf5plugin.

streamsave writes ordinary HDF5: any program that can read HDF5 and has the Blosc2
filter (``pip install h5py hdf5plugin``; ``import hdf5plugin`` registers it) can
open the file, during the recording too. The layout follows PyMoDAQ's, with NeXus
attributes so generic viewers find the data::

    /RawData/Detector000                    one group per detector (TITLE = its name)
    /RawData/Detector000/Data2D/CH00        one NXdata group per channel (TITLE = its name)
        EnlData00                           the frames: shape (frames, *frame_shape)
        Axis00, Axis01, ...                 signal axes (e.g. wavelength) and the time axis
                                            (the group's ``axes`` attribute names time first)

Every channel has its own timestamps (Unix epoch seconds, one per frame), because
instruments run at different rates. This script lists the channels, loads the last
frame of each and its timestamps, and prints the frame rate they imply.

Run it on a file from ``streamsave demo`` or ``record_three_detectors.py``::

    python examples/read_back.py streamsave-demo.h5
"""

from __future__ import annotations

import argparse
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


def describe(group: h5py.Group) -> None:
    """Print one channel: its data, last frame and timestamps."""
    data = group[text(group.attrs["signal"])]
    time_axis = group[text(group.attrs["axes"][0])]
    detector = text(group.attrs.get("origin", "?"))
    name = text(group.attrs.get("TITLE", group.name))
    print(f"{detector}/{name}  ({group.name})")
    print(f"  data: {data.shape[0]} frames of shape {data.shape[1:]}, {data.dtype}, "
          f"units {text(data.attrs.get('units', '')).strip(chr(34))!r}")
    if data.shape[0] == 0:
        print("  (no frames yet)")
        return
    last = data[-1]  # reads (and decompresses) only the chunk holding the last frame
    times = time_axis[:]
    print(f"  last frame: min {np.min(last):.4g}, mean {np.mean(last):.4g}, max {np.max(last):.4g}")
    if times.size > 1:
        span = float(times[-1] - times[0])
        rate = (times.size - 1) / span if span > 0 else float("nan")
        print(f"  timestamps: {times.size}, spanning {span:.3f} s, {rate:.1f} frames/s")
    for axis_name in group.attrs["axes"][1:]:
        if text(axis_name) != ".":
            axis = group[text(axis_name)]
            print(f"  axis {text(axis.attrs.get('TITLE', axis_name))}: {axis[0]:.4g} .. {axis[-1]:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="an HDF5 file written by streamsave")
    args = parser.parse_args()
    with h5py.File(args.file, "r") as f:
        found = channels(f)
        print(f"{args.file}: {len(found)} channels")
        for group in found:
            describe(group)


if __name__ == "__main__":
    main()
