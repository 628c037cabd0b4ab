"""Reading scans back: ``run.scans``, streamsave's and PyMoDAQ's (DAQ_Scan) alike.

::

    with streamsave.open_reader("scan.h5") as run:
        scan = run.scans["Scan"]
        image = scan.channels["Camera/image"]
        frame = image[2, 3]                  # the frame measured at grid point (2, 3)
        xs = scan.axes[0].values             # the navigation axes
        measured = image.measured            # which points hold a frame

Grid channels are indexed by point (``channel[ix, iy]``, slices too); with
``average=N`` the repetition comes first (``channel[k, ix, iy]``, or
``channel.mean()``). Adaptive channels are indexed by the order points came in,
with ``channel.positions`` (one row per point, one column per axis).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import h5py
import numpy as np
import numpy.typing as npt

from ._attrs import attr, envelope, text
from ._channel_reader import axis_from_node
from ._errors import ReadError
from ._nodes import KINDS
from ._spec import Axis

if TYPE_CHECKING:
    from ._reader import Run

__all__ = ("ScanChannelReader", "ScanReader", "discover_scans")

_DIM_GROUPS: Final = ("Data0D", "Data1D", "Data2D", "DataND")
#: the most bytes one read of a scan channel may return
MAX_SCAN_READ: Final = 1 << 31


def _groups(parent: h5py.Group) -> Iterator[tuple[str, h5py.Group]]:
    for key in sorted(parent):
        try:
            if not isinstance(parent.get(key, getlink=True), KINDS.hard):
                continue  # soft and external links are not followed
            node = parent.get(key)
        except (OSError, KeyError, ValueError, RuntimeError):
            continue
        if isinstance(node, KINDS.group):
            yield key, node


def _datasets(parent: h5py.Group) -> Iterator[tuple[str, h5py.Dataset]]:
    for key in sorted(parent):
        try:
            if isinstance(parent.get(key, getlink=True), KINDS.hard) and isinstance(
                    node := parent.get(key), KINDS.dataset):
                yield key, node
        except (OSError, KeyError, ValueError, RuntimeError):
            continue


def _int(value: Any, default: int) -> int:
    found = envelope(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    return found if isinstance(found, int) and not isinstance(found, bool) else default


class ScanChannelReader:
    """One channel of a scan: its data indexed by scan point."""

    def __init__(self, run: Run, scan: ScanReader, detector: str, name: str, data: h5py.Dataset,
                 time: h5py.Dataset | None, axes: tuple[Axis, ...], positions: tuple[h5py.Dataset, ...]) -> None:
        self._run = run
        self.scan = scan
        self.detector = detector
        self.name = name
        self._data = data
        self._time = time
        self._positions = positions
        #: the frame's signal axes
        self.axes = axes
        self.units = text(attr(data, "units")) or ""
        self.dtype: np.dtype[Any] = data.dtype
        nav = len(scan.shape) if not scan.adaptive else 1
        #: the shape of one frame (``()`` for scalars)
        self.frame_shape: tuple[int, ...] = tuple(data.shape[nav:])
        if scan.adaptive and self.frame_shape == (1,) and text(attr(data, "data_dimension")) == "Data0D":
            self.frame_shape = ()
        self._scalar_row = scan.adaptive and not self.frame_shape

    @property
    def full_name(self) -> str:
        """``"<detector>/<channel>"``, the key in :attr:`ScanReader.channels`."""
        return f"{self.detector}/{self.name}"

    @property
    def dataset_path(self) -> str:
        return str(self._data.name)

    def __repr__(self) -> str:
        return f"<ScanChannelReader {self.scan.name}/{self.full_name} points={self.shape} frame={self.frame_shape}>"

    def _refresh(self) -> None:
        self._run._check_open(f"scan channel {self.full_name!r}")
        if self._run.live:
            for node in (self._data, self._time, *self._positions):
                if node is not None:
                    node.refresh()

    @property
    def shape(self) -> tuple[int, ...]:
        """The points: the scan's shape for a grid (with the repetitions first when
        averaging), ``(N,)`` for an adaptive scan (the points stored so far)."""
        self._refresh()
        if not self.scan.adaptive:
            return self.scan.shape
        lengths = [self._data.shape[0]] + [p.shape[0] for p in self._positions]
        return (min(lengths),)

    def __len__(self) -> int:
        return math.prod(self.shape)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        """Frames by point: ``channel[ix, iy]`` (a grid), ``channel[n]`` (adaptive), slices too.

        :raises ~streamsave.ReadError: the read would return more than 2 GiB, or fails.
        """
        self._refresh()
        full = self.shape + self.frame_shape
        try:
            size = np.empty(self.shape, dtype=np.bool_)[key].size if not isinstance(key, tuple) or \
                len(key) <= len(self.shape) else 1
        except IndexError as exc:
            raise IndexError(f"scan channel {self.full_name!r}: {exc} (points: {self.shape})") from None
        if size * math.prod(self.frame_shape) * self.dtype.itemsize > MAX_SCAN_READ:
            raise ReadError(f"scan channel {self.full_name!r}: reading {key!r} would return more than "
                            f"{MAX_SCAN_READ} bytes; read fewer points at a time")
        keys = key if isinstance(key, tuple) else (key,)
        if self.scan.adaptive:
            first = keys[0]
            if isinstance(first, int | np.integer) and not -full[0] <= int(first) < full[0]:
                raise IndexError(f"scan channel {self.full_name!r}: point {first} is outside 0..{full[0] - 1}")
        try:
            values = np.asarray(self._data[key])
        except (OSError, RuntimeError) as exc:
            raise ReadError(f"scan channel {self.full_name!r}: cannot read {key!r}: {exc}") from None
        if self._scalar_row:
            values = values[..., 0]
        return values

    @property
    def timestamps(self) -> npt.NDArray[np.float64] | None:
        """When each point was acquired (epoch seconds; NaN where never measured), or
        ``None`` when the file does not record it (PyMoDAQ's own scans)."""
        self._refresh()
        if self._time is None:
            return None
        values = np.asarray(self._time[()], dtype=np.float64)
        return values[:self.shape[0]] if self.scan.adaptive else values

    @property
    def measured(self) -> npt.NDArray[np.bool_]:
        """Which points hold a frame (from the timestamps, or else from values that
        are not NaN)."""
        times = self.timestamps
        if times is not None:
            return np.asarray(~np.isnan(times))
        if self.scan.adaptive:
            return np.ones(self.shape, dtype=bool)
        values = self[...]
        if values.dtype.kind not in "fc":
            return np.ones(self.shape, dtype=bool)
        return np.asarray(~np.isnan(values).all(axis=tuple(range(len(self.shape), values.ndim))))

    @property
    def positions(self) -> npt.NDArray[np.float64] | None:
        """Adaptive scans: each point's coordinates, shape ``(N, number of axes)``;
        ``None`` for a grid (its points are :attr:`ScanReader.axes`' values)."""
        if not self.scan.adaptive:
            return None
        n = self.shape[0]
        return np.stack([np.asarray(p[:n], dtype=np.float64) for p in self._positions], axis=1)

    def mean(self) -> npt.NDArray[Any]:
        """The frames averaged over the repetitions (``average=N``), ignoring the
        repetitions never measured; the frames as they are without repetitions."""
        values = self[...]
        if self.scan.average <= 1:
            return values
        if values.dtype.kind not in "fc":
            values = values.astype(np.float64)
        reps = self.timestamps
        if reps is not None:  # integer data has no NaN: mask the repetitions never measured
            mask = np.isnan(reps).reshape(reps.shape + (1,) * (values.ndim - reps.ndim))
            values = np.where(mask, np.nan, values)
        counts = np.sum(~np.isnan(values), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.nansum(values, axis=0)
            return np.asarray(np.where(counts > 0, total / np.maximum(counts, 1), np.nan))


class ScanReader:
    """A scan in a file: its navigation axes and channels (``run.scans["name"]``)."""

    def __init__(self, group: h5py.Group) -> None:
        #: the scan's group in the file
        self.path = str(group.name)
        self.name = text(attr(group, "TITLE")) or self.path.rsplit("/", 1)[-1]
        self.channels: dict[str, ScanChannelReader] = {}
        done = envelope(attr(group, "scan_done"))
        #: the writer marked the scan done (``None``: not recorded)
        self.done: bool | None = done if isinstance(done, bool) else None
        self.adaptive = False
        self.average = 1
        #: a grid's points (the repetitions first when averaging); ``()`` for an adaptive
        #: scan (each channel's ``shape`` says how many points it holds)
        self.shape: tuple[int, ...] = ()
        #: the navigation axes (a grid's with their values)
        self.axes: tuple[Axis, ...] = ()

    def __repr__(self) -> str:
        kind = "adaptive" if self.adaptive else "x".join(map(str, self.shape))
        return f"<ScanReader {self.name!r} {kind} channels={list(self.channels)}>"


def _nav_axes(group: h5py.Group) -> tuple[list[tuple[int, Axis]], int]:
    """A grid's axes from ``NavAxes`` (by index), and the number of repetitions."""
    nav = group.get("NavAxes")
    axes: list[tuple[int, Axis]] = []
    average = 1
    if not isinstance(nav, KINDS.group):
        return axes, average
    for _, node in _datasets(nav):
        if text(attr(node, "data_type")) != "axis" or node.ndim != 1:
            continue
        index = _int(attr(node, "index"), -1)
        label = text(attr(node, "label")) or ""
        if label == "Average" and index == 0:
            average = int(node.shape[0])
            continue
        axis = axis_from_node(node, int(node.shape[0]))
        if axis is not None:
            axes.append((index, axis))
    axes.sort(key=lambda pair: pair[0])
    return axes, average


def _scan(run: Run, group: h5py.Group) -> ScanReader | None:
    scan = ScanReader(group)
    grid_axes, scan.average = _nav_axes(group)
    scan.axes = tuple(a for _, a in grid_axes)
    kind = text(attr(group, "scan_type"))
    for _, det in _groups(group):
        if text(attr(det, "type")) != "detector":
            continue
        detector = text(attr(det, "TITLE")) or str(det.name).rsplit("/", 1)[-1]
        for dim_name, dim in _groups(det):
            if dim_name not in _DIM_GROUPS:
                continue
            for _, ch in _groups(dim):
                _add_channel(run, scan, det, detector, ch, kind)
    return scan if scan.channels else None


def _add_channel(run: Run, scan: ScanReader, det: h5py.Group, detector: str, ch: h5py.Group,
                 kind: str | None) -> None:
    data = next((node for key, node in _datasets(ch) if key in ("Data00", "EnlData00")), None)
    if data is None or data.dtype.kind not in "biufc":
        return
    adaptive = kind == "adaptive" or (kind is None and text(attr(data, "data_type")) == "data_enlargeable")
    nav = envelope(attr(data, "nav_indexes"))
    n_nav = len(nav) if isinstance(nav, tuple) else (1 if adaptive else 0)
    if not adaptive and (n_nav == 0 or data.ndim < n_nav):
        return
    if not scan.channels:
        scan.adaptive = adaptive
        scan.shape = () if adaptive else tuple(int(n) for n in data.shape[:n_nav])
    elif scan.adaptive != adaptive or (not adaptive and tuple(data.shape[:n_nav]) != scan.shape):
        return  # not shaped like the scan's other channels
    signal, positions = [], []
    for _, node in _datasets(ch):
        if node == data or text(attr(node, "data_type")) != "axis":
            continue
        index = _int(attr(node, "index"), -1)
        if adaptive and index == 0 and text(attr(node, "label")) != "time":
            positions.append((_int(attr(node, "spread_order"), 0), node))
        elif index >= n_nav:
            signal.append((index, node))
    if adaptive and not positions:  # PyMoDAQ's enlargeable savers: NavAxes of the detector
        nav_group = det.get("NavAxes")
        if isinstance(nav_group, KINDS.group):
            positions = [(_int(attr(n, "spread_order"), 0), n) for _, n in _datasets(nav_group)
                         if text(attr(n, "data_type")) == "axis" and text(attr(n, "label")) != "time"]
    positions.sort(key=lambda pair: pair[0])
    frame = tuple(int(n) for n in data.shape[n_nav:])
    axes: list[Axis] = []
    for index, node in sorted(signal, key=lambda pair: pair[0]):
        i = index - n_nav
        if i == len(axes) and i < len(frame) and (axis := axis_from_node(node, frame[i])) is not None:
            axes.append(axis)
    if adaptive and not scan.axes:
        scan.axes = tuple(Axis(text(attr(n, "label")) or "axis", units=text(attr(n, "units")) or "")
                          for _, n in positions)
    time = ch.get("Timestamps")
    reader = ScanChannelReader(run, scan, detector, text(attr(ch, "TITLE")) or str(ch.name).rsplit("/", 1)[-1],
                               data, time if isinstance(time, KINDS.dataset) else None, tuple(axes),
                               tuple(n for _, n in positions))
    key = reader.full_name
    if key in scan.channels:
        key = f"{key} ({str(ch.name).rsplit('/', 1)[-1]})"
    scan.channels[key] = reader


def discover_scans(run: Run, file: h5py.File) -> Mapping[str, ScanReader]:
    """Every scan group under ``/RawData`` (``type='scan'``), by title."""
    raw = file.get("RawData")
    found: dict[str, ScanReader] = {}
    if not isinstance(raw, KINDS.group):
        return found
    for name, group in _groups(raw):
        if text(attr(group, "type")) != "scan" and not name.startswith("Scan"):
            continue
        try:
            scan = _scan(run, group)
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, IndexError):
            continue  # a damaged scan group: not listed
        if scan is not None:
            key = scan.name if scan.name not in found else f"{scan.name} ({name})"
            found[key] = scan
    return found
