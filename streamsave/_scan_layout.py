"""The on-disk tree of scans, as PyMoDAQ's DAQ_Scan writes it.

::

    /RawData/Scan000                      TITLE=<scan>, type='scan', scan_done, settings (XML), params_json
    /RawData/Scan000/NavAxes/Axis00 ...   grid scans: one axis per scan dimension (index 0, 1, ...);
                                          with average=N, an 'Average' axis (index 0) last
    /RawData/Scan000/Detector000          TITLE=<detector>, type='detector', settings
    /RawData/Scan000/Detector000/Data2D/CH00
        Data00       grid: (*scan_shape, *frame_shape), never measured = fill value,
                     nav_indexes=(0, 1, ...); 0D channels: scan_shape alone
        EnlData00    adaptive: (N, *frame_shape), enlargeable, distribution='spread'
        Axis00 ...   signal axes (index len(scan_shape), ...)
        AxisKK ...   adaptive: one position per point and scan axis (index 0, spread_order 0, 1, ...)
        Timestamps   when each point was acquired, epoch seconds (NaN: not measured)

PyMoDAQ's loader finds ``NavAxes`` by walking up from a data node, so a grid's axes
are shared by every channel of the scan. Positions of adaptive scans are per channel
(streamsave's channels are independent streams, which may measure different points),
inside the channel group, where the loader finds them as spread navigation axes.
``Timestamps`` has no ``data_type``: PyMoDAQ's loader ignores it.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._layout import dim_group, encode, settings_xml
from .backends import AttrValue, Backend, DatasetSpec

if TYPE_CHECKING:
    from ._scan import Scan, ScanChannel, ScanDetector

__all__ = ("POSITION_CHUNK", "add_scan", "add_scan_channel", "add_scan_detector", "data_shape", "position_paths")

#: points per chunk of an adaptive scan's positions and timestamps
POSITION_CHUNK: Final = 4096


def _settings_attrs(settings_json: str) -> dict[str, AttrValue]:
    """Settings as attributes (their size was checked when they were declared)."""
    return {"settings": settings_xml(settings_json), "params_json": settings_json}


def add_scan(backend: Backend, scan: Scan) -> None:
    """Create a scan's group and, for a grid, its ``NavAxes``."""
    backend.create_group(scan.path, {
        "CLASS": "GROUP", "TITLE": scan.name, "type": "scan", "description": "", "NX_class": "NXcollection",
        "scan_done": encode(False), "scan_type": "adaptive" if scan.adaptive else "grid",
        "scan_shape": encode(scan.shape), "average": encode(scan.average), **_settings_attrs(scan._settings_json),
    })
    if scan.adaptive:
        return
    backend.create_group(f"{scan.path}/NavAxes", {"CLASS": "GROUP", "TITLE": ""})
    shift = 1 if scan.average > 1 else 0
    axes: list[tuple[str, str, Any, int]] = [
        (a.label, a.units, np.asarray(a.values, dtype=np.float64), i + shift) for i, a in enumerate(scan.axes)]
    if scan.average > 1:  # as DAQ_Scan: the repetitions' axis comes last, at index 0
        axes.append(("Average", "", np.arange(scan.average, dtype=np.float64), 0))
    for n, (label, units, values, index) in enumerate(axes):
        backend.create_dataset(f"{scan.path}/NavAxes/Axis{n:02d}", DatasetSpec(
            shape=values.shape, dtype=values.dtype, data=values, attrs=_axis_attrs(label, units, values, index)))


def _axis_attrs(label: str, units: str, values: Any, index: int, spread_order: int = 0) -> dict[str, AttrValue]:
    linear = values.size < 2 or bool(np.allclose(np.diff(values), values[1] - values[0]))
    scaling = float(values[1] - values[0]) if values.size > 1 and linear else 1.0
    return {"CLASS": "CARRAY", "TITLE": label, "data_type": "axis", "data_dimension": "Data1D",
            "label": encode(label), "units": encode(units), "index": encode(index),
            "spread_order": encode(spread_order), "size": encode(int(values.size)),
            "offset": encode(float(values[0]) if values.size else 0.0), "scaling": encode(scaling),
            "distribution": "uniform" if linear else "spread", "shape": encode(tuple(values.shape)),
            "dtype": "float64", "long_name": f"{label} ({units})" if units else label}


def add_scan_detector(backend: Backend, detector: ScanDetector) -> None:
    backend.create_group(detector.path, {
        "CLASS": "GROUP", "TITLE": detector.name, "type": "detector", "NX_class": "NXcollection",
        **_settings_attrs(detector._settings_json)})


def data_shape(channel: ScanChannel) -> tuple[int, ...]:
    """A channel's dataset shape: a grid's points times the frame (scalars add nothing,
    as PyMoDAQ stores them), or ``(0, *stored frame)`` to grow for an adaptive scan."""
    scan = channel.scan
    return (0, *channel.point_shape) if scan.adaptive else (*scan.shape, *channel.point_shape)


def position_paths(channel: ScanChannel) -> tuple[str, ...]:
    """Where an adaptive channel stores each axis's positions (after its signal axes)."""
    if not channel.scan.adaptive:
        return ()
    n = len(channel.axes)
    return tuple(f"{channel.paths.group}/Axis{n + j:02d}" for j in range(len(channel.scan.axes)))


def time_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of a grid's timestamps: whole rows along the last axes, at most
    ``POSITION_CHUNK`` points."""
    chunks = [1] * len(shape)
    left = POSITION_CHUNK
    for i in range(len(shape) - 1, -1, -1):
        chunks[i] = max(1, min(shape[i], left))
        left //= max(1, shape[i])
        if left < 1:
            break
    return tuple(chunks)


def add_scan_channel(backend: Backend, channel: ScanChannel, *, filter: tuple[int, tuple[int, ...]] | None,
                     compression: str, created_dims: set[str]) -> None:
    """Create a scan channel's group and datasets (every one before SWMR starts)."""
    scan = channel.scan
    group = channel.paths.group
    dim_path = group.rsplit("/", 1)[0]
    if dim_path not in created_dims:
        backend.create_group(dim_path, {"CLASS": "GROUP", "TITLE": "", "type": "data_dim",
                                        "NX_class": "NXcollection"})
        created_dims.add(dim_path)
    backend.create_group(group, {"CLASS": "GROUP", "TITLE": channel.name, "origin": channel.detector, "type": "ch"})
    shape = data_shape(channel)
    nav = len(scan.shape) if not scan.adaptive else 1
    attrs: dict[str, AttrValue] = {
        "TITLE": channel.name, "data_dimension": dim_group(len(channel.shape)), "label": encode(channel.label),
        "units": encode(channel.units), "source": "raw", "origin": encode(channel.detector),
        "timestamp": encode(_dt.datetime.now().timestamp()), "nav_indexes": encode(tuple(range(nav))),
        "dtype": channel.dtype.name, "backend": backend.name, "compression": compression,
        "fill_value": encode(channel.fill_value.item()), "long_name": channel.label,
        "frames_rejected": encode(0),
    }
    if scan.adaptive:
        attrs.update({"CLASS": "EARRAY", "data_type": "data_enlargeable", "distribution": "spread",
                      "EXTDIM": encode(0), "shape": encode(shape)})
        maxshape: tuple[int | None, ...] = (None, *shape[1:])
    else:
        attrs.update({"CLASS": "CARRAY", "data_type": "data", "distribution": "uniform", "shape": encode(shape)})
        maxshape = shape
    chunks = channel.chunk_shape
    backend.create_dataset(channel.paths.data, DatasetSpec(
        shape=shape, maxshape=maxshape, dtype=channel.dtype, chunks=chunks, filter=filter, attrs=attrs,
        fillvalue=channel.fill_value))
    for i, axis in enumerate(channel.axes):
        values = axis.coordinates(channel.shape[i])
        backend.create_dataset(channel.paths.axes[i], DatasetSpec(
            shape=values.shape, dtype=values.dtype, data=values,
            attrs={**_axis_attrs(axis.label, axis.units, values, i + nav, -1), "offset": encode(axis.offset),
                   "scaling": encode(axis.scale)}))
    time_attrs: dict[str, AttrValue] = {"TITLE": "timestamps", "units": "s",
                                        "long_name": "acquisition time of each point (s since the Unix epoch)"}
    if scan.adaptive:
        backend.create_dataset(channel.paths.time, DatasetSpec(
            shape=(0,), maxshape=(None,), dtype=np.dtype(np.float64), chunks=(POSITION_CHUNK,),
            attrs={**time_attrs, "CLASS": "EARRAY", "EXTDIM": encode(0)}))
        for j, (axis, path) in enumerate(zip(scan.axes, position_paths(channel), strict=True)):
            backend.create_dataset(path, DatasetSpec(
                shape=(0,), maxshape=(None,), dtype=np.dtype(np.float64), chunks=(POSITION_CHUNK,),
                attrs={"CLASS": "EARRAY", "TITLE": axis.label, "data_type": "axis", "label": encode(axis.label),
                       "units": encode(axis.units), "index": encode(0), "spread_order": encode(j),
                       "size": encode(0), "EXTDIM": encode(0), "distribution": "spread",
                       "long_name": f"{axis.label} ({axis.units})" if axis.units else axis.label}))
        return
    backend.create_dataset(channel.paths.time, DatasetSpec(
        shape=scan.shape, dtype=np.dtype(np.float64), chunks=time_chunks(scan.shape), fillvalue=math.nan,
        attrs={**time_attrs, "CLASS": "CARRAY"}))
