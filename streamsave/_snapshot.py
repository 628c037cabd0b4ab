"""Single snapshots: one set of data saved in one call, as PyMoDAQ's DAQ_Viewer saves
"Single Datas".

::

    streamsave.save_snapshot("snap.h5", "Camera", {
        "image": frame,                                             # an array, as it is
        "spectrum": streamsave.SnapshotData(values, units="counts",
                                            axes=[streamsave.Axis("wavelength", units="nm", values=nm)]),
        "T": 293.1,                                                 # a number (a 0D channel)
    }, settings={"exposure_ms": 10})

Each channel becomes a fixed array (``/RawData/DetectorNNN/Data2D/CH00/Data00``, with
its axes as ``Axis00``, ...), in a new file or as a new detector group of an existing
closed file (a streamsave or PyMoDAQ file). Everything is checked before the file is
touched, so a bad channel leaves an existing file as it was and creates no new one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from ._detector import _check_dtype
from ._errors import ConfigError, StorageError
from ._layout import (
    JOURNAL_WRITING,
    MAX_ATTR_BYTES,
    Layout,
    check_name,
    dim_group,
    encode,
    settings_to_json,
    settings_xml,
)
from ._spec import Axis
from .backends import DatasetSpec
from .backends.h5py import H5pyBackend

__all__ = ("SnapshotData", "save_snapshot")


@dataclass(frozen=True, slots=True, eq=False)
class SnapshotData:
    """One channel of a snapshot with its description.

    :param data: the values (a numpy array or a number; numeric dtypes only).
    :param units: the values' units.
    :param label: what the values are (default: the channel's name).
    :param axes: one :class:`Axis` per dimension of ``data``, in order (may be shorter).
    """

    data: npt.ArrayLike
    units: str = ""
    label: str = ""
    axes: Sequence[Axis] = ()


def _prepare(name: str, item: Any) -> tuple[npt.NDArray[Any], SnapshotData, list[npt.NDArray[np.float64]]]:
    check_name("channel", name)
    spec = item if isinstance(item, SnapshotData) else SnapshotData(item)
    try:
        array = np.asarray(spec.data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"snapshot channel {name!r}: data is not an array of numbers: {exc}") from None
    _check_dtype(name, array.dtype)
    if 0 in array.shape:
        raise ConfigError(f"snapshot channel {name!r}: data has an empty dimension (shape {array.shape})")
    if not isinstance(spec.units, str) or not isinstance(spec.label, str):
        raise ConfigError(f"snapshot channel {name!r}: units and label must be strings, got {spec.units!r}, "
                          f"{spec.label!r}")
    axes = tuple(spec.axes)
    if len(axes) > array.ndim or not all(isinstance(a, Axis) for a in axes):
        raise ConfigError(f"snapshot channel {name!r}: axes must be at most {array.ndim} Axis objects (one per "
                          f"dimension of data of shape {array.shape}), got {len(axes)}: {axes!r}")
    values = []
    for i, axis in enumerate(axes):
        size = array.shape[i]
        if axis.values is not None and axis.values.shape[0] != size:
            raise ConfigError(f"snapshot channel {name!r}: axis {axis.label!r} has {axis.values.shape[0]} values, "
                              f"but data of shape {array.shape} has {size} along dimension {i}; expected {size}")
        values.append(axis.coordinates(size))
    return np.array(array, order="C", copy=None), spec, values


def save_snapshot(path: str | os.PathLike[str], detector: str, data: Mapping[str, Any], *,
                  settings: Mapping[str, Any] | None = None, title: str = "streamsave snapshot") -> str:
    """Save one set of data of one detector as fixed arrays (PyMoDAQ's ``Data00``).

    Creates ``path`` if it does not exist; otherwise adds a new detector group to it
    (the file must be closed by every writer, and be a streamsave or PyMoDAQ file).
    Blocks while it writes (from async code: ``await anyio.to_thread.run_sync(...)``).

    :param path: the HDF5 file.
    :param detector: the detector's title.
    :param data: channel name -> array, number or :class:`SnapshotData`.
    :param settings: the detector's settings (JSON values).
    :param title: the file's title, when it is created.
    :returns: the new detector group's path, e.g. ``"/RawData/Detector001"``.
    :raises ~streamsave.ConfigError: a bad name, data, units or axes (an axis whose
        length is not the data's along its dimension), settings not JSON; nothing
        was written.
    :raises ~streamsave.StorageError: the file cannot be created or opened for update
        (another program has it open, no permission, not HDF5), or has no
        ``/RawData`` group.
    """
    check_name("detector", detector)
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"snapshot of {detector!r}: data must be a non-empty mapping of channel name -> array, "
                          f"got {data!r}")
    channels = [(name, *_prepare(name, item)) for name, item in data.items()]
    settings_json = settings_to_json(detector, settings)
    xml = settings_xml(settings_json)
    if len(xml.encode()) + len(settings_json.encode()) > MAX_ATTR_BYTES:
        raise ConfigError(f"snapshot of {detector!r}: settings of {len(settings_json)} characters are too large "
                          f"for attributes (at most about {MAX_ATTR_BYTES} bytes)")
    target = Path(path)
    new = not target.exists()
    try:
        backend = H5pyBackend(target, "w-" if new else "r+", swmr=False)
    except OSError as exc:
        raise StorageError(f"cannot open {str(target)!r} to add a snapshot: {exc}") from None
    try:
        if new:
            Layout(backend, title=title, compression="none")
        raw = backend.file.get("/RawData")
        writing = backend.file.get(JOURNAL_WRITING)
        if not new and isinstance(writing, h5py.Dataset) and writing.shape == (1,) and writing[0]:
            raise StorageError(f"{str(target)!r} is still being written by a saver (or its writer was killed: "
                               "`streamsave recover` it first); add the snapshot once it is closed")
        if not isinstance(raw, h5py.Group):
            raise StorageError(f"{str(target)!r} has no /RawData group: not a streamsave or PyMoDAQ file")
        taken = {name for name in raw if name.startswith("Detector")}
        index = next(i for i in range(len(taken) + 1) if f"Detector{i:03d}" not in taken)
        det_path = f"/RawData/Detector{index:03d}"
        backend.create_group(det_path, {"CLASS": "GROUP", "TITLE": detector, "type": "detector",
                                        "NX_class": "NXcollection", "settings": xml, "params_json": settings_json})
        counts: dict[str, int] = {}
        now = _dt.datetime.now().timestamp()
        for name, array, spec, axes_values in channels:
            _write_channel(backend, det_path, detector, name, array, spec, axes_values, counts, now)
        backend.close(fsync=True)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            backend.close()
        if new:
            with contextlib.suppress(OSError):
                target.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write the snapshot to {str(target)!r}: {exc}") from exc
        raise
    return det_path


def _write_channel(backend: H5pyBackend, det_path: str, detector: str, name: str, array: npt.NDArray[Any],
                   spec: SnapshotData, axes_values: list[npt.NDArray[np.float64]], counts: dict[str, int],
                   now: float) -> None:
    dim = dim_group(array.ndim)
    dim_path = f"{det_path}/{dim}"
    if dim not in counts:
        backend.create_group(dim_path, {"CLASS": "GROUP", "TITLE": "", "type": "data_dim",
                                        "NX_class": "NXcollection"})
    n = counts[dim] = counts.get(dim, -1) + 1
    group = f"{dim_path}/CH{n:02d}"
    stored = array.reshape(1) if array.ndim == 0 else array  # a number as a row of one, as PyMoDAQ stores it
    axis_names = [f"Axis{i:02d}" for i in range(len(axes_values))]
    backend.create_group(group, {
        "CLASS": "GROUP", "TITLE": name, "origin": detector, "type": "ch", "NX_class": "NXdata",
        "signal": "Data00", "axes": np.array(axis_names + ["."] * (stored.ndim - len(axis_names)), dtype=object)})
    backend.create_dataset(f"{group}/Data00", _spec(stored, {
        "CLASS": "CARRAY", "TITLE": name, "data_type": "data", "data_dimension": dim, "distribution": "uniform",
        "nav_indexes": encode(()), "label": encode(spec.label or name), "units": encode(spec.units),
        "source": "raw", "origin": encode(detector), "timestamp": encode(now), "shape": encode(stored.shape),
        "dtype": stored.dtype.name, "backend": backend.name, "long_name": spec.label or name}))
    for i, (axis, values) in enumerate(zip(spec.axes, axes_values, strict=False)):
        backend.create_dataset(f"{group}/{axis_names[i]}", _spec(values, {
            "CLASS": "CARRAY", "TITLE": axis.label, "data_type": "axis", "label": encode(axis.label),
            "units": encode(axis.units), "index": encode(i), "spread_order": encode(-1),
            "size": encode(int(values.size)), "offset": encode(axis.offset), "scaling": encode(axis.scale),
            "shape": encode(values.shape), "long_name": axis.label}))


def _spec(values: npt.NDArray[Any], attrs: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec(shape=values.shape, dtype=values.dtype, data=values, attrs=attrs)
