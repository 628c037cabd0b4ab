"""A streamsave file read by the real libraries: PyMoDAQ's loader and browser, silx's
NeXus parser, and plain h5py + hdf5plugin in a process that never imports streamsave.

The files are made read-only (and hashed, since root ignores file modes) before any
reader opens them, to prove that no reader needs to write anything back.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest

import streamsave

COMPRESSIONS = [None, "blosc2-lz4", "blosc2-zstd"]
T0 = 1_700_000_000.0

# PyMoDAQ warns while loading its own continuous-saving files too: it makes pixel axes
# for dimensions without a declared axis, and turns the per-frame data_dimension
# (Data2D...) into DataND once the time axis is there. Neither is about our file.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The axis requested with index"),
    pytest.mark.filterwarnings("ignore:The specified dimensionality is not coherent"),
]


@dataclass
class Spec:
    detector: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    frames: int  # how many frames to push (0: never)
    units: str = ""
    axes: list[streamsave.Axis] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.detector}/{self.name}"


SPECS = [
    Spec("Camera", "image", (8, 6), "uint16", 7, units="counts"),
    Spec("Spectrometer", "spectrum", (32,), "float64", 10,
         axes=[streamsave.Axis("wavelength", units="nm", values=np.linspace(400.0, 800.0, 32))]),
    # same Data1D group, another rate, a linear axis
    Spec("Spectrometer", "reference", (16,), "float32", 3,
         axes=[streamsave.Axis("pixel", units="px", offset=5.0, scale=2.0)]),
    Spec("Thermometer", "T", (), "float64", 13, units="K"),
    Spec("Volume", "voxels", (4, 3, 2), "int32", 5, units="V"),
]
EMPTY = [
    Spec("Spectrometer", "dark", (32,), "float64", 0),  # next to channels with frames
    Spec("Idle", "never", (), "float64", 0),  # a detector with no frame at all
]


@dataclass
class Recording:
    path: Path
    frames: dict[str, npt.NDArray[Any]]
    times: dict[str, npt.NDArray[np.float64]]
    specs: dict[str, Spec]


def frames_for(spec: Spec, index: int) -> npt.NDArray[Any]:
    rng = np.random.default_rng(index)
    return (rng.random((spec.frames, *spec.shape)) * 1000).astype(spec.dtype)


async def record(path: Path, specs: list[Spec], *, compression: str | None = "blosc2-lz4",
                 swmr: bool = True, settings: dict[str, Any] | None = None, backend: str = "h5py") -> Recording:
    frames = {s.key: frames_for(s, i) for i, s in enumerate(specs)}
    times = {s.key: (T0 + i + 0.01 * np.arange(s.frames)).astype(np.float64) for i, s in enumerate(specs)}
    async with streamsave.open_saver(path, compression=compression, swmr=swmr, backend=backend) as saver:
        detectors: dict[str, streamsave.Detector] = {}
        channels = []
        for s in specs:
            if s.detector not in detectors:
                detectors[s.detector] = saver.add_detector(s.detector, settings=settings)
            channels.append(detectors[s.detector].add_channel(
                s.name, shape=s.shape, dtype=s.dtype, units=s.units, axes=s.axes))
        for i in range(max(s.frames for s in specs)):  # interleaved, each at its own rate
            for s, ch in zip(specs, channels, strict=True):
                if i < s.frames:
                    frame = frames[s.key][i]
                    await ch.push(frame.item() if frame.ndim == 0 else frame, timestamp=float(times[s.key][i]))
    return Recording(path, frames, times, {s.key: s for s in specs})


def freeze(path: Path) -> str:
    """Make the file read-only and return its hash."""
    os.chmod(path, 0o444)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_nodes(loader: Any) -> dict[str, str]:
    """``{"Detector/channel": path}`` of every data node PyMoDAQ's loader walks to."""
    found = {}
    for node in loader.walk_nodes("/"):
        if node.attrs.get("data_type") == "data_enlargeable":
            found[f"{node.attrs['origin']}/{node.attrs['TITLE']}"] = node.path
    return found


def check_dwa(dwa: Any, rec: Recording, key: str) -> None:
    """One loaded channel: the data pushed, one time axis, the declared axes."""
    spec, frames, times = rec.specs[key], rec.frames[key], rec.times[key]
    assert (dwa.origin, dwa.name) == (spec.detector, spec.name)
    assert dwa.units == spec.units
    assert len(dwa) == 1
    loaded = np.asarray(dwa[0])
    assert loaded.dtype == np.dtype(spec.dtype)
    np.testing.assert_array_equal(loaded.reshape(frames.shape), frames)
    assert loaded.shape[0] == spec.frames
    time_axes = [a for a in dwa.axes if a.label == "time"]
    assert len(time_axes) == 1, f"{key}: {len(time_axes)} time axes"
    assert [a for a in dwa.axes if a.index == 0] == time_axes
    assert time_axes[0].units == "s"
    np.testing.assert_array_equal(time_axes[0].get_data(), times)
    for i, declared in enumerate(spec.axes, start=1):
        (axis,) = [a for a in dwa.axes if a.index == i]
        assert (axis.label, axis.units) == (declared.label, declared.units)
        np.testing.assert_allclose(axis.get_data(), declared.coordinates(spec.shape[i - 1]))
    named = [a for a in dwa.axes if a.label]
    assert len(named) == 1 + len(spec.axes)


# ------------------------------------------------------------------ PyMoDAQ


@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "noswmr"])
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_pymodaq_loader_by_path(tmp_path: Path, compression: str | None, swmr: bool) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    rec = await record(tmp_path / "run.h5", SPECS, compression=compression, swmr=swmr)
    digest = freeze(rec.path)
    with DataLoader(rec.path) as loader:
        nodes = data_nodes(loader)
        assert set(nodes) == set(rec.specs)
        for key, node in nodes.items():
            check_dwa(loader.load_data(node), rec, key)
        loaded = loader.load_all("/RawData")  # the whole tree, as the browser's "plot all"
        assert len([d for d in loaded.data if d.name == "image"]) == 1
    assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("backend", ["h5py", "tables"])
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_pymodaq_browser_and_saver(tmp_path: Path, compression: str | None, backend: str) -> None:
    """H5BrowserUtil and an H5SaverLowLevel opened read-only, with each of PyMoDAQ's
    local backends (PyTables is its default)."""
    pytest.importorskip("pymodaq_data")
    pytest.importorskip(backend)
    from pymodaq_data.h5modules.browsing import H5BrowserUtil
    from pymodaq_data.h5modules.data_saving import DataLoader
    from pymodaq_data.h5modules.saving import H5SaverLowLevel

    rec = await record(tmp_path / "run.h5", SPECS, compression=compression)
    digest = freeze(rec.path)
    browser = H5BrowserUtil(backend=backend)
    browser.open_file(rec.path, "r")
    try:
        loader = DataLoader(browser)
        nodes = data_nodes(loader)
        assert set(nodes) == set(rec.specs)
        for key, node in nodes.items():
            check_dwa(loader.load_data(node), rec, key)
        logger = browser.get_node("/RawData/Logger")
        assert type(logger).__name__ == "StringARRAY"
        assert list(logger.read()) == []  # no row, so nothing for PyMoDAQ to unpickle
        for det in ("Detector000", "Detector001"):
            _, settings, _, _ = browser.get_h5_attributes(f"/RawData/{det}")
            assert len(settings) == 1
            ElementTree.fromstring(settings[0])
    finally:
        browser.close_file()
    saver = H5SaverLowLevel(backend=backend)
    saver.init_file(rec.path, mode="r")
    try:
        loader = DataLoader(saver)
        for key, node in data_nodes(loader).items():
            check_dwa(loader.load_data(node), rec, key)
    finally:
        saver.close_file()
    assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "noswmr"])
async def test_channels_without_frames_are_removed(tmp_path: Path, swmr: bool) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    # the first detector has no frame at all; the empty "dark" is its Data1D group's CH00
    order = [EMPTY[1], EMPTY[0], *SPECS]
    rec = await record(tmp_path / "run.h5", order, swmr=swmr)
    with h5py.File(rec.path, "r") as f:
        raw = f["RawData"]
        det = {raw[k].attrs["TITLE"]: raw[k] for k in raw if k.startswith("Detector")}
        idle, spectro = det["Idle"], det["Spectrometer"]
        assert (idle.name, spectro.name) == ("/RawData/Detector000", "/RawData/Detector001")
        assert raw.attrs["default"] == "Detector001"
        assert json.loads(spectro.attrs["empty_channels"])["data"] == "['dark']"
        assert json.loads(idle.attrs["empty_channels"])["data"] == "['never']"
        assert "empty_channels" not in det["Camera"].attrs
        assert sorted(spectro["Data1D"]) == ["CH01", "CH02"]
        assert spectro["Data1D"].attrs["default"] == "CH01"
        assert list(idle) == [] and "default" not in idle.attrs
        assert ElementTree.fromstring(idle.attrs["settings"]).tag == "settings"
    digest = freeze(rec.path)
    with DataLoader(rec.path) as loader:
        nodes = data_nodes(loader)
        assert set(nodes) == {s.key for s in SPECS}
        for key, node in nodes.items():
            check_dwa(loader.load_data(node), rec, key)
        loader.load_all("/RawData")
    assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == digest
    check_nexus_by_hand(rec.path)


async def test_only_empty_channels(tmp_path: Path) -> None:
    """No frame at all: the file still opens in PyMoDAQ, with nothing to load."""
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    async with streamsave.open_saver(tmp_path / "run.h5") as saver:
        saver.add_detector("Idle").add_channel("never", shape=(4,), dtype="uint8")
    digest = freeze(tmp_path / "run.h5")
    with DataLoader(tmp_path / "run.h5") as loader:
        assert data_nodes(loader) == {}
        loader.load_all("/RawData")
    assert hashlib.sha256((tmp_path / "run.h5").read_bytes()).hexdigest() == digest


# ------------------------------------------------------------------ settings

SETTINGS: dict[str, Any] = {
    "exposure_ms": 1.5, "gain": 3, "cooled": True, "mode": "fast", "empty": "", "nothing": None,
    "roi": {"x0": 0, "width": 512, "binning": [1, 2]}, "nan": float("nan"),
    "has space": "a<b&c", "1st": 1, "has_space": "clash after sanitising", "ctrl": "bell\x07",
    "big": 2**60,
}


def parse_pymodaq_xml(element: ElementTree.Element) -> dict[str, Any]:
    """What pymodaq_gui's ``ioxml.XML_string_to_parameter`` makes of our XML (its
    ``elt_to_dict`` / ``set_txt_from_elt`` conversions, for the types we write), as
    ``{title: value}``. Fails where it would: a duplicate name, an unknown type."""
    out: dict[str, Any] = {}
    names = [child.tag for child in element]
    assert len(names) == len(set(names)), f"duplicate parameter names {names}"
    for child in element:
        kind, text, title = child.get("type"), child.text, child.get("title")
        assert title is not None
        if kind == "group":
            out[title] = parse_pymodaq_xml(child)
        elif kind == "float":
            out[title] = float(text or "")
        elif kind == "int":
            out[title] = int(float(text or ""))
        elif kind == "bool":
            out[title] = bool(int(text or ""))
        else:
            assert kind == "str", kind
            out[title] = text or ""
    return out


def expected_xml_values(settings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out[key] = expected_xml_values(value)
        elif value is None or isinstance(value, list) or (isinstance(value, int) and value > 2**53):
            out[key] = json.dumps(value)
        else:
            out[key] = value.replace("\x07", "\ufffd") if isinstance(value, str) else value
    return out


def same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN == NaN here


async def test_settings_as_pymodaq_xml(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.browsing import H5BrowserUtil

    rec = await record(tmp_path / "run.h5", SPECS[:1], settings=SETTINGS)
    freeze(rec.path)
    browser = H5BrowserUtil(backend="h5py")
    browser.open_file(rec.path, "r")
    try:
        attrs, settings, _, _ = browser.get_h5_attributes("/RawData/Detector000")
    finally:
        browser.close_file()
    assert len(settings) == 1  # every attribute named *settings* must be parameter XML
    root = ElementTree.fromstring(settings[0])
    assert (root.tag, root.get("type")) == ("settings", "group")
    assert same(parse_pymodaq_xml(root), expected_xml_values(SETTINGS))
    assert same(json.loads(attrs["params_json"]), SETTINGS)


async def test_large_settings_go_to_datasets(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.browsing import H5BrowserUtil
    from pymodaq_data.h5modules.data_saving import DataLoader

    large = {"lut": list(range(20_000)), "name": "x" * 70_000}
    assert len(json.dumps(large)) > 64 * 1024
    rec = await record(tmp_path / "run.h5", SPECS[:2], settings=large)
    digest = freeze(rec.path)
    with h5py.File(rec.path, "r") as f:
        det = f["RawData/Detector000"]
        stub = ElementTree.fromstring(det.attrs["settings"])
        assert parse_pymodaq_xml(stub) == {"stored_in_dataset": "Settings"}
        assert det.attrs["params_dataset"] == "ParamsJSON"
        assert json.loads(det["ParamsJSON"][()].tobytes()) == large
        xml = ElementTree.fromstring(det["Settings"][()].tobytes().decode())
        assert parse_pymodaq_xml(xml) == expected_xml_values(large)
    with DataLoader(rec.path) as loader:
        nodes = data_nodes(loader)
        assert set(nodes) == {s.key for s in SPECS[:2]}
        for key, node in nodes.items():
            check_dwa(loader.load_data(node), rec, key)
        loader.load_all("/RawData")
    browser = H5BrowserUtil(backend="h5py")
    browser.open_file(rec.path, "r")
    try:
        assert len(browser.get_h5_attributes("/RawData/Detector000")[1]) == 1
    finally:
        browser.close_file()
    assert hashlib.sha256(rec.path.read_bytes()).hexdigest() == digest


# ------------------------------------------------------------------ NeXus


def check_nexus_by_hand(path: Path) -> None:
    """The NXdata rules (NeXus 2014 axes): @signal names a dataset, @axes has one entry
    per signal dimension, each named axis is 1-D, as long as its dimension, and its
    @AXISNAME_indices says which; the @default chain from the root reaches an NXdata."""
    with h5py.File(path, "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        node: Any = f
        while node.attrs.get("NX_class") != "NXdata":
            node = node[node.attrs["default"]]
        assert f["RawData"].attrs["NX_class"] == "NXentry"
        groups: list[h5py.Group] = []
        f.visititems(lambda _, o: groups.append(o) if o.attrs.get("NX_class") == "NXdata" else None)
        assert groups
        for g in groups:
            signal = g[g.attrs["signal"]]
            axes = list(g.attrs["axes"])
            assert len(axes) == signal.ndim, g.name
            for dim, name in enumerate(axes):
                if name == ".":
                    continue
                assert int(g.attrs[f"{name}_indices"]) == dim
                assert g[name].ndim == 1 and g[name].shape[0] == signal.shape[dim]
            parent = g.parent
            while parent.name != "/":  # every group above is in some default chain
                assert parent.attrs["default"] in parent, parent.name
                parent = parent.parent


@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "noswmr"])
async def test_nexus(tmp_path: Path, swmr: bool) -> None:
    rec = await record(tmp_path / "run.h5", SPECS, swmr=swmr)
    freeze(rec.path)
    check_nexus_by_hand(rec.path)
    silx_nxdata = pytest.importorskip("silx.io.nxdata")
    with h5py.File(rec.path, "r") as f:
        default = silx_nxdata.get_default(f)
        assert default is not None and default.group.name == "/RawData/Detector000/Data2D/CH00"
        for key, group in channel_groups(f).items():
            nx = silx_nxdata.NXdata(group)
            assert nx.is_valid, (key, nx.issues)
            assert nx.signal.name == group.name + "/EnlData00"
            np.testing.assert_array_equal(nx.axes[0], rec.times[key])
            for i, declared in enumerate(rec.specs[key].axes, start=1):
                assert nx.axes_names[i] == declared.label
            assert silx_nxdata.get_default(group.parent.parent) is not None  # the detector
        assert silx_nxdata.NXdata(f["RawData/Detector000/Data2D/CH00"]).is_image


def channel_groups(f: h5py.File) -> dict[str, h5py.Group]:
    found: dict[str, h5py.Group] = {}
    f.visititems(lambda _, o: found.setdefault(f"{o.attrs['origin']}/{o.attrs['TITLE']}", o)
                 if o.attrs.get("type") == "ch" else None)
    return found


# ------------------------------------------------------------------ plain h5py

READER = textwrap.dedent("""
    import sys
    import h5py, hdf5plugin, numpy as np
    path, expected = sys.argv[1], np.load(sys.argv[2])
    seen = set()
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and obj.attrs.get("type") == "ch":
                key = obj.attrs["origin"] + "/" + obj.attrs["TITLE"]
                seen.add(key)
                frames = expected["frames:" + key]
                data = obj["EnlData00"]
                assert data.shape[0] == len(frames), (key, data.shape)
                for i in range(len(frames)):  # every frame, one by one
                    assert np.array_equal(data[i].reshape(frames[i].shape), frames[i]), (key, i)
                (time,) = [obj[k] for k in obj if obj[k].attrs.get("label") == "time"]
                assert np.array_equal(time[()], expected["times:" + key]), key
        f.visititems(visit)
    assert seen == {k[len("frames:"):] for k in expected.files if k.startswith("frames:")}, seen
    assert "streamsave" not in sys.modules
    print("ok", len(seen))
""")


@pytest.mark.parametrize("swmr", [True, False], ids=["swmr", "noswmr"])
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_plain_h5py_in_another_process(tmp_path: Path, compression: str | None, swmr: bool) -> None:
    rec = await record(tmp_path / "run.h5", [*SPECS, *EMPTY], compression=compression, swmr=swmr)
    expected = tmp_path / "expected.npz"
    arrays = {f"frames:{k}": v for k, v in rec.frames.items() if len(v)}
    arrays |= {f"times:{k}": v for k, v in rec.times.items() if len(v)}
    np.savez(expected, **arrays)  # type: ignore[arg-type]
    freeze(rec.path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with anyio.fail_after(60):
        done = await anyio.run_process([sys.executable, "-c", READER, str(rec.path), str(expected)],
                                       check=False, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["ok", str(len(SPECS))]
