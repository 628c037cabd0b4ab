"""``streamsave export`` and ``streamsave plot``: one channel to another format, or to a PNG."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

from .._errors import StreamSaveError
from .._export import FORMATS
from .._reader import open_reader
from ._common import EXIT_OK, CommandError, check_output, find_channel, frames_slice, nbytes, os_reason

__all__ = ("add_parsers", "run_export", "run_plot")

_CHANNEL_HELP = ('the channel, as "Detector/channel" (e.g. Camera/image; `streamsave info FILE` lists them); '
                 "for an HDF5 file streamsave did not write, a dataset's path")


def add_parsers(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write one channel's frames to .npy, .csv/.txt, .tif or .h5",
        description="Write the frames of one channel to another file, in the format its suffix names: .npy "
                    "(a numpy array of shape (frames, *frame_shape)), .csv or .txt (one row per frame: its "
                    "timestamp, then its values; 0D and 1D channels), .tif/.tiff (a stack of 2D frames; needs "
                    "tifffile), .h5/.hdf5 (datasets frames, timestamps and the axes). A file still being "
                    "written exports the frames its writer's last flush made durable.")
    export.add_argument("file", type=Path, metavar="FILE", help="the recorded HDF5 file (only read)")
    export.add_argument("channel", metavar="CHANNEL", help=_CHANNEL_HELP)
    export.add_argument("-o", "--output", type=_suffix(FORMATS, "export"), required=True, metavar="OUT",
                        help=f"the file to write; its suffix chooses the format ({', '.join(FORMATS)})")
    export.add_argument("--frames", type=frames_slice, metavar="A:B",
                        help="export frames A to B-1 only (Python slice rules: 100: is from frame 100 on, "
                             ":-1 all but the last; default: every frame)")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    plot = commands.add_parser(
        "plot", help="save a PNG plot of one frame, or of the mean frame, of a channel",
        description="Save a PNG picture of one channel, labelled with the file's axes, label and units: "
                    "a 2D frame as an image with a colour bar, a 1D frame as a curve against its axis, a 0D "
                    "channel as its values against time (--frame and --mean do not apply to it). Needs "
                    "matplotlib.")
    plot.add_argument("file", type=Path, metavar="FILE", help="the recorded HDF5 file (only read)")
    plot.add_argument("channel", metavar="CHANNEL", help=_CHANNEL_HELP)
    plot.add_argument("-o", "--output", type=_suffix((".png",), "plot"), required=True, metavar="OUT.png",
                      help="the PNG file to write")
    which = plot.add_mutually_exclusive_group()
    which.add_argument("--frame", type=int, default=0, metavar="K",
                       help="plot frame K (default: 0, the first; -1 is the last)")
    which.add_argument("--mean", action="store_true", help="plot the mean of all frames instead of one frame")
    plot.add_argument("--overwrite", action="store_true", help="replace OUT.png if it exists")


def _suffix(allowed: tuple[str, ...], command: str) -> Any:
    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"{command} writes {', '.join(allowed)} files; {text!r} has "
                f"{'the suffix ' + repr(path.suffix) if path.suffix else 'no suffix'}")
        return path

    return parse


def _partial(out: Path) -> Path:
    """Where to write before renaming to ``out`` (same directory, same suffix), so a
    failure never leaves half a file under the name asked for."""
    return out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix}")


def _write(out: Path, overwrite: bool, write: Any) -> None:
    check_output(out, overwrite)
    temp = _partial(out)
    try:
        write(temp)
        os.replace(temp, out)
    except OSError as exc:
        if isinstance(exc, StreamSaveError):  # reading the recording failed: its own message
            raise
        raise CommandError(f"cannot write {str(out)!r}: {os_reason(exc)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def run_export(args: argparse.Namespace) -> int:
    out: Path = args.output
    with open_reader(args.file) as opened:
        channel = find_channel(opened.channels, args.channel, args.file)
        selection: slice = args.frames or slice(None)
        picked = range(len(channel))[selection]
        if not picked:
            raise CommandError(f"--frames {_slice_text(selection)} selects no frames: {channel.full_name!r} has "
                               f"{len(channel):,} frames")
        _write(out, args.overwrite, lambda temp: channel.export(temp, frames=selection))
        first, last = picked[0], picked[-1]
        name = channel.full_name
    print(f"Exported {len(picked):,} frames of {name} (frames {first:,} to {last:,}) to {out} "
          f"({nbytes(out.stat().st_size)})")
    return EXIT_OK


def run_plot(args: argparse.Namespace) -> int:
    out: Path = args.output
    with open_reader(args.file) as opened:
        channel = find_channel(opened.channels, args.channel, args.file)
        count = len(channel)
        if count == 0:
            raise CommandError(f"{channel.full_name!r} has no frames to plot")
        frame = args.frame + count if args.frame < 0 else args.frame
        if channel.frame_shape and not args.mean and not 0 <= frame < count:
            raise CommandError(f"--frame {args.frame} is out of range: {channel.full_name!r} has {count:,} frames "
                               f"(0 to {count - 1:,}, or -1 for the last)")
        _write(out, args.overwrite, lambda temp: channel.plot(temp, frame=frame, mean=args.mean))
        if not channel.frame_shape:
            what = f"its {count:,} values against time"
        else:
            what = f"the mean of its {count:,} frames" if args.mean else f"frame {frame:,} of {count:,}"
        name = channel.full_name
    print(f"Plotted {name}, {what}, to {out}")
    return EXIT_OK


def _slice_text(selection: slice) -> str:
    return f"{'' if selection.start is None else selection.start}:{'' if selection.stop is None else selection.stop}"
