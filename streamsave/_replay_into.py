"""Copying a recording through a saver: :func:`replay_into` (re-chunk, re-compress, subset)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ._channel import Channel
from ._errors import ConfigError
from ._readahead import ChannelInfo
from ._replay import Replay, ReplayStatistics
from ._saver import Saver, open_saver
from ._spec import Compression
from ._stats import SaverStatistics

__all__ = ("ReplayReport", "replay_into")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayReport:
    """What :func:`replay_into` wrote."""

    #: the recording read
    source: Path
    #: the file written
    destination: Path
    #: frames written per channel (``"Detector/channel"``)
    frames: Mapping[str, int]
    #: raw bytes of the frames written (before compression)
    bytes_written: int
    #: seconds from the first frame read to the closed destination
    seconds: float
    #: the replay's figures (lateness when paced)
    replay: ReplayStatistics
    #: the saver's final figures
    saver: SaverStatistics

    @property
    def mb_per_s(self) -> float:
        """Raw MB (10^6 bytes) of frames written per second."""
        return self.bytes_written / 1e6 / self.seconds if self.seconds > 0 else math.inf


def _source_compression(infos: Sequence[ChannelInfo]) -> Compression | None:
    """The compression streamsave recorded for the source's channels
    (``"blosc2-lz4-5-byte"``), if they agree; else ``None``."""
    names = {info.compression for info in infos}
    if len(names) != 1:
        return None
    parts = (names.pop() or "").split("-")
    if len(parts) != 4 or parts[0] != "blosc2" or not parts[2].isdigit():
        return None
    try:
        return Compression(codec=parts[1], level=int(parts[2]), shuffle=parts[3])
    except ConfigError:
        return None


def _same_file(src: Path, dst: Path) -> bool:
    return os.path.abspath(src) == os.path.abspath(dst) or (dst.exists() and src.exists() and src.samefile(dst))


def _declare(saver: Saver, infos: Sequence[ChannelInfo], chunk_frames: int | None) -> list[Channel]:
    """The source's detectors and channels, in its order, with their descriptions."""
    detectors: dict[str, Any] = {}
    out: list[Channel] = []
    for info in infos:
        detector_name = info.detector or "Data"
        detector = detectors.get(detector_name)
        if detector is None:
            detector = detectors[detector_name] = saver.add_detector(detector_name, settings=info.settings)
        name = info.name.replace("/", "_") or "data"
        base, n = name, 2
        while name in detector.channels:
            name, n = f"{base} ({n})", n + 1
        label = "" if info.label == info.name else info.label
        out.append(detector.add_channel(name, shape=info.frame_shape, dtype=info.dtype, units=info.units,
                                        label=label, axes=info.axes, chunk_frames=chunk_frames))
    return out


async def replay_into(source: str | os.PathLike[str], destination: str | os.PathLike[str], *,
                      speed: float | None = None, channels: Sequence[str] | None = None,
                      start: float | datetime | None = None, stop: float | datetime | None = None,
                      follow: bool = False, compression: Compression | str | None = "source",
                      chunk_frames: int | None = None, **saver_options: Any) -> ReplayReport:
    """Replay a recording into a new file written by a normal saver: a re-chunked,
    re-compressed copy, or a subset of its channels and time.

    Detectors are recreated with their settings, channels with their shapes, dtypes,
    units, labels and axes, and every frame keeps its original timestamp.

    :param source: the recording (anything :func:`streamsave.replay` reads).
    :param destination: the file to write.
    :param speed: ``None`` (default): as fast as the file reads and the saver writes;
        a number paces the frames as :func:`streamsave.replay` does (a live rehearsal).
    :param channels: ``start``, ``stop``, ``follow``: as for :func:`streamsave.replay`.
    :param compression: ``"source"`` (default): what the source's channels recorded,
        when they agree and it is a blosc2 setting, else uncompressed; otherwise what
        :func:`streamsave.open_saver` takes (``None``, ``"blosc2-zstd"``, a
        :class:`~streamsave.Compression`, ...).
    :param chunk_frames: frames per chunk for every channel (default: the saver's
        choice from ``chunk_bytes``).
    :param saver_options: any other :func:`streamsave.open_saver` option (``mode``,
        ``chunk_bytes``, ``flush_interval``, ...).
    :raises ~streamsave.ConfigError: an invalid argument, or ``destination`` is ``source``.
    :raises ~streamsave.ReadError: the source cannot be read.
    :raises ~streamsave.StorageError: the destination cannot be written.
    """
    src, dst = Path(source), Path(destination)
    if await anyio.to_thread.run_sync(_same_file, src, dst):
        raise ConfigError(f"destination {str(dst)!r} is the source itself; write the copy to another file")
    frames = Replay(src, speed=speed, channels=channels, start=start, stop=stop, follow=follow)
    async with frames:
        infos = frames._infos
        chosen = _source_compression(infos) if compression == "source" else compression
        async with open_saver(dst, compression=chosen, **saver_options) as saver:
            targets = _declare(saver, infos, chunk_frames)
            written = [0] * len(targets)
            raw = 0
            t0 = time.perf_counter()
            while (block := await frames._frames()) is not None:
                index, data, timestamps = block
                await targets[index].push_many(data, timestamps=timestamps)
                written[index] += len(timestamps)
                raw += data.nbytes
        seconds = time.perf_counter() - t0
    return ReplayReport(source=src, destination=Path(saver.path), frames=dict(zip(frames.channels, written,
                                                                                  strict=True)),
                        bytes_written=raw, seconds=seconds, replay=frames.statistics(), saver=saver.statistics())
