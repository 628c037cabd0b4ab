"""``streamsave info``: what a recorded file holds, as text or as one JSON document."""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from .._channel_reader import ChannelReader
from .._errors import ReadError
from .._reader import Run, open_reader
from ._common import EXIT_OK, CommandError, console, nbytes

__all__ = ("MAX_CHUNKS", "MAX_TIMESTAMPS", "add_parser", "describe_channel", "describe_run", "run")

#: chunk records read per channel to add up the bytes stored; beyond, the total is
#: extrapolated from these (and marked as an estimate)
MAX_CHUNKS: Final = 100_000
#: timestamps read per channel for the time span; beyond, the first and last halves of
#: this many are read (and the span is marked as sampled)
MAX_TIMESTAMPS: Final = 1 << 24
_BLOCK: Final = 1 << 20
_MAX_SETTINGS: Final = 16  # settings shown in the text form (--json has them all)


def add_parser(commands: Any) -> None:
    info = commands.add_parser(
        "info", help="list the detectors and channels of a recorded file",
        description="List the detectors and channels of a file written by streamsave (or PyMoDAQ): per channel "
                    "its frame count, frame shape and dtype, units, time span and frame rate (from its "
                    "timestamps), axes, compression and compression ratio (raw bytes / bytes stored), and the "
                    "detector settings. A file still being written is read as an SWMR reader: it shows what "
                    "the writer's last flush made durable.")
    info.add_argument("file", type=Path, metavar="FILE", help="the HDF5 file to describe")
    info.add_argument("--json", action="store_true",
                      help="print one JSON document (for scripts) instead of text; NaN and unknown values "
                           "are null")


def run(args: argparse.Namespace) -> int:
    with open_reader(args.file) as opened:
        if opened.channels and not any(ch.detector for ch in opened.channels.values()):
            raise CommandError(f"{str(args.file)!r} is an HDF5 file but not a streamsave file (it has no /RawData "
                               "group); export and plot still read its datasets as channels: "
                               f"{', '.join(list(opened.channels)[:10])}")
        document = describe_run(opened)
    if args.json:
        print(json.dumps(document, indent=2, default=str, allow_nan=False))
    else:
        out = console()
        for line in _text(document, width=max(40, out.width)):
            out.print(line, markup=False, soft_wrap=True, highlight=False)
    return EXIT_OK


# ---------------------------------------------------------------------------- the facts
def describe_run(opened: Run) -> dict[str, Any]:
    """Everything ``info`` shows, as plain JSON-compatible values."""
    writing = opened.writing
    channels = {key: describe_channel(ch) for key, ch in opened.channels.items()}
    detectors: dict[str, dict[str, Any]] = {}
    for key, ch in opened.channels.items():
        detectors.setdefault(ch.detector, {"settings": _plain(ch.settings), "channels": []})["channels"].append(key)
    firsts = [c["time"]["first"] for c in channels.values() if c["time"]["first"] is not None]
    lasts = [c["time"]["last"] for c in channels.values() if c["time"]["last"] is not None]
    try:
        size = opened.path.stat().st_size
    except OSError:
        size = None
    return {
        "file": str(opened.path), "size_bytes": size, "writing": writing,
        "state": "being written" if writing else "closed",
        "frames": sum(c["frames"] for c in channels.values()),
        "time": {"first": min(firsts, default=None), "last": max(lasts, default=None)},
        "detectors": detectors, "channels": channels,
    }


def describe_channel(ch: ChannelReader) -> dict[str, Any]:
    """One channel's facts (see :func:`describe_run`)."""
    frames = len(ch)
    frame_bytes = ch.dtype.itemsize * math.prod(ch.frame_shape)
    stored, estimated = _stored_bytes(ch)
    raw = frames * frame_bytes
    times = _time_span(ch)
    duration = times["duration_s"]
    fps = (frames - 1) / duration if duration and frames > 1 else None
    return {
        "detector": ch.detector, "name": ch.name, "label": ch.label, "dataset": ch.dataset_path,
        "time_axis": ch.time_axis_path, "frames": frames, "frames_durable": ch.frames_durable,
        "frame_shape": list(ch.frame_shape), "dtype": str(ch.dtype), "units": ch.units,
        "compression": ch.compression,
        "chunk_shape": None if ch.chunk_shape is None else list(ch.chunk_shape),
        "raw_bytes": raw, "stored_bytes": stored, "stored_bytes_estimated": estimated,
        "compression_ratio": raw / stored if stored else None,
        "time": times, "frames_per_second": fps, "mb_per_second": fps * frame_bytes / 1e6 if fps else None,
        "axes": [_axis(axis, size) for axis, size in zip(ch.axes, ch.frame_shape, strict=False)],
        "frame_numbers": _frame_numbers(ch), "metadata": {name: str(col.dtype) for name, col in ch.metadata.items()},
    }


#: frame numbers read for the gaps at most (8 bytes each)
_MAX_NUMBERS: Final = 1 << 25


def _frame_numbers(ch: ChannelReader) -> dict[str, Any] | None:
    """The first and last frame numbers and the missing ones (``None``: the channel has none)."""
    numbers = ch.frame_numbers
    if numbers is None or not len(numbers) or len(numbers) > _MAX_NUMBERS:
        return None
    try:
        gaps = ch.missing_frames()
    except ReadError:  # numbers that do not increase: described without gaps
        gaps = None
    return {"first": int(numbers[0]), "last": int(numbers[-1]),
            "missing": None if gaps is None else sum(len(g) for g in gaps),
            "gaps": None if gaps is None else [[g.start, g.stop - 1] for g in gaps[:100]]}


def _dataset(ch: ChannelReader) -> Any:
    """The h5py dataset holding a channel's frames (the reader keeps it as ``_data``;
    a snapshot wrapper keeps its dataset as ``dataset``)."""
    data = ch._data
    return getattr(data, "dataset", data)


def _stored_bytes(ch: ChannelReader) -> tuple[int | None, bool]:
    """(bytes the channel's chunks take in the file, whether that is an estimate).

    One pass over the chunk index (``chunk_iter``) reads at most :data:`MAX_CHUNKS`
    records and extrapolates from them. Without ``chunk_iter`` (HDF5 before 1.14),
    ``get_chunk_info(i)`` is used for up to 256 chunks (HDF5 walks the index from the
    start on every call, so more would be quadratic), then the dataset's storage size.
    """
    try:
        dsid = _dataset(ch).id
        if ch.chunk_shape is None:
            return int(dsid.get_storage_size()), False
        count = int(dsid.get_num_chunks())
        if count == 0:
            return 0, False
        if hasattr(dsid, "chunk_iter"):
            seen = [0, 0]

            def visit(info: Any) -> bool | None:
                seen[0] += 1
                seen[1] += int(info.size)
                return True if seen[0] >= MAX_CHUNKS else None  # anything but None stops the walk

            dsid.chunk_iter(visit)
            if seen[0] >= count:
                return seen[1], False
            return round(seen[1] * count / max(1, seen[0])), True
        if count <= 256:
            return sum(int(dsid.get_chunk_info(i).size) for i in range(count)), False
        return int(dsid.get_storage_size()), False
    except (OSError, ValueError, RuntimeError, TypeError, AttributeError):
        return None, False


def _time_span(ch: ChannelReader) -> dict[str, Any]:
    """First/last (earliest/latest) timestamps, duration (never negative), order."""
    n = len(ch)
    nothing = {"first": None, "last": None, "duration_s": None, "in_order": None, "sampled": False}
    if ch.time_axis_path is None or n == 0:
        return nothing
    sampled = n > MAX_TIMESTAMPS
    ranges = [(0, n)] if not sampled else [(0, MAX_TIMESTAMPS // 2), (n - MAX_TIMESTAMPS // 2, n)]
    low, high, in_order, previous = math.inf, -math.inf, True, -math.inf
    for block in _blocks(ch, ranges):
        finite = block[np.isfinite(block)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            in_order = in_order and bool(np.all(finite[1:] >= finite[:-1])) and float(finite[0]) >= previous
            previous = float(finite[-1])
    if low > high:
        return nothing
    return {"first": low, "last": high, "duration_s": high - low, "in_order": in_order, "sampled": sampled}


def _blocks(ch: ChannelReader, ranges: list[tuple[int, int]]) -> Iterator[np.ndarray[Any, Any]]:
    for start, stop in ranges:
        for lo in range(start, stop, _BLOCK):
            yield np.asarray(ch.timestamps[lo:min(stop, lo + _BLOCK)], dtype=np.float64)


def _axis(axis: Any, size: int) -> dict[str, Any]:
    values = np.asarray(axis.coordinates(size), dtype=np.float64)
    first, last = (float(values[0]), float(values[-1])) if values.size else (None, None)
    return {"label": axis.label, "units": axis.units, "size": size, "first": _finite(first), "last": _finite(last)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """Settings as JSON values (NaN and infinities as null, anything else as text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


# ---------------------------------------------------------------------------- the text
def _text(doc: dict[str, Any], *, width: int) -> Iterator[str]:
    size = "" if doc["size_bytes"] is None else f"  {nbytes(doc['size_bytes'])}"
    state = ("being written (read as an SWMR reader: frames up to the writer's last flush)" if doc["writing"]
             else "closed")
    yield from _wrap(f"{doc['file']}{size}, {state}", width, "", "  ")
    counts = f"{len(doc['detectors'])} detectors, {len(doc['channels'])} channels, {doc['frames']:,} frames"
    first, last = doc["time"]["first"], doc["time"]["last"]
    if first is not None and last is not None:
        counts += f"; {_when(first, last)}"
    yield from _wrap(counts, width, "", "  ")
    if not doc["channels"]:
        yield "(no channels)"
    for detector, facts in doc["detectors"].items():
        yield ""
        yield detector
        if facts["settings"]:
            yield from _wrap("settings: " + _settings_text(facts["settings"]), width, "  ", "    ")
        for key in facts["channels"]:
            yield from _channel_text(key, doc["channels"][key], width)


def _channel_text(key: str, ch: dict[str, Any], width: int) -> Iterator[str]:
    shape = "scalar" if not ch["frame_shape"] else str(tuple(ch["frame_shape"]))
    head = f"  {key}  {ch['frames']:,} frames  {shape} {ch['dtype']}"
    if ch["units"]:
        head += f"  {ch['units']}"
    yield f"{head}  {ch['compression'] or 'uncompressed'}"
    if ch["label"] != ch["name"]:
        yield f"      label    {ch['label']}"
    times = f" (timestamps: {ch['time_axis'].rsplit('/', 1)[-1]})" if ch["time_axis"] else ""
    yield f"      dataset  {ch['dataset']}{times}"
    span = ch["time"]
    if span["duration_s"] is not None:
        line = f"{span['duration_s']:.3f} s"
        if ch["frames_per_second"] is not None:
            line += f", {ch['frames_per_second']:,.1f} frames/s"
            if ch["mb_per_second"] is not None and ch["mb_per_second"] >= 0.05:
                line += f" ({ch['mb_per_second']:,.1f} MB/s raw)"
        notes = [] if span["in_order"] else ["not in order"]
        notes += ["from the first and last timestamps only"] if span["sampled"] else []
        yield f"      time     {line}" + (f" ({'; '.join(notes)})" if notes else "")
    if ch["axes"]:
        yield from _wrap("axes     " + "; ".join(_axis_text(a) for a in ch["axes"]), width, "      ", "               ")
    yield from _wrap("storage  " + _storage_text(ch), width, "      ", "               ")
    numbers = ch.get("frame_numbers")
    if numbers is not None:
        missing = numbers["missing"]
        line = f"{numbers['first']:,}..{numbers['last']:,}"
        if missing is None:
            line += " (not increasing)"
        elif missing:
            line += f", {missing:,} missing in {len(numbers['gaps'])}{'+' if len(numbers['gaps']) == 100 else ''} gaps"
            line += " (" + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in numbers["gaps"][:5]) + \
                (", ..." if len(numbers["gaps"]) > 5 else "") + ")"
        else:
            line += ", none missing"
        yield from _wrap("numbers  " + line, width, "      ", "               ")
    if ch.get("metadata"):
        yield from _wrap("metadata " + ", ".join(f"{k} ({v})" for k, v in ch["metadata"].items()), width,
                         "      ", "               ")


def _axis_text(axis: dict[str, Any]) -> str:
    units = f" ({axis['units']})" if axis["units"] else ""
    if axis["first"] is None:
        return f"{axis['label']}{units}, {axis['size']:,} points"
    return f"{axis['label']}{units} {axis['first']:g} to {axis['last']:g}, {axis['size']:,} points"


def _storage_text(ch: dict[str, Any]) -> str:
    parts = []
    if ch["chunk_shape"]:
        parts.append(f"chunks of {ch['chunk_shape'][0]:,} frames")
    stored = ch["stored_bytes"]
    if stored is not None:
        about = "about " if ch["stored_bytes_estimated"] else ""
        parts.append(f"{nbytes(ch['raw_bytes'])} raw, {about}{nbytes(stored)} stored")
    if ch["compression_ratio"] is not None:
        ratio = ch["compression_ratio"]
        parts.append(f"ratio {ratio:.2f}" if ratio >= 0.1 else f"ratio {ratio:.2g}")
    return ", ".join(parts) or "nothing stored"


def _settings_text(settings: Mapping[str, Any]) -> str:
    flat = list(_flatten(settings))
    shown = [f"{k}={_value_text(v)}" for k, v in flat[:_MAX_SETTINGS]]
    if len(flat) > _MAX_SETTINGS:
        shown.append(f"... {len(flat) - _MAX_SETTINGS} more (--json shows them all)")
    return ", ".join(shown)


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in settings.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:39] + "…"


def _when(first: float, last: float) -> str:
    """``from 2026-05-01 10:00:00.000 to 10:00:05.000 CEST`` (local time; the date
    once when both are on one day)."""
    try:
        start, end = (datetime.fromtimestamp(t).astimezone() for t in (first, last))
    except (OverflowError, OSError, ValueError):
        return f"from {first:.3f} to {last:.3f} (epoch seconds)"
    end_text = end.strftime("%H:%M:%S.%f")[:-3] if end.date() == start.date() else _stamp(end)
    return f"from {_stamp(start)} to {end_text} {start.tzname() or ''}".rstrip()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False, break_long_words=False) or [first.rstrip()]
