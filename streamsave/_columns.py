"""Per-frame columns: hardware frame numbers and named metadata scalars.

A channel may keep, beside its timestamps, one value per frame in parallel
datasets of its group (areaDetector's NDAttributes, odin-data's frame numbers)::

    CHnn/FrameNumbers          (N,) int64, the frame number of each stored frame
    CHnn/Metadata/<name>       (N,) of the declared dtype, one per declared name

They travel with their frames through the queue and are stored like the time
axis: a whole chunk of values at a time, the partly filled chunk at each flush,
in place. So 4 values per frame cost a few dictionary look-ups at push, and one
chunk write per 8,192 frames.

**Frame numbers** (``add_channel(frame_numbers=True)``, and by default on channels
whose overflow policy drops frames): a frame pushed with ``frame_number=n`` stores
``n``; one pushed without gets the previous number plus one (0 for the first). A
number must be an integer >= 0 larger than the channel's previous one, given or
assigned, so numbers increase strictly along the file. A frame dropped by the
overflow policy keeps its number, which is then missing from the file, like the
frames the detector skipped: a reader tells which frames are missing from the gaps
(``ChannelReader.missing_frames()``). The first and last numbers assigned are
recorded at close (``first_frame_number``, ``last_frame_number``, int64 attributes
rewritten in place), so frames dropped before the first stored one or after the last
(an aborted close) show too.

**Metadata** (``add_channel(metadata={"exposure": "float64", ...})``): every push
gives every declared value (``push(frame, metadata={"exposure": 0.01, ...})``), each
converted to its declared dtype without loss, or the push is refused.

This module only checks and describes; the channel queues the values, the writer
stores them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import ConfigError, FrameNumberError, MetadataError

__all__ = (
    "FRAME_NUMBERS",
    "MAX_METADATA",
    "METADATA_GROUP",
    "Columns",
    "parse_metadata",
)

#: the frame numbers' dataset, in the channel's group
FRAME_NUMBERS: Final = "FrameNumbers"
#: the group of the metadata datasets, in the channel's group
METADATA_GROUP: Final = "Metadata"
#: the most metadata values one channel may declare
MAX_METADATA: Final = 64
_MAX_NUMBER: Final = 2**63 - 1
_NUMBER_DTYPE: Final = np.dtype(np.int64)


def parse_metadata(channel: str, metadata: Mapping[str, Any] | None) -> tuple[tuple[str, np.dtype[Any]], ...]:
    """The declared metadata as ``((name, dtype), ...)``, in the given order.

    :raises ~streamsave.ConfigError: not a mapping of names to numeric scalar dtypes,
        a name that is not valid (empty, ``/``, NUL, over 255 characters), or more
        than :data:`MAX_METADATA` names.
    """
    from ._layout import check_name

    if metadata is None:
        return ()
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"channel {channel!r}: metadata must map names to dtypes, e.g. "
                          f"{{'exposure': 'float64'}}, got {type(metadata).__name__}")
    if len(metadata) > MAX_METADATA:
        raise ConfigError(f"channel {channel!r}: {len(metadata)} metadata values declared; at most "
                          f"{MAX_METADATA} are allowed")
    specs = []
    for name, dtype in metadata.items():
        check_name(f"channel {channel!r}: metadata", name)
        if name in (".", ".."):
            raise ConfigError(f"channel {channel!r}: metadata name {name!r} is not allowed (HDF5 reads it as a path)")
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ConfigError(f"channel {channel!r}: metadata {name!r} has dtype {dtype!r}, which is not a "
                              "numpy dtype") from None
        if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
            raise ConfigError(f"channel {channel!r}: metadata {name!r} has dtype {dt}; expected a numeric "
                              "scalar dtype (bool, int, uint, float or complex)")
        specs.append((name, dt.newbyteorder("=") if dt.byteorder not in ("=", "|") else dt))
    return tuple(specs)


def _scalar_check(where: str, name: str, dt: np.dtype[Any]) -> Callable[[Any], Any]:
    """A function that returns a value converted to ``dt``, or raises MetadataError."""
    kind = dt.kind
    fast: type | None = float if kind == "f" and dt.itemsize >= 8 else int if kind in "iu" else None
    bounds = np.iinfo(dt) if kind in "iu" else None
    fmax = float(np.finfo(dt).max) if kind in "fc" else math.inf

    def bad(value: Any, why: str) -> MetadataError:
        return MetadataError(f"{where}: metadata {name!r} = {value!r} ({type(value).__name__}) {why}; "
                             f"expected a number that {dt} holds without loss")

    def check(value: Any) -> Any:
        kind_of = type(value)
        if kind_of is fast and (bounds is None or bounds.min <= value <= bounds.max):
            return value  # the common case: a float for a float64, an int in range
        try:
            arr = np.asarray(value)
        except Exception:
            raise bad(value, "is not a number") from None
        if arr.ndim != 0 or arr.dtype.kind not in "biufc":
            raise bad(value, "is not a number" if arr.ndim == 0 else f"has shape {arr.shape}, not a scalar")
        if arr.dtype.kind == "b" and kind != "b":
            raise bad(value, "is a boolean")
        if not np.can_cast(arr.dtype, dt, "same_kind") and not (arr.dtype.kind in "iu" and kind in "iufc"):
            raise bad(value, f"is {arr.dtype}, which does not convert to {dt}")
        if bounds is not None:
            number = int(arr)
            if not bounds.min <= number <= bounds.max:
                raise bad(value, f"is outside {dt}'s range {bounds.min}..{bounds.max}")
            return dt.type(number)
        if kind in "fc":
            parts = (arr.real, arr.imag) if arr.dtype.kind == "c" else (arr,)
            if any(np.isfinite(p) and abs(float(p)) > fmax for p in parts):
                raise bad(value, f"is outside {dt}'s range")
        return dt.type(value)

    return check


class Columns:
    """What one channel keeps per frame besides timestamps, and the checks on it.

    :param where: the channel, for messages (``"channel 'Camera/image'"``).
    :param numbers: keep frame numbers.
    :param metadata: the declared ``(name, dtype)`` pairs.
    """

    __slots__ = ("_checks", "_names", "dtypes", "metadata", "names", "numbers", "where")

    def __init__(self, where: str, *, numbers: bool, metadata: Sequence[tuple[str, np.dtype[Any]]]) -> None:
        self.where = where
        self.numbers = numbers
        self.metadata = tuple(metadata)
        self.names = tuple(name for name, _ in self.metadata)
        self._names = frozenset(self.names)
        self._checks = tuple((name, _scalar_check(where, name, dt)) for name, dt in self.metadata)
        #: the dtype of each column, in queue order: the frame numbers first (if kept), then the metadata
        self.dtypes: tuple[np.dtype[Any], ...] = ((_NUMBER_DTYPE,) if numbers else ()) + tuple(
            dt for _, dt in self.metadata)

    # ------------------------------------------------------------------ frame numbers
    def check_number(self, number: Any) -> int | None:
        """A given frame number as an int (order is checked when it is queued).

        :raises ~streamsave.FrameNumberError: not an integer, negative, or the channel
            keeps no frame numbers.
        """
        if number is None:
            return None
        if not self.numbers:
            raise FrameNumberError(f"{self.where} keeps no frame numbers, got frame_number={number!r}; "
                                   "declare it with add_channel(..., frame_numbers=True)")
        if isinstance(number, bool) or not isinstance(number, int | np.integer):
            raise FrameNumberError(f"{self.where}: frame_number must be an integer, got {number!r} "
                                   f"({type(number).__name__})")
        value: int = operator.index(number)
        if not 0 <= value <= _MAX_NUMBER:
            raise FrameNumberError(f"{self.where}: frame_number must be an integer from 0 to 2**63-1, "
                                   f"got {number!r}")
        return value

    def check_numbers(self, numbers: Any, n: int) -> npt.NDArray[np.int64] | None:
        """``n`` given frame numbers as an int64 array, increasing within the block.

        :raises ~streamsave.FrameNumberError: not ``n`` integers >= 0, not strictly
            increasing, or the channel keeps no frame numbers.
        """
        if numbers is None:
            return None
        if not self.numbers:
            raise FrameNumberError(f"{self.where} keeps no frame numbers, got frame_numbers; "
                                   "declare it with add_channel(..., frame_numbers=True)")
        arr = np.asarray(numbers)
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise FrameNumberError(f"{self.where}: frame_numbers must be {n} integers (shape ({n},)), got "
                                   f"{arr.dtype} values of shape {arr.shape}")
        if n and (int(arr.min()) < 0 or int(arr.max()) > _MAX_NUMBER):
            raise FrameNumberError(f"{self.where}: frame numbers must be from 0 to 2**63-1, got "
                                   f"{int(arr.min())}..{int(arr.max())}")
        out = arr.astype(np.int64)
        if n > 1 and (np.diff(out) <= 0).any():
            i = int(np.argmax(np.diff(out) <= 0))
            raise FrameNumberError(f"{self.where}: frame numbers must increase, but number {i + 1} of the block "
                                   f"({int(out[i + 1])}) is not larger than the one before ({int(out[i])})")
        return out

    def order_error(self, number: int, last: int) -> FrameNumberError:
        return FrameNumberError(f"{self.where}: frame number {number} is not larger than the previous one "
                                f"({last}); frame numbers must increase")

    # ------------------------------------------------------------------ metadata
    def check_metadata(self, metadata: Any) -> tuple[Any, ...]:
        """One frame's metadata, as a tuple of values in declaration order.

        :raises ~streamsave.MetadataError: not a mapping, an unknown or missing name,
            a value that does not convert.
        """
        if not self._checks:
            if metadata is None:
                return ()
            raise MetadataError(f"{self.where} declares no metadata, got metadata={metadata!r}; declare names "
                                "with add_channel(..., metadata={'exposure': 'float64', ...})")
        if type(metadata) is not dict:
            self._check_mapping(metadata)
        try:
            values = tuple([check(metadata[name]) for name, check in self._checks])
        except KeyError:
            raise self._names_error(metadata) from None
        if len(metadata) != len(self._checks):
            raise self._names_error(metadata)
        return values

    def check_metadata_block(self, metadata: Any, n: int) -> tuple[npt.NDArray[Any], ...]:
        """A block's metadata (``{name: n values}``), one array per declared name.

        :raises ~streamsave.MetadataError: as :meth:`check_metadata`, or not ``n``
            values of a name.
        """
        if not self._checks:
            return self.check_metadata(metadata)  # () or the error
        self._check_mapping(metadata)
        if set(metadata) != self._names:
            raise self._names_error(metadata)
        out = []
        for name, dt in self.metadata:
            values = metadata[name]
            try:
                arr = np.asarray(values)
            except Exception:
                raise MetadataError(f"{self.where}: metadata {name!r} must be {n} numbers, got {values!r}") from None
            if arr.shape != (n,) or arr.dtype.kind not in "biufc":
                raise MetadataError(f"{self.where}: metadata {name!r} must be {n} numbers (shape ({n},)), got "
                                    f"{arr.dtype} values of shape {arr.shape}")
            if arr.dtype != dt:
                check = dict(self._checks)[name]
                arr = np.array([check(v) for v in arr.tolist()], dtype=dt) if n else arr.astype(dt)
            out.append(arr)
        return tuple(out)

    def _check_mapping(self, metadata: Any) -> None:
        if metadata is None:
            raise MetadataError(f"{self.where}: every frame needs its metadata {list(self.names)}, got none")
        if not isinstance(metadata, Mapping):
            raise MetadataError(f"{self.where}: metadata must be a dict of {list(self.names)}, got "
                                f"{type(metadata).__name__} {metadata!r}")

    def _names_error(self, metadata: Mapping[str, Any]) -> MetadataError:
        given = set(metadata)
        unknown = sorted(map(repr, given - self._names))
        missing = [name for name in self.names if name not in given]
        parts = []
        if unknown:
            parts.append(f"unknown {', '.join(unknown)}")
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        return MetadataError(f"{self.where}: metadata {'; '.join(parts)}; the channel declares {list(self.names)}")
