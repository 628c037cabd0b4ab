"""The on-disk tree: PyMoDAQ's layout with NeXus attributes on top.

::

    /                                  NXroot, default=RawData
    /RawData                           NXentry, type='detector'
    /RawData/Logger                    VLARRAY of bytes (PyMoDAQ's log rows)
    /RawData/Detector000               NXcollection, TITLE=<detector>, settings=<XML>,
                                       params_json=<JSON>
    /RawData/Detector000/Data2D        NXcollection (Data0D / Data1D / Data2D / DataND)
    /RawData/Detector000/Data2D/CH00   NXdata, TITLE=<channel>, signal=EnlData00
        EnlData00                      (N, *frame_shape) frames, enlargeable
        Axis00 ...                     signal axes (index 1, 2, ...)
        AxisMM                         per-frame timestamps, epoch seconds (index 0)

Every channel has its own time axis because channels run at different rates.
At close, channels that never stored a frame are removed (PyMoDAQ's loader fails
on an empty dataset) and listed in their detector's ``empty_channels`` attribute.
PyMoDAQ's loader evaluates attribute values it reads; values it needs typed are
stored in its JSON envelope (``{"module": "builtins", "type": "int", "data": "1"}``).
NeXus attributes (``NX_class``, ``default``, ``signal``, ``axes``) stay raw strings.
This module only decides names and attributes; a backend does the writing.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from xml.etree import ElementTree

import numpy as np

from ._errors import ConfigError
from ._spec import Axis, Compression
from ._version import __version__
from .backends import AttrValue, Backend, DatasetSpec

__all__ = (
    "JOURNAL_FRAMES",
    "JOURNAL_GROUP",
    "JOURNAL_TIMES",
    "JOURNAL_WRITING",
    "MAX_ATTR_BYTES",
    "ChannelPaths",
    "Layout",
    "Naming",
    "check_name",
    "encode",
    "settings_to_json",
    "settings_xml",
)

#: HDF5 keeps attributes in the object header, which holds about 64 KiB; settings
#: larger than this go into a dataset instead.
MAX_ATTR_BYTES: Final = 60_000
MAX_NAME_CHARS: Final = 255
TIME_CHUNK: Final = 8192
JOURNAL_GROUP: Final = "/streamsave"
JOURNAL_FRAMES: Final = "/streamsave/durable_frames"
JOURNAL_TIMES: Final = "/streamsave/flush_times"
#: 1 while a writer has the file open, 0 once it closed it cleanly (readers following a file stop there)
JOURNAL_WRITING: Final = "/streamsave/writing"

_DIM_GROUP: Final = {0: "Data0D", 1: "Data1D", 2: "Data2D"}


def dim_group(ndim: int) -> str:
    """``Data0D``/``Data1D``/``Data2D`` for 0-2 dimensional frames, ``DataND`` beyond."""
    return _DIM_GROUP.get(ndim, "DataND")


def stored_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-frame shape in the file: scalars are stored as rows of one, as PyMoDAQ does."""
    return shape if shape else (1,)


def encode(value: Any) -> str:
    """PyMoDAQ's JSON envelope for a Python value (bool, int, float, str, tuple, list).

    Plain strings are stored raw unless JSON would parse them as something else
    (``"1"``, ``"true"``), in which case they are enveloped too.
    """
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        value = value.item()
    return json.dumps({"module": "builtins", "type": type(value).__name__, "data": repr(value)})


def check_name(kind: str, name: object) -> str:
    """Validate a detector or channel name.

    :raises ~streamsave.ConfigError: for a non-string, empty, over-long name, or one
        containing ``/`` or NUL.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{kind} name must be a string, got {name!r}")
    if not name or not name.strip():
        raise ConfigError(f"{kind} name must not be empty or blank, got {name!r}")
    if "/" in name or "\x00" in name:
        raise ConfigError(f"{kind} name {name!r} must not contain '/' or NUL characters")
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"{kind} name is {len(name)} characters long; at most {MAX_NAME_CHARS} are allowed")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{kind} name {name!r} is not valid UTF-8 text ({exc.reason})") from None
    return name


def settings_to_json(detector: str, settings: Mapping[str, Any] | None) -> str:
    """Serialise detector settings, refusing what cannot be stored faithfully.

    :raises ~streamsave.ConfigError: if settings is not a mapping with string keys
        of JSON values (numbers, strings, booleans, None, lists, nested mappings).
    """
    if settings is None:
        return "{}"
    if not isinstance(settings, Mapping):
        raise ConfigError(f"detector {detector!r}: settings must be a mapping, got {type(settings).__name__}")
    try:
        return json.dumps(settings, allow_nan=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"detector {detector!r}: settings must hold only JSON values "
            f"(numbers, strings, booleans, None, lists, mappings with string keys): {exc}"
        ) from None


_XML_BAD_CHARS: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_TAG_BAD: Final = re.compile(r"[^A-Za-z0-9_.-]")
_EXACT_INT: Final = 2**53


def _xml_text(text: str) -> str:
    """Replace the characters XML 1.0 cannot hold (the JSON copy keeps them)."""
    return _XML_BAD_CHARS.sub("\ufffd", text)


def _xml_tag(key: str, taken: set[str]) -> str:
    """A valid, unique XML element name for a settings key (the key itself goes in ``title``)."""
    tag = _XML_TAG_BAD.sub("_", key)
    if not tag or not (tag[0].isalpha() or tag[0] == "_"):
        tag = f"_{tag}"
    unique, n = tag, 1
    while unique in taken:
        n += 1
        unique = f"{tag}_{n}"
    taken.add(unique)
    return unique


def _xml_value(value: Any) -> tuple[str, str]:
    """PyMoDAQ's parameter type and element text for a JSON value (see pymodaq_gui's ioxml)."""
    if isinstance(value, bool):
        return "bool", "1" if value else "0"
    if isinstance(value, int) and abs(value) < _EXACT_INT:
        return "int", str(value)
    if isinstance(value, float):
        return "float", repr(value)
    if isinstance(value, str):
        return "str", value
    return "str", json.dumps(value, ensure_ascii=False)  # lists, None, huge ints


def _settings_xml(settings: Any, tag: str = "settings", title: str = "settings") -> ElementTree.Element:
    """Settings as PyMoDAQ's parameter XML: one element per parameter, named by its tag,
    with ``type``/``title`` attributes and the value as text (booleans ``1``/``0``).

    Only ``group``, ``bool``, ``int``, ``float`` and ``str`` are used, the types its
    reader converts without ``eval``.
    """
    element = ElementTree.Element(tag, type="group", title=_xml_text(title), visible="1",
                                  removable="0", readonly="1")
    if isinstance(settings, Mapping):
        taken: set[str] = set()
        for key, value in settings.items():
            element.append(_settings_xml(value, _xml_tag(str(key), taken), str(key)))
    else:
        kind, text = _xml_value(settings)
        element.set("type", kind)
        element.text = _xml_text(text)
    return element


def settings_xml(settings_json: str) -> str:
    """The PyMoDAQ settings XML string for settings serialised by :func:`settings_to_json`."""
    return ElementTree.tostring(_settings_xml(json.loads(settings_json)), encoding="unicode")


def _settings_stub(dataset: str) -> str:
    """The ``settings`` attribute when the settings are too large for one: where they are."""
    return ElementTree.tostring(_settings_xml({"stored_in_dataset": dataset}), encoding="unicode")


@dataclass(slots=True)
class _Detector:
    """What the layout needs to tidy a detector group at close."""

    attrs: dict[str, AttrValue]
    datasets: list[tuple[str, DatasetSpec]]
    #: dimension group name -> {CHnn name: channel name}, in creation order
    dims: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelPaths:
    """Where a channel's nodes are in the file."""

    group: str
    data: str
    time: str
    axes: tuple[str, ...]


class Naming:
    """Decides where each detector and channel goes, as they are declared.

    Pure bookkeeping with no I/O, so a channel knows its paths the moment it is added,
    before the writer thread has created anything.
    """

    def __init__(self) -> None:
        self._detectors = 0
        self._channels: dict[str, int] = {}

    def detector(self) -> str:
        path = f"/RawData/Detector{self._detectors:03d}"
        self._detectors += 1
        return path

    def channel(self, detector_path: str, ndim: int, n_axes: int) -> ChannelPaths:
        dim_path = f"{detector_path}/{dim_group(ndim)}"
        index = self._channels.get(dim_path, 0)
        self._channels[dim_path] = index + 1
        group = f"{dim_path}/CH{index:02d}"
        return ChannelPaths(group=group, data=f"{group}/EnlData00", time=f"{group}/Axis{n_axes:02d}",
                            axes=tuple(f"{group}/Axis{i:02d}" for i in range(n_axes)))


class Layout:
    """Creates the tree through a backend and remembers the ``default`` chain."""

    def __init__(self, backend: Backend, *, title: str, compression: str) -> None:
        self._backend = backend
        self._compression = compression
        self._dim_groups: set[str] = set()
        self._records: dict[str, _Detector] = {}
        now = _dt.datetime.now()
        backend.set_attrs("/", {
            "CLASS": "GROUP",
            "TITLE": title,
            "NX_class": "NXroot",
            "default": "RawData",
            "file": str(backend.path),
            "date": encode(now.date().isoformat()),
            "time": encode(now.time().isoformat(timespec="seconds")),
            "streamsave_version": __version__,
            "creator": f"streamsave {__version__}",
        })
        backend.create_group("/RawData", {
            "CLASS": "GROUP", "TITLE": "Data from streamsave", "type": "detector", "NX_class": "NXentry",
        })
        backend.create_dataset("/RawData/Logger", DatasetSpec(
            shape=(0,), maxshape=(None,), dtype="vlen-uint8", chunks=(64,),
            attrs={"CLASS": "VLARRAY", "TITLE": "Logger", "type": "log", "data_type": "strings",
                   "subdtype": "string"},
        ))

    def add_detector(self, path: str, name: str, settings_json: str) -> None:
        """Create a detector group holding its settings; returns its path.

        PyMoDAQ's browser parses every attribute whose name contains ``settings`` as
        parameter XML, so the JSON copy is called ``params_json``. Settings too large
        for attributes go into the byte datasets ``Settings`` (XML) and ``ParamsJSON``,
        and the ``settings`` attribute then holds a short XML note naming the dataset.
        """
        xml = settings_xml(settings_json)
        attrs: dict[str, AttrValue] = {
            "CLASS": "GROUP", "TITLE": name, "type": "detector", "NX_class": "NXcollection",
            "settings": xml, "params_json": settings_json,
        }
        datasets: list[tuple[str, DatasetSpec]] = []
        if len(xml.encode()) + len(settings_json.encode()) > MAX_ATTR_BYTES:
            attrs["settings"] = _settings_stub("Settings")
            attrs["params_json"] = encode("")
            attrs["params_dataset"] = "ParamsJSON"
            blobs = (("Settings", xml, "pymodaq-xml-utf8"), ("ParamsJSON", settings_json, "json-utf8"))
            for node, text, fmt in blobs:
                blob = np.frombuffer(text.encode(), dtype=np.uint8)
                datasets.append((node, DatasetSpec(shape=blob.shape, dtype=blob.dtype, data=blob, attrs={
                    "CLASS": "CARRAY", "TITLE": node, "format": fmt, "shape": encode(blob.shape)})))
        self._backend.create_group(path, attrs)
        for node, spec in datasets:
            self._backend.create_dataset(f"{path}/{node}", spec)
        if not self._records:
            self._backend.set_attrs("/RawData", {"default": path.rsplit("/", 1)[1]})
        self._records[path] = _Detector(attrs, datasets)

    def add_channel(
        self,
        detector_path: str,
        detector_name: str,
        paths: ChannelPaths,
        *,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        chunk_shape: tuple[int, ...],
        filter: tuple[int, tuple[int, ...]] | None,
        units: str,
        label: str,
        axes: Sequence[Axis],
        compression: Compression | None = None,
    ) -> None:
        dim = dim_group(len(shape))
        dim_path = f"{detector_path}/{dim}"
        if dim_path not in self._dim_groups:
            self._backend.create_group(dim_path, {"CLASS": "GROUP", "TITLE": "", "type": "data_dim",
                                                  "NX_class": "NXcollection", "default": "CH00"})
            if not any(g.startswith(detector_path + "/") for g in self._dim_groups):
                self._backend.set_attrs(detector_path, {"default": dim})
            self._dim_groups.add(dim_path)
        group = paths.group
        axis_names = [p.rsplit("/", 1)[1] for p in paths.axes]
        time_name = paths.time.rsplit("/", 1)[1]
        stored = stored_shape(shape)
        # NeXus: one @axes entry per dimension of the signal (a scalar's row of one is ".")
        nx_axes = [time_name] + [axis_names[i] if i < len(axes) else "." for i in range(len(stored))]
        self._backend.create_group(group, {
            "CLASS": "GROUP", "TITLE": name, "origin": detector_name, "type": "ch",
            "NX_class": "NXdata", "signal": "EnlData00", "axes": np.array(nx_axes, dtype=object),
            f"{time_name}_indices": 0, **{f"{a}_indices": i + 1 for i, a in enumerate(axis_names)},
        })
        self._records[detector_path].dims.setdefault(dim, {})[group.rsplit("/", 1)[1]] = name
        data_path = paths.data
        data_attrs = self._data_attrs(name, detector_name, shape, dtype, units, label, chunk_shape[0])
        data_attrs["long_name"] = label or name
        if len(shape) == 2:
            data_attrs["interpretation"] = "image"  # viewers then page through the frames
        self._backend.create_dataset(data_path, DatasetSpec(
            shape=(0, *stored), maxshape=(None, *stored), dtype=dtype, chunks=chunk_shape, filter=filter,
            compression=compression, attrs=data_attrs,
        ))
        for i, axis in enumerate(axes):
            values = axis.coordinates(shape[i])
            self._backend.create_dataset(paths.axes[i], DatasetSpec(
                shape=values.shape, dtype=values.dtype, data=values,
                attrs={"CLASS": "CARRAY", "TITLE": axis.label, "data_type": "axis", "label": encode(axis.label),
                       "units": encode(axis.units), "index": encode(i + 1), "spread_order": encode(-1),
                       "size": encode(int(values.size)), "offset": encode(axis.offset),
                       "scaling": encode(axis.scale), "long_name": axis.label},
            ))
        self._backend.create_dataset(paths.time, DatasetSpec(
            shape=(0,), maxshape=(None,), dtype=np.dtype(np.float64), chunks=(TIME_CHUNK,),
            attrs={"CLASS": "EARRAY", "TITLE": "time", "data_type": "axis", "label": "time", "units": "s",
                   "index": encode(0), "spread_order": encode(0), "size": encode(0), "EXTDIM": encode(0),
                   "long_name": "time (s since the Unix epoch)"},
        ))

    def _data_attrs(
        self, name: str, detector: str, shape: tuple[int, ...], dtype: np.dtype[Any], units: str,
        label: str, chunk_frames: int,
    ) -> dict[str, AttrValue]:
        return {
            "CLASS": "EARRAY", "TITLE": name, "EXTDIM": encode(0), "shape": encode((0, *stored_shape(shape))),
            "frames_dropped": encode(0), "frames_rejected": encode(0),
            "data_type": "data_enlargeable", "data_dimension": dim_group(len(shape)),
            "distribution": "spread", "label": encode(label or name), "units": encode(units),
            "timestamp": encode(_dt.datetime.now().timestamp()), "nav_indexes": encode((0,)),
            "source": "raw", "origin": encode(detector), "dtype": dtype.name, "backend": self._backend.name,
            "compression": self._compression, "chunk_frames": encode(chunk_frames),
        }

    @staticmethod
    def final_attrs(shape: tuple[int, ...], frames: int, dropped: int, rejected: int) -> dict[str, AttrValue]:
        """Attributes of a data node once ``frames`` are stored (written at flush and close)."""
        return {"shape": encode((frames, *stored_shape(shape))), "frames_dropped": encode(dropped),
                "frames_rejected": encode(rejected)}

    @staticmethod
    def time_attrs(frames: int) -> dict[str, AttrValue]:
        return {"size": encode(frames)}

    def add_journal(self, data_paths: Sequence[str]) -> None:
        """Create the durability journal: one row, rewritten in place at every flush,
        holding how many frames of each channel (columns in ``data_paths`` order) the
        last completed flush made durable, and when (``flush_times``, one value).

        One row, not one per flush: only the last matters to recovery, and a row per
        flush would make a slow sensor's file grow by as much as its data. The row is
        rewritten in place (fixed size, uncompressed), so no flush moves it.

        It lives outside ``/RawData`` (PyMoDAQ's loader and NeXus viewers ignore it)
        and is created before SWMR starts. After a crash it tells recovery exactly
        which frames are whole.
        """
        n = len(data_paths)
        self._backend.create_group(JOURNAL_GROUP, {
            "CLASS": "GROUP", "TITLE": "streamsave bookkeeping", "channels": json.dumps(list(data_paths)),
        })
        self._backend.create_dataset(JOURNAL_FRAMES, DatasetSpec(
            shape=(1, n), maxshape=(None, n), dtype=np.dtype(np.int64), chunks=(1, max(1, n)),
            data=np.zeros((1, n), dtype=np.int64),
            attrs={"CLASS": "EARRAY", "TITLE": "frames durable per channel after the last flush"}))
        self._backend.create_dataset(JOURNAL_TIMES, DatasetSpec(
            shape=(1,), maxshape=(None,), dtype=np.dtype(np.float64), chunks=(1,),
            data=np.zeros(1, dtype=np.float64),
            attrs={"CLASS": "EARRAY", "TITLE": "time of the last flush, s since the Unix epoch (0: none yet)"}))
        self._backend.create_dataset(JOURNAL_WRITING, DatasetSpec(
            shape=(1,), dtype=np.dtype(np.uint8), data=np.ones(1, dtype=np.uint8),
            attrs={"CLASS": "CARRAY", "TITLE": "1 while the writer has the file open, 0 once it closed it"}))

    def drop_empty(self, backend: Backend, groups: Iterable[str]) -> None:
        """Remove the channel groups that never stored a frame, at close.

        PyMoDAQ's loader raises ``IndexError`` on a channel without frames, which makes
        the whole file unloadable. Each removed channel's name is listed in its
        detector's ``empty_channels`` attribute; dimension groups left empty go too, and
        every ``default`` attribute is made to point at a group that still exists. A
        detector left without channels is recreated without ``default`` (attributes
        cannot be deleted through a backend), with its settings.

        :param backend: the open file, from now on used by this layout (the writer
            reopens the file after SWMR).
        """
        self._backend = backend
        empty: dict[str, list[str]] = {}
        for group in groups:
            det_path, dim, ch = group.rsplit("/", 2)
            record = self._records[det_path]
            empty.setdefault(det_path, []).append(record.dims[dim].pop(ch))
            backend.delete(group)
            if record.dims[dim]:
                backend.set_attrs(f"{det_path}/{dim}", {"default": next(iter(record.dims[dim]))})
            else:
                del record.dims[dim]
                backend.delete(f"{det_path}/{dim}")
        for det_path, names in empty.items():
            record = self._records[det_path]
            record.attrs["empty_channels"] = encode(names)
            if record.dims:
                backend.set_attrs(det_path, {"default": next(iter(record.dims)),
                                             "empty_channels": record.attrs["empty_channels"]})
                continue
            backend.delete(det_path)
            backend.create_group(det_path, record.attrs)
            for node, spec in record.datasets:
                backend.create_dataset(f"{det_path}/{node}", spec)
        with_data = [path for path, record in self._records.items() if record.dims]
        if with_data:
            backend.set_attrs("/RawData", {"default": with_data[0].rsplit("/", 1)[1]})
