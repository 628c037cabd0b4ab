"""Reading a channel's per-frame columns: frame numbers, the gaps in them, metadata.

``channel.frame_numbers[a:b]`` and ``channel.metadata["exposure"][a:b]`` read lazily,
like ``channel.timestamps``, and never more values than the channel has frames (in
a file being written, those the last flush made durable). ``missing_frames()``
lists the numbers absent between the first and the last frame (frames the detector
skipped, or the saver dropped), and after them up to the last number the writer
assigned, which it records when it closes the file (frames dropped at the end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import h5py
import numpy as np
import numpy.typing as npt

from ._attrs import attr, envelope
from ._columns import FRAME_NUMBERS, MAX_METADATA, METADATA_GROUP
from ._errors import ReadError
from ._nodes import KINDS, external_data

if TYPE_CHECKING:
    from ._channel_reader import ChannelReader

__all__ = ("Column", "find_columns", "gaps")

#: a number in the file that is not a plausible frame number is not used to describe gaps
_MAX_NUMBER: Final = 2**63 - 1


class Column:
    """One per-frame value of a channel (``channel.frame_numbers``, or one of
    ``channel.metadata``), read lazily: ``column[i]``, ``column[a:b]``, ``len()``,
    ``np.asarray(column)``."""

    def __init__(self, channel: ChannelReader, node: h5py.Dataset, name: str) -> None:
        self._channel = channel
        self._node = node
        #: the value's name (``"frame_number"`` for frame numbers)
        self.name = name
        #: the values' dtype
        self.dtype: np.dtype[Any] = np.dtype(node.dtype.str)
        #: the dataset in the file
        self.path = str(node.name)

    def __len__(self) -> int:
        return len(self._channel)

    def __repr__(self) -> str:
        return f"<Column {self.name!r} of {self._channel.full_name!r}: {len(self)} values {self.dtype}>"

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        values = self._read(slice(None))
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, bool | np.bool_) or not isinstance(key, int | np.integer | slice):
            raise TypeError(f"{self._channel.full_name!r}: index {self.name!r} with an int or a slice, got {key!r}")
        if isinstance(key, slice):
            return self._read(key)
        n = len(self)
        index = int(key) + n if key < 0 else int(key)
        if not 0 <= index < n:
            raise IndexError(f"{self.name} {key} is out of range for {self._channel.full_name!r} ({n} frames)")
        return self._read(slice(index, index + 1))[0].item()

    def _read(self, key: slice) -> npt.NDArray[Any]:
        channel = self._channel
        channel._run._check_open(repr(channel.full_name))
        picked = range(*key.indices(len(channel)))
        if not picked:
            return np.empty(0, dtype=self.dtype)
        if len(picked) * self.dtype.itemsize > 4 * 2**30:
            raise ReadError(f"{channel.full_name!r}: reading {len(picked)} values of {self.name!r} would take more "
                            "than 4 GiB; read fewer at a time")
        lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
        try:
            if channel._run.live:
                self._node.refresh()
            values = np.asarray(self._node[lo:hi], dtype=self.dtype)
        except Exception as exc:  # h5py raises many kinds on damaged data
            raise ReadError(f"{channel.full_name!r}: {self.name!r} {lo}:{hi} cannot be read: {exc}") from None
        if values.shape != (hi - lo,):
            raise ReadError(f"{channel.full_name!r}: {self.path!r} holds {values.shape} values for frames {lo}:{hi}, "
                            "expected one per frame")
        step = picked.step
        return np.ascontiguousarray(values[::step] if step > 0 else values[::-1][::-step])


def _column_node(group: Any, name: str) -> h5py.Dataset | None:
    """``group[name]`` if it is a hard-linked, one-dimensional numeric dataset stored in this file."""
    try:
        if not isinstance(group, KINDS.group) or not isinstance(group.get(name, getlink=True), KINDS.hard):
            return None
        node = group.get(name)
        if not isinstance(node, KINDS.dataset) or node.ndim != 1 or node.dtype.kind not in "biuf" \
                or external_data(node):
            return None
        return node
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        return None


def _number_attr(numbers: h5py.Dataset | None, key: str) -> int | None:
    raw = attr(numbers, key) if numbers is not None else None
    value = envelope(raw) if isinstance(raw, str) else raw  # an int64, or an int in PyMoDAQ's envelope
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_) and 0 <= value <= _MAX_NUMBER:
        return int(value)
    return None


def find_columns(data: Any) -> tuple[h5py.Dataset | None, tuple[int | None, int | None], dict[str, h5py.Dataset]]:
    """A channel's frame numbers, the first and last numbers its writer assigned
    (``None`` if not recorded), and its metadata datasets by name, found beside its
    data node."""
    group = getattr(data, "parent", None)
    if not isinstance(data, KINDS.dataset) or not isinstance(group, KINDS.group):
        return None, (None, None), {}
    numbers = _column_node(group, FRAME_NUMBERS)
    numbers = numbers if numbers is not None and numbers.dtype.kind in "iu" else None
    span = (_number_attr(numbers, "first_frame_number"), _number_attr(numbers, "last_frame_number"))
    metadata: dict[str, h5py.Dataset] = {}
    try:
        link = group.get(METADATA_GROUP, getlink=True)
        meta = group.get(METADATA_GROUP) if isinstance(link, KINDS.hard) else None
        names = sorted(meta)[:MAX_METADATA] if isinstance(meta, KINDS.group) else []
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):
        meta, names = None, []
    for name in names:
        node = _column_node(meta, name)
        if node is not None:
            metadata[name] = node
    return numbers, span, metadata


def gaps(numbers: npt.NDArray[Any], last: int | None, first: int | None = None) -> list[range]:
    """The frame numbers missing from ``numbers`` (increasing), as ranges: from
    ``first`` to the first frame, between consecutive frames, and after the last one
    up to ``last``."""
    numbers = np.asarray(numbers, dtype=np.int64)
    out: list[range] = []
    if first is not None and numbers.size and first < int(numbers[0]):
        out.append(range(first, int(numbers[0])))
    if numbers.size > 1:
        steps = np.diff(numbers)
        out.extend(range(int(numbers[i]) + 1, int(numbers[i + 1])) for i in np.flatnonzero(steps > 1))
    end = int(numbers[-1]) if numbers.size else -1
    if last is not None and last > end:
        out.append(range(end + 1, last + 1))
    return out
