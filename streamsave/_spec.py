"""Value types that describe what to record: axes, compression and overflow policy.

All are frozen, keyword-only dataclasses validated on construction, so a bad value
fails where it is written, with a :class:`~streamsave.ConfigError` naming it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import ConfigError

__all__ = ("Axis", "Compression", "Overflow")


class Overflow(enum.StrEnum):
    """What ``await channel.push()`` does when the channel's queue is full.

    ``BLOCK``
        wait until the writer makes room (backpressure; the default).
    ``DROP_OLDEST``
        discard the oldest queued entry (a frame, or a block from ``push_many``) and
        accept the new one.
    ``DROP_NEWEST``
        discard the new frame and return at once.
    ``ERROR``
        raise :class:`~streamsave.QueueFull`.

    Every dropped frame is counted in ``statistics().frames_dropped``; the strings
    ``"block"``, ``"drop_oldest"``, ``"drop_newest"`` and ``"error"`` are accepted
    wherever an ``Overflow`` is.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    ERROR = "error"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(f"overflow={value!r} is not a policy; expected one of {choices}") from None


@dataclass(frozen=True, slots=True, eq=False, init=False)
class Axis:
    """A signal axis of a channel: one per frame dimension (time is added for you).

    Give either ``values`` (one coordinate per pixel along that dimension) or a linear
    ``offset`` + ``scale`` (coordinate = offset + scale * pixel index).

    :param label: what the axis measures, e.g. ``"wavelength"``.
    :param units: its units, e.g. ``"nm"``.
    :param values: 1-D array of coordinates; its length must equal the frame's size
        along this axis.
    :param offset: coordinate of pixel 0 when ``values`` is not given.
    :param scale: coordinate step per pixel when ``values`` is not given.
    """

    label: str
    units: str = ""
    values: npt.NDArray[Any] | None = None
    offset: float = 0.0
    scale: float = 1.0

    def __init__(
        self,
        label: str,
        *,
        units: str = "",
        values: npt.ArrayLike | None = None,
        offset: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        if not isinstance(label, str) or not label:
            raise ConfigError(f"Axis label must be a non-empty string, got {label!r}")
        if not isinstance(units, str):
            raise ConfigError(f"Axis {label!r}: units must be a string, got {units!r}")
        arr: npt.NDArray[Any] | None = None
        if values is not None:
            arr = np.array(values)
            if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iuf":
                raise ConfigError(
                    f"Axis {label!r}: values must be a non-empty 1-D array of numbers, "
                    f"got shape {arr.shape} dtype {arr.dtype}"
                )
            arr.setflags(write=False)
        for name, number in (("offset", offset), ("scale", scale)):
            if not isinstance(number, int | float) or not math.isfinite(number):
                raise ConfigError(f"Axis {label!r}: {name} must be a finite number, got {number!r}")
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "values", arr)
        object.__setattr__(self, "offset", float(offset))
        object.__setattr__(self, "scale", float(scale))

    def coordinates(self, size: int) -> npt.NDArray[np.float64]:
        """The coordinates for a dimension of ``size`` pixels.

        :raises ~streamsave.ConfigError: if ``values`` has another length.
        """
        if self.values is not None:
            if self.values.shape[0] != size:
                raise ConfigError(
                    f"Axis {self.label!r} has {self.values.shape[0]} values but the frame "
                    f"has {size} pixels along that dimension"
                )
            return np.asarray(self.values, dtype=np.float64)
        return self.offset + self.scale * np.arange(size, dtype=np.float64)


_CODECS: Final = ("blosclz", "lz4", "lz4hc", "zstd", "zlib")
_SHUFFLES: Final = ("none", "byte", "bit")


@dataclass(frozen=True, kw_only=True, slots=True)
class Compression:
    """How chunks are compressed: a blosc2 codec, a level and a shuffle filter.

    Chunks are compressed by streamsave in worker threads and stored with HDF5's
    Blosc2 filter (id 32026, from hdf5plugin), so any reader with
    ``import hdf5plugin`` decompresses them.

    :param codec: ``"lz4"`` (fast, the default), ``"lz4hc"``, ``"zstd"`` (smaller,
        slower), ``"blosclz"`` or ``"zlib"``.
    :param level: 1 (fastest) to 9 (smallest); 0 stores blocks uncompressed.
    :param shuffle: ``"byte"`` (default; best for integer images), ``"bit"`` (often
        better for noisy or floating point data) or ``"none"``.

    Strings are accepted wherever a ``Compression`` is: ``"blosc2-lz4"``,
    ``"blosc2-zstd"``, ``"blosc2-lz4hc"``, ``"blosc2-blosclz"``, ``"blosc2-zlib"``
    (default level and byte shuffle), and ``None`` or ``"none"`` for uncompressed.
    """

    codec: str = "lz4"
    level: int = 5
    shuffle: str = "byte"
    _id: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.codec not in _CODECS:
            raise ConfigError(f"compression codec {self.codec!r} is unknown; expected one of {_CODECS}")
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 0 <= self.level <= 9:
            raise ConfigError(f"compression level must be an integer 0..9, got {self.level!r}")
        if self.shuffle not in _SHUFFLES:
            raise ConfigError(f"shuffle {self.shuffle!r} is unknown; expected one of {_SHUFFLES}")
        object.__setattr__(self, "_id", f"blosc2-{self.codec}-{self.level}-{self.shuffle}")

    @property
    def name(self) -> str:
        """A short description stored in the file, e.g. ``"blosc2-lz4-5-byte"``."""
        return self._id

    @classmethod
    def parse(cls, value: Compression | str | None) -> Compression | None:
        """Turn what users pass as ``compression=`` into a ``Compression`` (or ``None``).

        :raises ~streamsave.ConfigError: for an unknown name or type.
        """
        if value is None or isinstance(value, Compression):
            return value
        if isinstance(value, str):
            if value.lower() in ("none", ""):
                return None
            prefix, _, codec = value.lower().partition("-")
            if prefix == "blosc2" and codec in _CODECS:
                return cls(codec=codec)
            names = ", ".join(f"'blosc2-{c}'" for c in _CODECS)
            raise ConfigError(f"compression={value!r} is unknown; expected None, 'none', {names} or a Compression")
        raise ConfigError(f"compression must be None, a string or a Compression, got {value!r}")
