"""Exporting a channel's frames to other formats, chosen by the file suffix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._channel_reader import ChannelReader

__all__ = ("FORMATS", "export")

FORMATS = (".npy", ".csv", ".txt", ".tif", ".tiff", ".h5", ".hdf5")


def export(channel: ChannelReader, path: str | os.PathLike[str], *, frames: slice | None = None) -> Path:
    """See :meth:`ChannelReader.export`."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"cannot export to {str(out)!r}: unknown suffix {out.suffix!r}; expected one of "
                          f"{', '.join(FORMATS)}")
    if frames is not None and not isinstance(frames, slice):
        raise ConfigError(f"frames must be a slice (e.g. slice(0, 100)), got {frames!r}")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot export to {str(out)!r}: its directory {str(out.parent)!r} does not exist")
    if out.is_dir():
        raise ConfigError(f"cannot export to {str(out)!r}: it is a directory")
    if _same_file(out, channel._run.path):
        raise ConfigError(f"cannot export to {str(out)!r}: it is the source file being read")
    dims = len(channel.frame_shape)
    if suffix in (".csv", ".txt") and dims > 1:
        raise ConfigError(f"{channel.full_name!r} has {dims}-D frames; text files hold 0D "
                          "and 1D frames (one row per frame): export to .npy, .tif or .h5 instead")
    if suffix in (".tif", ".tiff") and dims != 2:
        raise ConfigError(f"{channel.full_name!r} has frames of shape {channel.frame_shape}; TIFF stacks hold 2D "
                          "frames: export to .npy, .csv or .h5 instead")
    selection = frames or slice(None)
    data = channel[selection]
    times = channel.timestamps[selection]
    if suffix == ".npy":
        np.save(out, data, allow_pickle=False)
    elif suffix in (".csv", ".txt"):
        _text(channel, out, data, times, delimiter="," if suffix == ".csv" else "\t")
    elif suffix in (".tif", ".tiff"):
        _tiff(channel, out, data)
    else:
        _hdf5(channel, out, data, times)
    return out


def _same_file(out: Path, source: Path) -> bool:
    try:
        return out.exists() and os.path.samefile(out, source)
    except OSError:
        return False


def _text(channel: ChannelReader, out: Path, data: Any, times: Any, *, delimiter: str) -> None:
    width = channel.frame_shape[0] if channel.frame_shape else 1
    rows = np.column_stack([times, np.asarray(data).reshape(len(times), width)])
    header = delimiter.join(["timestamp_s"] + ([channel.label] if not channel.frame_shape else
                                               [f"{channel.label}[{i}]" for i in range(width)]))
    units = f" ({channel.units})" if channel.units else ""
    np.savetxt(out, rows, delimiter=delimiter, header=f"{channel.full_name}{units}\n{header}", comments="# ")


def _tiff(channel: ChannelReader, out: Path, data: Any) -> None:
    try:
        import tifffile
    except ImportError:
        raise ConfigError("exporting to TIFF needs tifffile: pip install 'streamsave[export]'") from None
    if not len(data):
        raise ConfigError(f"no frames of {channel.full_name!r} to export: a TIFF stack needs at least one")
    # grey levels always: left to guess, tifffile takes 3 or 4 frames (or 3-4 pixel wide ones) for RGB
    tifffile.imwrite(out, np.ascontiguousarray(data), photometric="minisblack", metadata={"axes": "QYX"})


def _hdf5(channel: ChannelReader, out: Path, data: Any, times: Any) -> None:
    with h5py.File(out, "w") as f:
        frames = f.create_dataset("frames", data=data)
        f.create_dataset("timestamps", data=times)
        frames.attrs.update({"channel": channel.full_name, "units": channel.units, "label": channel.label})
        for i, axis in enumerate(channel.axes):
            f.create_dataset(f"axis{i}", data=axis.coordinates(channel.frame_shape[i])).attrs.update(
                {"label": axis.label, "units": axis.units})
