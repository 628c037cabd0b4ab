"""Detectors: named groups of channels, and the checks on a channel's declaration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._channel import Channel
from ._columns import Columns, parse_metadata
from ._compress import choose_chunk_frames
from ._errors import ConfigError
from ._layout import Naming, check_name
from ._spec import Axis, Overflow
from .backends._registry import check_request

if TYPE_CHECKING:
    from ._control import Control

__all__ = ("Detector",)


class Detector:
    """A group of channels recorded together (a camera, a spectrometer, ...): a
    ``DetectorNNN`` group in the file. Create with :meth:`Saver.add_detector`."""

    def __init__(self, control: Control, naming: Naming, name: str, settings_json: str, path: str) -> None:
        self._control = control
        self._naming = naming
        self.name = name
        self._settings_json = settings_json
        #: the detector's group in the file
        self.path = path
        self.channels: dict[str, Channel] = {}

    def __repr__(self) -> str:
        return f"<Detector {self.name!r} channels={list(self.channels)}>"

    def add_channel(
        self,
        name: str,
        *,
        shape: Sequence[int] = (),
        dtype: npt.DTypeLike = np.float64,
        units: str = "",
        label: str = "",
        axes: Sequence[Axis] = (),
        chunk_frames: int | None = None,
        queue_size: int | None = None,
        overflow: Overflow | str | None = None,
        copy: bool = False,
        monotonic: bool = False,
        frame_numbers: bool | None = None,
        metadata: Mapping[str, npt.DTypeLike] | None = None,
    ) -> Channel:
        """Declare a stream of frames of one shape and dtype.

        :param name: shown as the channel's title (any text without ``/``).
        :param shape: shape of one frame: ``()`` for a scalar, ``(2048,)`` for a
            spectrum, ``(512, 512)`` for an image, any length for ND data.
        :param dtype: numeric numpy dtype of the frames (bool, int, uint, float, complex).
        :param units: units of the frame values.
        :param label: what the values are (default: the name).
        :param axes: one :class:`Axis` per frame dimension, in order (may be shorter).
        :param chunk_frames: frames per HDF5 chunk (default: as many as fit in the
            saver's ``chunk_bytes``, at most ``max_chunk_frames``, and at most half the
            queue). A frame larger than ``chunk_bytes`` is stored as several chunks of
            whole rows instead, so no chunk is much larger than ``chunk_bytes`` (e.g. a
            2048x2048 uint16 frame as four 2 MiB tiles of 512 rows).
        :param queue_size: the most frames the saver holds for this channel, queued or
            being written (default: the saver's ``queue_size`` raised to two chunks, or
            as many frames as fit in ``queue_bytes``, within what the saver's
            ``memory_budget`` leaves). Given here, it is exact and the default chunk
            shrinks to half of it.
        :param overflow: what a full queue does (default: the saver's policy).
        :param copy: copy every pushed frame, so the producer may reuse its buffer
            (frames of 512 bytes or less are always copied).
        :param monotonic: make the channel's time axis never go backwards: a given
            timestamp earlier than the last one queued (given or made) raises
            :class:`~streamsave.TimestampError`, before anything else happens (a
            refused frame drops nothing), and the library's own timestamps never fall
            before a given one (default: store given timestamps as given; the
            library's own timestamps never go backwards among themselves either way).
        :param frame_numbers: store a frame number per frame (``push(frame,
            frame_number=n)``, or the previous number plus one), so that frames the
            detector skipped or the overflow policy dropped show as gaps. Default: on
            when the overflow policy drops frames (``drop_oldest``, ``drop_newest``).
        :param metadata: named scalars stored per frame, beside the timestamps, as
            ``{name: dtype}`` (``{"exposure": "float64", "temperature": "float32"}``);
            every push then gives every value (``push(frame, metadata={...})``).
        :raises ~streamsave.ConfigError: invalid or duplicate name, shape, dtype, axes;
            a queue that does not fit in the saver's ``memory_budget``.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        shape_t, dt, axes = check_channel(name, shape, dtype, units, label, axes)
        policy = self._control.config.overflow if overflow is None else Overflow.parse(overflow)
        if frame_numbers is not None and not isinstance(frame_numbers, bool):
            raise ConfigError(f"channel {name!r}: frame_numbers must be True, False or None, got {frame_numbers!r}")
        numbers = policy in (Overflow.DROP_OLDEST, Overflow.DROP_NEWEST) if frame_numbers is None else frame_numbers
        columns = Columns(f"channel {self.name + '/' + name!r}", numbers=numbers,
                          metadata=parse_metadata(name, metadata))
        with self._control.declaring(f"channel {name!r}") as layout:
            if name in self.channels:
                raise ConfigError(f"detector {self.name!r} already has a channel named {name!r}")
            channel = self._make_channel(name, shape_t, dt, units, label, axes, chunk_frames, queue_size, policy,
                                         bool(copy), bool(monotonic), columns)
            self.channels[name] = channel
            self._control.register_channel(channel, channel.queue_size * channel.frame_nbytes)
            layout.append(("channel", channel))
        return channel

    def _make_channel(self, name: str, shape: tuple[int, ...], dt: np.dtype[Any], units: str, label: str,
                      axes: tuple[Axis, ...], chunk_frames: int | None, queue_size: int | None, overflow: Overflow,
                      copy: bool, monotonic: bool, columns: Columns) -> Channel:
        cfg = self._control.config
        frame_nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if frame_nbytes > cfg.max_frame_bytes:
            raise ConfigError(f"channel {name!r}: frames of {frame_nbytes} bytes exceed max_frame_bytes="
                              f"{cfg.max_frame_bytes}")
        for knob, value in (("chunk_frames", chunk_frames), ("queue_size", queue_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"channel {name!r}: {knob} must be a positive integer, got {value!r}")
        if chunk_frames is None:
            chunk_frames = choose_chunk_frames(frame_nbytes, cfg.chunk_bytes, cfg.max_chunk_frames)
            if queue_size is not None:  # this channel asked for a small queue: smaller chunks to match
                chunk_frames = max(1, min(chunk_frames, queue_size // 2))
        if queue_size is None and cfg.queue_size is not None:
            # the saver-wide size, in frames, is the same for every channel: at least two chunks
            # (a queue of 256 scalars would hold 2 kB and make every chunk a few hundred values)
            queue_size = max(cfg.queue_size, 2 * chunk_frames)
        tile_rows = 0
        if chunk_frames == 1 and frame_nbytes > cfg.chunk_bytes and len(shape) >= 1 and shape[0] > 1:
            tiles = -(-frame_nbytes // cfg.chunk_bytes)
            tile_rows = -(-shape[0] // tiles)  # rows per tile: near chunk_bytes, balanced
        caps = cfg.capabilities
        if caps.max_request_bytes is not None:  # one chunk (rows of whole frames without direct chunk write)
            per_row = frame_nbytes // shape[0] if shape else frame_nbytes
            request = frame_nbytes if tile_rows and not caps.direct_chunk_write else \
                tile_rows * per_row if tile_rows else chunk_frames * frame_nbytes
            check_request(caps, request, f"channel {name!r}: a chunk")
        left = self._control.queue_bytes_left
        if queue_size is None:
            wanted = min(1 << 20, cfg.queue_bytes // max(1, frame_nbytes))
            queue_size = max(2 * chunk_frames, min(wanted, left // max(1, frame_nbytes)))
        if queue_size * frame_nbytes > left:
            raise ConfigError(
                f"channel {name!r}: a queue of {queue_size} frames of {frame_nbytes} bytes needs "
                f"{queue_size * frame_nbytes / 2**20:.1f} MiB, but the saver's memory_budget="
                f"{cfg.memory_budget / 2**20:.0f} MiB has {max(0, left) / 2**20:.1f} MiB left for new queues; "
                "give a smaller queue_size (or queue_bytes), or a larger memory_budget")
        return Channel(
            self._control, detector=self.name, name=name, shape=shape, dtype=dt, units=units, label=label or name,
            axes=axes, chunk_frames=chunk_frames, tile_rows=tile_rows, queue_size=queue_size, overflow=overflow,
            copy=copy, monotonic=monotonic, columns=columns,
            paths=self._naming.channel(self.path, len(shape), len(axes), numbers=columns.numbers,
                                       metadata=columns.names))


def check_channel(name: str, shape: Sequence[int], dtype: npt.DTypeLike, units: str, label: str,
                  axes: Sequence[Axis]) -> tuple[tuple[int, ...], np.dtype[Any], tuple[Axis, ...]]:
    """Check what declares a channel (continuous or of a scan): its name, shape,
    dtype, units, label and axes; returns the shape, dtype and axes as stored.

    :raises ~streamsave.ConfigError: any of them invalid, saying which and why.
    """
    check_name("channel", name)
    shape_t = _check_shape(name, shape)
    dt = _check_dtype(name, dtype)
    if not isinstance(units, str) or not isinstance(label, str):
        raise ConfigError(f"channel {name!r}: units and label must be strings, got {units!r}, {label!r}")
    axes_t = tuple(axes)
    if len(axes_t) > len(shape_t) or not all(isinstance(a, Axis) for a in axes_t):
        raise ConfigError(f"channel {name!r}: axes must be at most {len(shape_t)} Axis objects "
                          f"(one per frame dimension), got {axes_t!r}")
    for i, axis in enumerate(axes_t):
        axis.coordinates(shape_t[i])
    return shape_t, dt, axes_t


def _check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape_t = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"channel {name!r}: shape must be a sequence of integers, got {shape!r}") from None
    if any(s < 1 for s in shape_t) or any(isinstance(s, bool) for s in shape):
        raise ConfigError(f"channel {name!r}: every dimension of shape must be at least 1, got {shape!r}")
    return shape_t


def _check_dtype(name: str, dtype: npt.DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"channel {name!r}: dtype {dtype!r} is not a numpy dtype") from None
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
        raise ConfigError(f"channel {name!r}: dtype {dt} is not supported; expected a numeric dtype "
                          "(bool, int, uint, float or complex)")
    return dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt
