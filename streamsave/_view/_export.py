"""Exporting a channel's frames from the page, through the reader's export
(:meth:`streamsave.ChannelReader.export`), and the summary the page's side panel shows."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from .._channel_reader import ChannelReader
from .._errors import ConfigError, ReadError
from .._reader import Run
from ._confine import Refused

__all__ = ("SUFFIXES", "export_frames", "frames_from", "summary")

#: the formats the page offers, by the name it sends, and the suffix that chooses the reader's writer
SUFFIXES: Final = {"npy": ".npy", "tiff": ".tif", "csv": ".csv", "txt": ".txt", "h5": ".h5"}
_SELECTION_HEAD: Final = re.compile(r"^\s*(-?\d*)\s*(?::\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?)?$")


def find(run: Run, path: str) -> ChannelReader:
    """The channel whose frames are the dataset at ``path`` (or whose name is ``path``).

    :raises Refused: 404 if there is none.
    """
    wanted = "/" + path.strip("/")
    for key, channel in run.channels.items():
        if channel.dataset_path == wanted or key == path:
            return channel
    raise Refused(404, f"{path!r} is not a channel's frames in the file (channels: {', '.join(run.channels)})")


def frames_from(selection: str | None, frames: str | None) -> slice | None:
    """The frames to export: ``frames`` (``"A:B"``) if given, else the first member of an
    H5Web ``selection`` (``"5,:,:"`` is frame 5; ``":,3"`` all frames); ``None`` for all.

    :raises Refused: 422 if it does not parse.
    """
    text = frames if frames is not None else (selection.split(",")[0] if selection else None)
    if text is None or not text.strip():
        return None
    match = _SELECTION_HEAD.match(text)
    if match is None:
        raise Refused(422, f"frames {text!r} are not a frame index or a range A:B")
    start, stop, step = (int(g) if g else None for g in match.groups())
    if ":" not in text:
        if start is None:
            return None
        return slice(start, start + 1 if start != -1 else None)
    return slice(start, stop, step)


def export_frames(run: Run, path: str, fmt: str, frames: slice | None) -> tuple[Path, str]:
    """Export ``frames`` of the channel at ``path`` to a new temporary file.

    :returns: the file (in a temporary directory the caller removes with
        :func:`shutil.rmtree` on ``file.parent``) and the name to download it as.
    :raises Refused: 422 for an unknown format or one the channel cannot be written to
        (the reader's message), 404 for a path that is not a channel.
    """
    suffix = SUFFIXES.get(fmt)
    if suffix is None:
        raise Refused(422, f"format={fmt!r} is not one of {', '.join(SUFFIXES)}")
    channel = find(run, path)
    span = "" if frames is None else "-frames-" + "-".join(
        "" if v is None else str(v) for v in (frames.start, frames.stop))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run.path.stem}-{channel.full_name}{span}").strip("_") + suffix
    folder = Path(tempfile.mkdtemp(prefix="streamsave-view-"))
    try:
        out = channel.export(folder / name, frames=frames)
    except (ConfigError, ReadError, ValueError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise Refused(422, str(exc)) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Path(out), name


def summary(run: Run) -> dict[str, Any]:
    """What the side panel shows: whether a writer is recording, each channel's frame
    count, shape, units and dataset path, and each detector's settings (parsed, never
    evaluated)."""
    writing = run.writing
    channels: list[dict[str, Any]] = []
    detectors: dict[str, Any] = {}
    for key, channel in run.channels.items():
        channels.append({
            "name": key, "path": channel.dataset_path, "frames": len(channel),
            "shape": list(channel.frame_shape), "dtype": str(channel.dtype), "units": channel.units,
            "label": channel.label, "axes": [{"label": a.label, "units": a.units} for a in channel.axes],
            "time_axis": channel.time_axis_path,
        })
        if channel.detector and channel.settings:
            detectors.setdefault(channel.detector, _plain(channel.settings))
    return {"file": run.path.name, "live": run.live, "writing": writing, "channels": channels,
            "settings": detectors}


def _plain(value: Any, depth: int = 0) -> Any:
    """Settings as JSON can carry them (NaN and infinities as text)."""
    if isinstance(value, dict) and depth < 64:
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple) and depth < 64:
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
