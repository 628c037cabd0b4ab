"""Detectors: named groups of channels, and the checks on a channel's declaration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._channel import Channel
from ._compress import choose_chunk_frames
from ._errors import ConfigError
from ._layout import check_name
from ._spec import Axis, Overflow

if TYPE_CHECKING:
    from ._saver import Saver

__all__ = ("Detector",)


class Detector:
    """A group of channels recorded together (a camera, a spectrometer, ...): a
    ``DetectorNNN`` group in the file. Create with :meth:`Saver.add_detector`."""

    def __init__(self, saver: Saver, name: str, settings_json: str) -> None:
        self._saver = saver
        self.name = name
        self._settings_json = settings_json
        #: the detector's group in the file
        self.path = saver._naming.detector()
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
            saver's ``chunk_bytes``, at most ``max_chunk_frames``). A frame larger than
            ``chunk_bytes`` is stored as several chunks of whole rows instead, so no chunk
            is much larger than ``chunk_bytes`` (e.g. a 2048x2048 uint16 frame as four
            2 MiB tiles of 512 rows).
        :param queue_size: queue capacity in frames (default: the saver's
            ``queue_size``, or as many frames as fit in ``queue_bytes``).
        :param overflow: what a full queue does (default: the saver's policy).
        :param copy: copy every pushed frame, so the producer may reuse its buffer.
        :raises ~streamsave.ConfigError: invalid or duplicate name, shape, dtype, axes.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        saver = self._saver
        saver._check_can_add(f"channel {name!r}")
        check_name("channel", name)
        if name in self.channels:
            raise ConfigError(f"detector {self.name!r} already has a channel named {name!r}")
        shape_t = _check_shape(name, shape)
        dt = _check_dtype(name, dtype)
        if not isinstance(units, str) or not isinstance(label, str):
            raise ConfigError(f"channel {name!r}: units and label must be strings, got {units!r}, {label!r}")
        axes = tuple(axes)
        if len(axes) > len(shape_t) or not all(isinstance(a, Axis) for a in axes):
            raise ConfigError(f"channel {name!r}: axes must be at most {len(shape_t)} Axis objects "
                              f"(one per frame dimension), got {axes!r}")
        for i, axis in enumerate(axes):
            axis.coordinates(shape_t[i])
        cfg = saver.config
        frame_nbytes = int(np.prod(shape_t, dtype=np.int64)) * dt.itemsize
        if frame_nbytes > cfg.max_frame_bytes:
            raise ConfigError(f"channel {name!r}: frames of {frame_nbytes} bytes exceed max_frame_bytes="
                              f"{cfg.max_frame_bytes}")
        if chunk_frames is None:
            chunk_frames = choose_chunk_frames(frame_nbytes, cfg.chunk_bytes, cfg.max_chunk_frames)
        elif isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ConfigError(f"channel {name!r}: chunk_frames must be a positive integer, got {chunk_frames!r}")
        tile_rows = 0
        if chunk_frames == 1 and frame_nbytes > cfg.chunk_bytes and len(shape_t) >= 1 and shape_t[0] > 1:
            tiles = -(-frame_nbytes // cfg.chunk_bytes)
            tile_rows = -(-shape_t[0] // tiles)  # rows per tile: near chunk_bytes, balanced
        if queue_size is None:
            queue_size = cfg.queue_size or max(2 * chunk_frames, min(1 << 20, cfg.queue_bytes // frame_nbytes))
        elif isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"channel {name!r}: queue_size must be a positive integer, got {queue_size!r}")
        channel = Channel(
            saver, detector=self.name, name=name, shape=shape_t, dtype=dt, units=units, label=label or name,
            axes=axes, chunk_frames=chunk_frames, tile_rows=tile_rows, queue_size=queue_size,
            overflow=cfg.overflow if overflow is None else Overflow.parse(overflow), copy=bool(copy),
            paths=saver._naming.channel(self.path, len(shape_t), len(axes)))
        channel._detector_obj = self
        self.channels[name] = channel
        saver._channels.append(channel)
        saver._pending_layout.append(("channel", channel))
        return channel


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
