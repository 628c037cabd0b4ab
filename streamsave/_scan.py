"""Scans: frames stored by scan point, as PyMoDAQ's DAQ_Scan stores them.

A scan is declared on the saver with its navigation axes::

    scan = saver.add_scan("Scan", axes=[Axis("x", units="mm", values=xs), Axis("y", units="mm", values=ys)])
    image = scan.add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16")
    await image.push(frame, index=(ix, iy))

* **Grid scans** (every axis has ``values``): each channel is one fixed dataset of
  shape ``(len(xs), len(ys), *frame_shape)``; points never measured hold the fill
  value (NaN for floating point data, 0 otherwise). With ``average=N`` the dataset
  gets a leading axis of N repetitions (PyMoDAQ's "N average"): the first push at a
  point fills repetition 0, the next repetition 1, ...
* **Adaptive scans** (no axis has ``values``): points are not known in advance;
  ``push(frame, position=(x, y))`` appends the frame and records its position, as
  PyMoDAQ's spread navigation axes do.

Every point also gets its timestamp. Scan channels are channels of the same engine:
the same bounded queue, backpressure, writer thread, compression, direct chunk write,
flushes and SWMR rules (declare every scan before the first push of an SWMR file).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex

import numpy as np
import numpy.typing as npt

from ._channel import SMALL_FRAME_BYTES, Channel
from ._compress import choose_chunk_frames
from ._detector import check_channel
from ._errors import ConfigError, FrameMismatchError, FrameNumberError, MetadataError, StreamSaveError
from ._layout import MAX_ATTR_BYTES, ChannelPaths, check_name, dim_group, settings_to_json, settings_xml
from ._spec import Axis, Overflow

if TYPE_CHECKING:
    from ._control import Control

__all__ = ("Scan", "ScanChannel", "ScanDetector", "ScanFinishedError", "ScanPointError", "check_scan_axes",
           "declare_scan")


class ScanPointError(StreamSaveError, ValueError):
    """A scan point is wrong: an index outside the grid or of the wrong length, a
    position of the wrong length, or a point already measured (without ``average``
    repetitions left or ``overwrite``). Nothing is queued and nothing is dropped."""


class ScanFinishedError(ScanPointError):
    """A frame was pushed into a scan after :meth:`Scan.finish`."""


def _fill_value(dtype: np.dtype[Any], given: float | None) -> Any:
    if given is not None:
        try:
            value = np.array(given).astype(dtype, casting="same_kind" if dtype.kind in "fc" else "unsafe")
        except (TypeError, ValueError):
            raise ConfigError(f"fill_value {given!r} cannot be stored as {dtype}") from None
        return value[()]
    return dtype.type(np.nan) if dtype.kind in "fc" else dtype.type(0)


class Scan:
    """A scan: navigation axes, and detectors whose channels store one frame per
    point. Create with :meth:`Saver.add_scan`."""

    def __init__(self, control: Control, name: str, path: str, axes: tuple[Axis, ...], *, average: int,
                 overwrite: bool, settings_json: str) -> None:
        self._control = control
        self.name = name
        #: the scan's group in the file, ``/RawData/ScanNNN``
        self.path = path
        #: the navigation axes, in index order
        self.axes = axes
        #: points are given by position (their number is not known in advance)
        self.adaptive = axes[0].values is None
        #: repetitions stored per point (PyMoDAQ's "N average"); 1 for none
        self.average = average
        #: a point pushed again replaces the last repetition instead of raising
        self.overwrite = overwrite
        self._settings_json = settings_json
        #: the grid's shape (one entry per axis); ``()`` for an adaptive scan
        self.grid_shape: tuple[int, ...] = () if self.adaptive else tuple(int(a.values.shape[0])  # type: ignore[union-attr]
                                                                         for a in axes)
        #: the leading shape of every channel's dataset: ``(average, *grid_shape)`` when
        #: averaging, ``grid_shape`` otherwise; ``(N,)`` growing for an adaptive scan
        self.shape: tuple[int, ...] = ((average,) if average > 1 else ()) + self.grid_shape
        self.detectors: dict[str, ScanDetector] = {}
        self._detector_paths = 0
        self._finished = False

    def __repr__(self) -> str:
        kind = "adaptive" if self.adaptive else "x".join(map(str, self.grid_shape))
        return f"<Scan {self.name!r} {kind} detectors={list(self.detectors)}>"

    @property
    def finished(self) -> bool:
        """:meth:`finish` was called: later pushes raise :class:`ScanFinishedError`."""
        return self._finished

    def finish(self) -> None:
        """Mark the scan done: frames already pushed are still written, later pushes
        into any of its channels raise :class:`ScanFinishedError`. Closing the saver
        finishes every scan; the file's ``scan_done`` attribute says so."""
        self._finished = True

    def add_detector(self, name: str, *, settings: Mapping[str, Any] | None = None) -> ScanDetector:
        """Declare a detector of this scan (a ``DetectorNNN`` group inside the scan's group).

        :raises ~streamsave.ConfigError: invalid or duplicate name, settings not JSON.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        check_name("detector", name)
        settings_json = _small_settings(name, settings)
        with self._control.declaring(f"detector {name!r} of scan {self.name!r}") as layout:
            if name in self.detectors:
                raise ConfigError(f"scan {self.name!r} already has a detector named {name!r}")
            detector = ScanDetector(self, name, f"{self.path}/Detector{self._detector_paths:03d}", settings_json)
            self._detector_paths += 1
            self.detectors[name] = detector
            layout.append(("scan_detector", detector))
        return detector


class ScanDetector:
    """A detector of a scan; create with :meth:`Scan.add_detector`."""

    def __init__(self, scan: Scan, name: str, path: str, settings_json: str) -> None:
        self.scan = scan
        self.name = name
        #: the detector's group in the file
        self.path = path
        self._settings_json = settings_json
        self.channels: dict[str, ScanChannel] = {}
        self._dims: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<ScanDetector {self.scan.name}/{self.name} channels={list(self.channels)}>"

    def add_channel(self, name: str, *, shape: Sequence[int] = (), dtype: npt.DTypeLike = np.float64,
                    units: str = "", label: str = "", axes: Sequence[Axis] = (), queue_size: int | None = None,
                    overflow: Overflow | str | None = None, copy: bool = False,
                    fill_value: float | None = None) -> ScanChannel:
        """Declare a channel: one frame of ``shape`` and ``dtype`` per scan point.

        The parameters are those of :meth:`Detector.add_channel`, plus ``fill_value``:
        what a grid point never measured holds (default NaN for floating point and
        complex data, 0 for integers and booleans). ``overflow`` may be ``"block"`` or
        ``"error"`` (a dropped frame would be a hole in the scan); a saver-wide drop
        policy gives scan channels ``"block"``.

        :raises ~streamsave.ConfigError: invalid name, shape, dtype, axes, overflow,
            fill value, or a queue that does not fit in the saver's ``memory_budget``.
        :raises ~streamsave.LayoutFrozenError: writing already started in SWMR mode.
        """
        shape_t, dt, axes = check_channel(name, shape, dtype, units, label, axes)
        control = self.scan._control
        policy = Overflow.parse(overflow) if overflow is not None else control.config.overflow
        if policy in (Overflow.DROP_OLDEST, Overflow.DROP_NEWEST):
            if overflow is not None:
                raise ConfigError(f"channel {name!r}: a scan channel cannot drop frames (overflow={overflow!r}); "
                                  "use 'block' or 'error'")
            policy = Overflow.BLOCK
        fill = _fill_value(dt, fill_value)
        with control.declaring(f"channel {name!r} of scan {self.scan.name!r}") as layout:
            if name in self.channels:
                raise ConfigError(f"detector {self.name!r} of scan {self.scan.name!r} already has a channel "
                                  f"named {name!r}")
            channel = self._make(name, shape_t, dt, units, label or name, axes, queue_size, policy, bool(copy), fill)
            self.channels[name] = channel
            control.register_channel(channel, channel.queue_size * channel.frame_nbytes)
            layout.append(("scan_channel", channel))
        return channel

    def _make(self, name: str, shape: tuple[int, ...], dt: np.dtype[Any], units: str, label: str,
              axes: tuple[Axis, ...], queue_size: int | None, policy: Overflow, copy: bool,
              fill: Any) -> ScanChannel:
        cfg = self.scan._control.config
        frame_nbytes = math.prod(shape) * dt.itemsize
        if frame_nbytes > cfg.max_frame_bytes:
            raise ConfigError(f"channel {name!r}: frames of {frame_nbytes} bytes exceed max_frame_bytes="
                              f"{cfg.max_frame_bytes}")
        if queue_size is not None and (isinstance(queue_size, bool) or not isinstance(queue_size, int)
                                       or queue_size < 1):
            raise ConfigError(f"channel {name!r}: queue_size must be a positive integer, got {queue_size!r}")
        k = choose_chunk_frames(frame_nbytes, cfg.chunk_bytes, cfg.max_chunk_frames)
        if not self.scan.adaptive:
            k = min(k, self.scan.shape[-1])  # a chunk holds points along the last scan axis
        if self.scan.overwrite:
            k = 1  # a point replaced after its chunk was stored must not take its neighbours' frames
        if queue_size is not None:
            k = max(1, min(k, queue_size // 2))
        elif cfg.queue_size is not None:  # the saver-wide size, at least two chunks (as for channels)
            queue_size = max(cfg.queue_size, 2 * k)
        left = self.scan._control.queue_bytes_left
        if queue_size is None:
            wanted = min(1 << 20, cfg.queue_bytes // max(1, frame_nbytes))
            queue_size = max(2 * k, min(wanted, left // max(1, frame_nbytes)))
        if queue_size * frame_nbytes > left:
            raise ConfigError(f"channel {name!r}: a queue of {queue_size} frames of {frame_nbytes} bytes does not "
                              f"fit in what the saver's memory_budget leaves ({max(0, left)} bytes)")
        dim = dim_group(len(shape))
        index = self._dims.get(dim, 0)
        self._dims[dim] = index + 1
        group = f"{self.path}/{dim}/CH{index:02d}"
        data = f"{group}/EnlData00" if self.scan.adaptive else f"{group}/Data00"
        paths = ChannelPaths(group=group, data=data, time=f"{group}/Timestamps",
                             axes=tuple(f"{group}/Axis{i:02d}" for i in range(len(axes))))
        return ScanChannel(self.scan._control, scan=self.scan, detector=self.name, name=name, shape=shape,
                           dtype=dt, units=units, label=label, axes=axes, chunk_frames=k, tile_rows=0,
                           queue_size=queue_size, overflow=policy, copy=copy, monotonic=False, paths=paths,
                           fill_value=fill)


class ScanChannel(Channel):
    """One frame per scan point. Create with :meth:`ScanDetector.add_channel`.

    ``push(frame, index=(ix, iy))`` for a grid scan, ``push(frame, position=(x, y))``
    for an adaptive one; everything else (queue, overflow, statistics) is a
    :class:`Channel`'s. ``push_many`` is not available: each frame needs its point.
    """

    def __init__(self, control: Control, *, scan: Scan, fill_value: Any, **kwargs: Any) -> None:
        super().__init__(control, **kwargs)
        self.scan = scan
        #: what a grid point never measured holds
        self.fill_value = fill_value
        # every entry carries its point: no batching of small frames
        self._small = False
        self._stage_scalars = False
        self._copy_small = self.frame_nbytes <= SMALL_FRAME_BYTES
        #: the shape of one point in the dataset: a grid stores scalars without a row of one
        #: (as PyMoDAQ does), an adaptive scan as continuous channels do
        self.point_shape = self.stored_shape if scan.adaptive else self.shape
        if scan.adaptive:
            self.chunk_shape = (self.chunk_frames, *self.point_shape)
            self._counts: npt.NDArray[np.int32] | None = None
        else:
            self.chunk_shape = (1,) * (len(scan.shape) - 1) + (self.chunk_frames, *self.point_shape)
            self._counts = np.zeros(scan.grid_shape, dtype=np.int32)
        self._points = math.prod(scan.grid_shape)
        self._point_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ScanChannel {self.full_name} shape={self.shape} dtype={self.dtype} scan={self.scan.shape}>"

    @property
    def full_name(self) -> str:
        """``"<scan>/<detector>/<channel>"``, the key used in statistics and events."""
        return f"{self.scan.name}/{self.detector}/{self.name}"

    # ------------------------------------------------------------------ points
    def _point(self, index: Any, position: Any) -> tuple[int, Any, int | None]:
        """Check a point and reserve it: ``(slot, position, previous count)``."""
        scan = self.scan
        if scan.finished:
            raise ScanFinishedError(f"channel {self.full_name!r}: scan {scan.name!r} is finished; "
                                    "no more frames are accepted")
        if scan.adaptive:
            if index is not None:
                raise ScanPointError(f"channel {self.full_name!r}: scan {scan.name!r} is adaptive: give "
                                     f"position=(one value per axis), not index={index!r}")
            return 0, self._check_position(position), None
        if position is not None:
            raise ScanPointError(f"channel {self.full_name!r}: scan {scan.name!r} is a grid: give "
                                 f"index=(one integer per axis), not position={position!r}")
        point = self._check_index(index)
        assert self._counts is not None
        with self._point_lock:
            count = int(self._counts[point])
            if count >= scan.average:
                if not scan.overwrite:
                    what = "measured" if scan.average == 1 else f"measured {count} times (average={scan.average})"
                    raise ScanPointError(f"channel {self.full_name!r}: point {point} was already {what}; open the "
                                         "scan with overwrite=True to replace it")
                repeat = scan.average - 1
            else:
                repeat = count
                self._counts[point] = count + 1
        flat = int(np.ravel_multi_index(point, scan.grid_shape))
        return repeat * self._points + flat, None, count

    def _release_point(self, index: Any, count: int | None) -> None:
        """A reserved point was not queued after all (refused, or cancelled)."""
        if count is not None and self._counts is not None:
            with self._point_lock:
                point = tuple(int(i) for i in index)
                if self._counts[point] == count + 1:
                    self._counts[point] = count

    def _check_index(self, index: Any) -> tuple[int, ...]:
        grid = self.scan.grid_shape
        if index is None:
            raise ScanPointError(f"channel {self.full_name!r}: a grid scan needs index=(one integer per axis, "
                                 f"{len(grid)} in all)")
        try:
            items = tuple(index) if not isinstance(index, int | np.integer) else (index,)
        except TypeError:
            raise ScanPointError(f"channel {self.full_name!r}: index must be a tuple of {len(grid)} integers, "
                                 f"got {index!r}") from None
        if len(items) != len(grid):
            raise ScanPointError(f"channel {self.full_name!r}: index {index!r} has {len(items)} entries; the "
                                 f"scan {self.scan.name!r} has {len(grid)} axes, so expected {len(grid)}")
        point = []
        for i, (value, size) in enumerate(zip(items, grid, strict=True)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ScanPointError(f"channel {self.full_name!r}: index {index!r}: entry {i} must be an "
                                     f"integer, got {value!r}")
            if not 0 <= int(value) < size:
                raise ScanPointError(f"channel {self.full_name!r}: index {index!r} is outside the grid: entry {i} "
                                     f"must be in 0..{size - 1} (axis {self.scan.axes[i].label!r})")
            point.append(int(value))
        return tuple(point)

    def _check_position(self, position: Any) -> npt.NDArray[np.float64]:
        n = len(self.scan.axes)
        if position is None:
            raise ScanPointError(f"channel {self.full_name!r}: an adaptive scan needs position=(one value per "
                                 f"axis, {n} in all)")
        try:
            values = np.array(position, dtype=np.float64).reshape(-1) if np.ndim(position) <= 1 else None
        except (TypeError, ValueError):
            values = None
        if values is None:
            raise ScanPointError(f"channel {self.full_name!r}: position must be {n} numbers, got {position!r}")
        if values.shape != (n,):
            raise ScanPointError(f"channel {self.full_name!r}: position {position!r} has {values.size} values; "
                                 f"the scan {self.scan.name!r} has {n} axes, so expected {n}")
        if not np.isfinite(values).all():
            raise ScanPointError(f"channel {self.full_name!r}: position {position!r} must be finite numbers")
        return values

    def _prepare(self, frame: Any, index: Any, position: Any,
                 timestamp: float | None) -> tuple[Any, float | None, tuple[Any, int | None]]:
        data = self._check_frame(frame)
        if self._copy_small and isinstance(data, np.ndarray):
            data = data.copy()
        ts = self._check_timestamp(timestamp)
        slot, pos, count = self._point(index, position)
        return (data, slot, pos), ts, (index, count)

    def _refuse_columns(self, frame_number: SupportsIndex | None, metadata: Mapping[str, Any] | None) -> None:
        """:raises FrameNumberError, MetadataError: a frame number or metadata given to a
        scan channel, which records neither (its points say which frame is which)."""
        if frame_number is not None:
            raise FrameNumberError(f"channel {self.full_name!r}: frame_number={frame_number!r} given, but a scan "
                                   "channel records no frame numbers; its frames are identified by index= or "
                                   "position=")
        if metadata is not None:
            raise MetadataError(f"channel {self.full_name!r}: metadata={dict(metadata)!r} given, but a scan "
                                "channel records no per-frame metadata; pass None")

    # ------------------------------------------------------------------ pushing
    async def push(self, frame: Any, *, index: Any = None, position: Any = None,
                   timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                   metadata: Mapping[str, Any] | None = None) -> None:
        """Queue the frame of one scan point.

        :param frame: as for :meth:`Channel.push`.
        :param index: grid scans: the point, one integer per axis (``(ix, iy)``). With
            ``average=N``, the n-th push at a point is its n-th repetition.
        :param position: adaptive scans: the point's coordinates, one per axis.
        :param timestamp: when the frame was acquired (default: now).
        :param frame_number, metadata: not recorded on scan channels (a point is
            identified by its index or position): giving one raises
            :class:`~streamsave.FrameNumberError` / :class:`~streamsave.MetadataError`.
        :raises ScanPointError: an index outside the grid or of the wrong length, a
            position of the wrong length, a point already measured (see ``overwrite``).
        :raises ScanFinishedError: the scan was finished.
        :raises ~streamsave.FrameMismatchError: wrong shape, dtype or type.
        :raises ~streamsave.QueueFull: queue full with ``overflow="error"``.
        :raises ~streamsave.SaverClosedError: the saver is closing or closed.
        """
        self._refuse_columns(frame_number, metadata)
        entry, ts, reserved = self._prepare(frame, index, position, timestamp)
        try:
            while (wait := self._offer(entry, ts, 1, False, self.overflow)) is not None:
                await wait.wait()  # type: ignore[attr-defined]
        except BaseException:  # refused or cancelled: the point was not measured
            self._release_point(*reserved)
            raise

    def push_nowait(self, frame: Any, *, index: Any = None, position: Any = None,
                    timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                    metadata: Mapping[str, Any] | None = None) -> None:
        """:meth:`push` without waiting: a full queue raises :class:`~streamsave.QueueFull`."""
        self._refuse_columns(frame_number, metadata)
        entry, ts, reserved = self._prepare(frame, index, position, timestamp)
        try:
            self._offer(entry, ts, 1, False, Overflow.ERROR)
        except BaseException:
            self._release_point(*reserved)
            raise

    def push_from_thread(self, frame: Any, *, index: Any = None, position: Any = None,
                         timestamp: float | None = None, frame_number: SupportsIndex | None = None,
                         metadata: Mapping[str, Any] | None = None, timeout: float | None = None) -> None:
        """:meth:`push` from a thread that is not the event loop's (blocks that thread)."""
        self._refuse_columns(frame_number, metadata)
        entry, ts, reserved = self._prepare(frame, index, position, timestamp)
        try:
            self._push_from_thread(entry, ts, 1, False, timeout)
        except BaseException:
            self._release_point(*reserved)
            raise

    async def push_many(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                        frame_numbers: npt.ArrayLike | None = None,
                        metadata: Mapping[str, npt.ArrayLike] | None = None) -> None:
        """Not available on scan channels: every frame needs its point."""
        raise FrameMismatchError(f"channel {self.full_name!r}: push_many is not available on a scan channel; "
                                 "push each frame with its index= or position=")

    def push_many_from_thread(self, frames: npt.ArrayLike, *, timestamps: npt.ArrayLike | None = None,
                              frame_numbers: npt.ArrayLike | None = None,
                              metadata: Mapping[str, npt.ArrayLike] | None = None,
                              timeout: float | None = None) -> None:
        """Not available on scan channels: every frame needs its point."""
        raise FrameMismatchError(f"channel {self.full_name!r}: push_many is not available on a scan channel; "
                                 "push each frame with its index= or position=")


def declare_scan(control: Control, scans: dict[str, Scan], name: str, axes: Sequence[Axis], *, average: int,
                 overwrite: bool, settings: Mapping[str, Any] | None) -> Scan:
    """What :meth:`Saver.add_scan` does: check, number (``Scan000``, ``Scan001``, ...) and
    queue the scan for the writer."""
    check_name("scan", name)
    axes_t = check_scan_axes(name, axes, average)
    settings_json = _small_settings(name, settings)
    with control.declaring(f"scan {name!r}") as layout:
        if name in scans:
            raise ConfigError(f"a scan named {name!r} already exists in {str(control.config.path)!r}")
        scan = Scan(control, name, f"/RawData/Scan{len(scans):03d}", axes_t, average=average,
                    overwrite=bool(overwrite), settings_json=settings_json)
        scans[name] = scan
        layout.append(("scan", scan))
    return scan


def _small_settings(name: str, settings: Mapping[str, Any] | None) -> str:
    """Settings as JSON, refused when they do not fit in attributes (scans keep them there).

    :raises ~streamsave.ConfigError: not JSON values, or too large.
    """
    settings_json = settings_to_json(name, settings)
    size = len(settings_xml(settings_json).encode()) + len(settings_json.encode())
    if size > MAX_ATTR_BYTES:
        raise ConfigError(f"{name!r}: settings of {size} bytes (as XML and JSON) are too large for the attributes "
                          f"of a scan's groups, which hold at most {MAX_ATTR_BYTES}; store large settings on a "
                          "detector of the saver (add_detector), which keeps them in a dataset")
    return settings_json


def check_scan_axes(name: str, axes: Sequence[Axis], average: int) -> tuple[Axis, ...]:
    """Validate a scan's axes and ``average``.

    :raises ~streamsave.ConfigError: no axes, not :class:`Axis` objects, some with
        ``values`` and some without, ``average`` not a positive integer (or above 1
        on an adaptive scan).
    """
    axes_t = tuple(axes) if not isinstance(axes, Axis) else (axes,)
    if not axes_t or not all(isinstance(a, Axis) for a in axes_t):
        raise ConfigError(f"scan {name!r}: axes must be one or more Axis objects, got {axes!r}")
    with_values = [a.values is not None for a in axes_t]
    if any(with_values) and not all(with_values):
        raise ConfigError(f"scan {name!r}: give values to every axis (a grid scan) or to none (an adaptive scan, "
                          f"push(frame, position=...)); got values for {sum(with_values)} of {len(axes_t)}")
    if isinstance(average, bool) or not isinstance(average, int) or average < 1:
        raise ConfigError(f"scan {name!r}: average must be a positive integer, got {average!r}")
    if average > 1 and not all(with_values):
        raise ConfigError(f"scan {name!r}: average={average} needs a grid scan (axes with values); an adaptive "
                          "scan stores every push as a new point")
    return axes_t
