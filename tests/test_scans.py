"""Scans: grid and adaptive, stored by point as PyMoDAQ's DAQ_Scan stores them, checked
against a file PyMoDAQ's own extended saver writes, loaded by PyMoDAQ's DataLoader, and
read back with plain h5py and with ``run.scans``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import numpy.typing as npt
import pytest

import streamsave
from streamsave.backends.h5py import H5pyBackend
from tests import _scan_killed_writer

XS = np.linspace(0.0, 1.0, 3)
YS = np.linspace(-2.0, 2.0, 5)
COMPRESSIONS = [None, "blosc2-lz4"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:The axis requested with index"),
    pytest.mark.filterwarnings("ignore:The specified dimensionality is not coherent"),
]


def grid_axes() -> list[streamsave.Axis]:
    return [streamsave.Axis("x", units="mm", values=XS), streamsave.Axis("y", units="mm", values=YS)]


def image_at(ix: int, iy: int, rep: int = 0) -> npt.NDArray[np.float64]:
    return np.full((4, 6), 100.0 * rep + 10.0 * ix + iy) + np.arange(6)


MEASURED = [(ix, iy) for ix in range(3) for iy in range(5) if (ix, iy) != (2, 4)]  # (2, 4) never measured


async def record_grid(path: Path, *, compression: str | None = None, average: int = 1, swmr: bool = True,
                      order: list[tuple[int, int]] | None = None) -> None:
    async with streamsave.open_saver(path, compression=compression, swmr=swmr) as saver:
        scan = saver.add_scan("Scan", axes=grid_axes(), average=average)
        det = scan.add_detector("Camera", settings={"exposure_ms": 2.5})
        image = det.add_channel("image", shape=(4, 6), units="counts",
                                axes=[streamsave.Axis("row", units="px", values=np.arange(4.0))])
        temperature = det.add_channel("T", units="K")
        for rep in range(average):
            for ix, iy in order or MEASURED:
                await image.push(image_at(ix, iy, rep), index=(ix, iy))
                await temperature.push(300.0 + ix + iy / 10 + rep, index=(ix, iy))


def pymodaq_reference(path: Path) -> None:
    """The same scan written by PyMoDAQ's own DAQ_Scan savers (pymodaq-data)."""
    from pymodaq_data.data import Axis, DataRaw, DataToExport
    from pymodaq_data.h5modules.data_saving import DataToExportExtendedSaver
    from pymodaq_data.h5modules.saving import H5SaverLowLevel

    h5 = H5SaverLowLevel(backend="h5py")
    h5.init_file(path, new_file=True)
    scan = h5.add_scan_group(h5.raw_group, title="Scan", settings_as_xml="<settings/>")
    det = h5.add_det_group(scan, title="Camera", settings_as_xml="<settings/>")
    saver = DataToExportExtendedSaver(h5, extended_shape=(3, 5))
    saver.add_nav_axes(scan, [Axis("x", units="mm", data=XS, index=0), Axis("y", units="mm", data=YS, index=1)])
    for ix, iy in MEASURED:
        dte = DataToExport("d", data=[
            DataRaw("image", data=[image_at(ix, iy)], units="counts",
                    axes=[Axis("row", units="px", data=np.arange(4.0), index=0)]),
            DataRaw("T", data=[np.array([300.0 + ix + iy / 10])], units="K")])
        saver.add_data(det, dte, indexes=(ix, iy))
    h5.close_file()


def tree(path: Path) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    found: dict[str, tuple[str, tuple[int, ...] | None]] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(
            name, ("dataset", obj.shape) if isinstance(obj, h5py.Dataset) else ("group", None)))
    return found


def plain(value: Any) -> Any:
    """An attribute as PyMoDAQ reads it: its JSON envelope's data, or the raw text."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith('{"module"'):
        return json.loads(value)["data"].strip("'")
    return value


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_grid_layout_matches_pymodaq_extended_saver(tmp_path: Path, compression: str | None) -> None:
    pytest.importorskip("pymodaq_data")
    ours, theirs = tmp_path / "ours.h5", tmp_path / "theirs.h5"
    await record_grid(ours, compression=compression)
    pymodaq_reference(theirs)
    mine, ref = tree(ours), tree(theirs)
    scan_nodes = {k: v for k, v in ref.items() if k.startswith("RawData/Scan000")}
    assert scan_nodes and all(mine.get(k) == v for k, v in scan_nodes.items()), \
        {k: (v, mine.get(k)) for k, v in scan_nodes.items() if mine.get(k) != v}
    keys = ("CLASS", "TITLE", "data_type", "data_dimension", "distribution", "nav_indexes", "index", "label",
            "units", "type", "origin", "shape", "size")
    with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
        assert plain(a["RawData/Scan000"].attrs["type"]) == "scan"
        assert plain(a["RawData/Scan000/Detector000"].attrs["type"]) == "detector"
        compared = 0
        for name in scan_nodes:
            for key in keys:
                if key not in b[name].attrs or (key in ("label", "origin") and "/CH" in name):
                    continue  # PyMoDAQ labels data by channel number, and names the DataToExport as origin
                assert plain(a[name].attrs[key]) == plain(b[name].attrs[key]), (name, key)
                compared += 1
        assert compared >= 59  # every attribute of those names PyMoDAQ wrote
        det = "RawData/Scan000/Detector000"
        for name in (f"{det}/Data2D/CH00/Data00", f"{det}/Data0D/CH00/Data00"):
            np.testing.assert_array_equal(a[name][()], b[name][()])  # the values, and NaN where never measured
            assert np.isnan(a[name][2, 4]).all()
        assert a["RawData/Scan000/Detector000/Data2D/CH00/Data00"].chunks == (1, 5, 4, 6)  # points along y


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_pymodaq_loader_loads_grid_scans_with_their_navigation_axes(tmp_path: Path,
                                                                         compression: str | None) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "scan.h5"
    await record_grid(path, compression=compression)
    os.chmod(path, 0o444)
    with DataLoader(path) as loader:
        image = loader.load_data("/RawData/Scan000/Detector000/Data2D/CH00/Data00")
        temperature = loader.load_data("/RawData/Scan000/Detector000/Data0D/CH00/Data00")
    assert image.shape == (3, 5, 4, 6) and tuple(image.nav_indexes) == (0, 1)
    assert (image.name, image.units, temperature.units) == ("image", "counts", "K")
    nav = {a.label: a for a in image.axes if a.index in (0, 1)}
    assert (nav["x"].units, nav["x"].index, nav["y"].index) == ("mm", 0, 1)
    np.testing.assert_allclose(nav["x"].get_data(), XS)
    np.testing.assert_allclose(nav["y"].get_data(), YS)
    (row,) = [a for a in image.axes if a.label == "row"]
    assert row.index == 2
    for ix, iy in MEASURED:
        np.testing.assert_array_equal(image[0][ix, iy], image_at(ix, iy))
        assert temperature[0][ix, iy] == pytest.approx(300.0 + ix + iy / 10)
    assert np.isnan(temperature[0][2, 4])


async def test_several_scans_and_continuous_channels_in_one_file(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "scans.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        live = saver.add_detector("Thermometer").add_channel("T", units="K")
        first = saver.add_scan("Coarse", axes=[streamsave.Axis("x", values=np.arange(4.0))])
        second = saver.add_scan("Fine", axes=[streamsave.Axis("x", values=np.arange(8.0) / 2)])
        a = first.add_detector("Diode").add_channel("signal")
        b = second.add_detector("Diode").add_channel("signal")
        for i in range(8):
            await live.push(float(i))
            if i < 4:
                await a.push(float(i), index=(i,))
            await b.push(float(-i), index=(i,))
    with h5py.File(path, "r") as f:
        assert [k for k in f["RawData"] if k.startswith("Scan")] == ["Scan000", "Scan001"]
        assert [plain(f[f"RawData/{k}"].attrs["TITLE"]) for k in ("Scan000", "Scan001")] == ["Coarse", "Fine"]
        assert plain(f["RawData/Scan000"].attrs["scan_done"]) == "True"
    with DataLoader(path) as loader:
        coarse = loader.load_data("/RawData/Scan000/Detector000/Data0D/CH00/Data00")
        fine = loader.load_data("/RawData/Scan001/Detector000/Data0D/CH00/Data00")
        cont = loader.load_data("/RawData/Detector000/Data0D/CH00/EnlData00")
    np.testing.assert_array_equal(coarse[0], np.arange(4.0))
    np.testing.assert_array_equal(fine[0], -np.arange(8.0))
    assert [a.size for a in fine.axes if a.index == 0] == [8]
    assert len(cont[0]) == 8
    with streamsave.open_reader(path) as run:
        assert list(run.scans) == ["Coarse", "Fine"]
        assert list(run.channels) == ["Thermometer/T"]
        np.testing.assert_array_equal(run.scans["Fine"].channels["Diode/signal"][:], -np.arange(8.0))


async def test_points_in_any_order_across_flushes_are_stored_exactly(tmp_path: Path) -> None:
    """Small frames share chunks (points along the last axis), filled in random order,
    flushed (stored raw, partly filled) and completed later, compressed and not."""
    rng = np.random.default_rng(3)
    shape = (6, 50)
    for compression in COMPRESSIONS:
        path = tmp_path / f"random-{compression}.h5"
        order = [divmod(int(p), shape[1]) for p in rng.permutation(shape[0] * shape[1])][:-7]
        async with streamsave.open_saver(path, compression=compression, chunk_bytes=800, queue_size=16) as saver:
            scan = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(shape[0])),
                                             streamsave.Axis("y", values=np.arange(shape[1]))])
            spectrum = scan.add_detector("D").add_channel("s", shape=(8,), dtype="int32")
            assert spectrum.chunk_shape == (1, 25, 8)
            for n, (ix, iy) in enumerate(order):
                await spectrum.push(np.arange(8, dtype="int32") + 1000 * ix + iy, index=(ix, iy),
                                    timestamp=1e9 + n)
                if n % 37 == 0:
                    await saver.flush()
        st = spectrum.statistics()
        assert st.frames_pushed == st.frames_written == len(order)
        with h5py.File(path, "r") as f:
            data = f["RawData/Scan000/Detector000/Data1D/CH00/Data00"][()]
            times = f["RawData/Scan000/Detector000/Data1D/CH00/Timestamps"][()]
        expected = np.zeros((*shape, 8), dtype="int32")  # integer data: never measured is 0
        expected_times = np.full(shape, np.nan)
        for n, (ix, iy) in enumerate(order):
            expected[ix, iy] = np.arange(8) + 1000 * ix + iy
            expected_times[ix, iy] = 1e9 + n
        np.testing.assert_array_equal(data, expected)
        np.testing.assert_array_equal(times, expected_times)


async def test_averaging_fills_every_repetition_of_every_channel(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "average.h5"
    await record_grid(path, average=3, compression="blosc2-lz4")
    with h5py.File(path, "r") as f:
        image = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"]
        temperature = f["RawData/Scan000/Detector000/Data0D/CH00/Data00"]
        assert image.shape == (3, 3, 5, 4, 6) and temperature.shape == (3, 3, 5)
        for rep in range(3):
            for ix, iy in MEASURED:  # no repetition of any channel is left empty
                np.testing.assert_array_equal(image[rep, ix, iy], image_at(ix, iy, rep))
                assert temperature[rep, ix, iy] == pytest.approx(300.0 + ix + iy / 10 + rep)
        nav = f["RawData/Scan000/NavAxes"]
        assert [(plain(nav[k].attrs["label"]), plain(nav[k].attrs["index"])) for k in nav] == \
            [("x", "1"), ("y", "2"), ("Average", "0")]
    with DataLoader(path) as loader:
        loaded = loader.load_data("/RawData/Scan000/Detector000/Data2D/CH00/Data00")
    assert loaded.shape == (3, 3, 5, 4, 6) and tuple(loaded.nav_indexes) == (0, 1, 2)
    assert sorted(a.label for a in loaded.axes if a.index in (0, 1, 2)) == ["Average", "x", "y"]
    with streamsave.open_reader(path) as run:
        scan = run.scans["Scan"]
        assert (scan.average, scan.shape) == (3, (3, 3, 5))
        mean = scan.channels["Camera/image"].mean()
        np.testing.assert_allclose(mean[1, 2], image_at(1, 2, 1))  # the mean of repetitions 0, 1, 2


async def test_adaptive_scans_record_positions_pymodaq_loads_as_spread_axes(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "adaptive.h5"
    rng = np.random.default_rng(5)
    positions = rng.uniform(-1, 1, size=(300, 2))
    async with streamsave.open_saver(path, compression="blosc2-lz4", flush_interval=0.01) as saver:
        scan = saver.add_scan("Adaptive", axes=[streamsave.Axis("x", units="mm"), streamsave.Axis("y", units="mm")])
        det = scan.add_detector("Camera")
        spectrum = det.add_channel("spectrum", shape=(16,), units="counts")
        signal = det.add_channel("signal", units="V")
        det.add_channel("unused")  # never pushed: removed at close, the file stays loadable
        for n, (x, y) in enumerate(positions):
            await spectrum.push(np.full(16, float(n)), position=(x, y), timestamp=2e9 + n)
            if n % 2 == 0:  # another rate: a channel's points are its own
                await signal.push(x * y, position=[x, y])
            if n == 150:
                await saver.flush()
    with DataLoader(path) as loader:
        loaded = loader.load_data("/RawData/Scan000/Detector000/Data1D/CH00/EnlData00")
        small = loader.load_data("/RawData/Scan000/Detector000/Data0D/CH00/EnlData00")
    assert loaded.distribution.name == "spread" and loaded.shape == (300, 16)
    nav = sorted((a for a in loaded.axes if a.index == 0), key=lambda a: a.spread_order)
    assert [(a.label, a.units) for a in nav] == [("x", "mm"), ("y", "mm")]
    np.testing.assert_array_equal(np.stack([a.get_data() for a in nav], axis=1), positions)
    assert small.shape == (150,)
    with streamsave.open_reader(path) as run:
        scan_r = run.scans["Adaptive"]
        assert scan_r.adaptive and [a.label for a in scan_r.axes] == ["x", "y"]
        assert set(scan_r.channels) == {"Camera/spectrum", "Camera/signal"}
        ch = scan_r.channels["Camera/spectrum"]
        assert ch.shape == (300,) and ch.frame_shape == (16,)
        np.testing.assert_array_equal(ch.positions, positions)
        np.testing.assert_array_equal(ch[7], np.full(16, 7.0))
        np.testing.assert_array_equal(ch.timestamps, 2e9 + np.arange(300))
        sig = scan_r.channels["Camera/signal"]
        np.testing.assert_allclose(sig[:], positions[::2, 0] * positions[::2, 1])


async def test_timestamps_per_point_given_and_default(tmp_path: Path) -> None:
    path = tmp_path / "times.h5"
    before = time.time()
    async with streamsave.open_saver(path) as saver:
        ch = saver.add_scan("S", axes=[streamsave.Axis("x", values=[0.0, 1.0, 2.0])]).add_detector("D") \
            .add_channel("v")
        await ch.push(1.0, index=(2,), timestamp=123.5)
        await ch.push(2.0, index=(0,))
    with streamsave.open_reader(path) as run:
        times = run.scans["S"].channels["D/v"].timestamps
        measured = run.scans["S"].channels["D/v"].measured
    assert times is not None and times[2] == 123.5 and np.isnan(times[1]) and times[0] >= before
    assert measured.tolist() == [True, False, True]


async def test_overwrite_replaces_a_point(tmp_path: Path) -> None:
    path = tmp_path / "overwrite.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        ch = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(10.0))], overwrite=True) \
            .add_detector("D").add_channel("v")
        assert ch.chunk_shape == (1,)  # a point that may be replaced is its own chunk
        for i in range(10):
            await ch.push(float(i), index=(i,))
        await saver.flush()
        await ch.push(-3.0, index=(3,))
        await ch.push(-4.0, index=(3,))
    with h5py.File(path, "r") as f:
        data = f["RawData/Scan000/Detector000/Data0D/CH00/Data00"][()]
    assert data.tolist() == [0, 1, 2, -4, 4, 5, 6, 7, 8, 9]
    assert ch.statistics().frames_written == 12


# ------------------------------------------------------------------ bad input


async def test_bad_points_raise_typed_errors_and_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    async with streamsave.open_saver(path) as saver:
        scan = saver.add_scan("S", axes=grid_axes(), average=2)
        image = scan.add_detector("Camera").add_channel("image", shape=(4, 6))
        adaptive = saver.add_scan("A", axes=[streamsave.Axis("x"), streamsave.Axis("y")])
        moving = adaptive.add_detector("Stage").add_channel("v")
        await image.push(image_at(0, 0), index=(0, 0))
        await moving.push(1.0, position=(0.5, 0.25))
        cases: list[tuple[Any, str]] = [
            (image.push(image_at(0, 0), index=(3, 0)), r"'S/Camera/image'.*\(3, 0\) is outside the grid.*0\.\.2"),
            (image.push(image_at(0, 0), index=(0, -1)), r"outside the grid: entry 1 must be in 0\.\.4"),
            (image.push(image_at(0, 0), index=(0,)), r"index \(0,\) has 1 entries.*expected 2"),
            (image.push(image_at(0, 0), index=(0, 1, 2)), r"has 3 entries.*expected 2"),
            (image.push(image_at(0, 0), index=(0.0, 1)), r"entry 0 must be an integer, got 0\.0"),
            (image.push(image_at(0, 0)), r"needs index="),
            (image.push(image_at(0, 0), position=(0.0, 1.0)), r"is a grid: give index="),
            (moving.push(1.0, position=(0.5,)), r"'A/Stage/v'.*position \(0\.5,\) has 1 values.*expected 2"),
            (moving.push(1.0, position=(0.5, 1.0, 2.0)), r"has 3 values.*expected 2"),
            (moving.push(1.0, position=(0.5, float("nan"))), r"must be finite"),
            (moving.push(1.0, index=(0, 1)), r"is adaptive: give position="),
        ]
        for coro, match in cases:
            with pytest.raises(streamsave.ScanPointError, match=match):
                await coro
        await image.push(image_at(0, 0, 1), index=(0, 0))  # the second repetition
        with pytest.raises(streamsave.ScanPointError, match=r"point \(0, 0\) was already measured 2 times"):
            await image.push(image_at(0, 0), index=(0, 0))
        with pytest.raises(streamsave.FrameMismatchError):
            await image.push(np.zeros((3, 3)), index=(1, 1))
        await image.push(image_at(1, 1), index=(1, 1))  # the refused frame did not take the point
        with pytest.raises(streamsave.FrameMismatchError, match="push_many is not available"):
            await image.push_many(np.zeros((2, 4, 6)))
        scan.finish()
        with pytest.raises(streamsave.ScanFinishedError, match=r"scan 'S' is finished"):
            await image.push(image_at(2, 2), index=(2, 2))
        assert issubclass(streamsave.ScanFinishedError, streamsave.ScanPointError)
        assert issubclass(streamsave.ScanPointError, ValueError)
    st = image.statistics()
    assert (st.frames_pushed, st.frames_written, st.frames_dropped) == (3, 3, 0)
    with h5py.File(path, "r") as f:
        data = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"]
        np.testing.assert_array_equal(data[0, 0, 0], image_at(0, 0))
        np.testing.assert_array_equal(data[1, 0, 0], image_at(0, 0, 1))
        np.testing.assert_array_equal(data[0, 1, 1], image_at(1, 1))
        assert np.isnan(data[1, 1, 1]).all() and np.isnan(data[0, 2, 2]).all()
        assert f["RawData/Scan001/Detector000/Data0D/CH00/EnlData00"][()].tolist() == [[1.0]]


async def test_bad_scan_declarations(tmp_path: Path) -> None:
    async with streamsave.open_saver(tmp_path / "decl.h5") as saver:
        with pytest.raises(streamsave.ConfigError, match="one or more Axis"):
            saver.add_scan("S", axes=[])
        with pytest.raises(streamsave.ConfigError, match=r"values to every axis.*1 of 2"):
            saver.add_scan("S", axes=[streamsave.Axis("x", values=[1, 2]), streamsave.Axis("y")])
        with pytest.raises(streamsave.ConfigError, match="average must be a positive integer"):
            saver.add_scan("S", axes=grid_axes(), average=0)
        with pytest.raises(streamsave.ConfigError, match="needs a grid scan"):
            saver.add_scan("S", axes=[streamsave.Axis("x")], average=2)
        scan = saver.add_scan("S", axes=grid_axes())
        with pytest.raises(streamsave.ConfigError, match="already exists"):
            saver.add_scan("S", axes=grid_axes())
        with pytest.raises(streamsave.ConfigError, match="cannot drop frames"):
            scan.add_detector("D").add_channel("c", overflow="drop_oldest")
        with pytest.raises(streamsave.ConfigError, match=r"settings of .* bytes .* too large"):
            saver.add_scan("Big", axes=grid_axes(), settings={"blob": "x" * 70_000})
        with pytest.raises(streamsave.ConfigError, match="too large"):
            scan.add_detector("Big", settings={"blob": "x" * 70_000})
        with pytest.raises(streamsave.ConfigError, match="fill_value"):
            scan.detectors["D"].add_channel("c", dtype="int16", fill_value="x")  # type: ignore[arg-type]


async def test_frame_numbers_and_metadata_are_refused_on_scan_points(tmp_path: Path) -> None:
    """A scan point is identified by its index: a frame number or metadata given to a scan
    channel is refused with the typed error of continuous channels, and the point stays free."""
    async with streamsave.open_saver(tmp_path / "cols.h5") as saver:
        ch = saver.add_scan("S", axes=grid_axes()).add_detector("D").add_channel("c", dtype="float64")
        with pytest.raises(streamsave.FrameNumberError, match=r"'S/D/c'.*frame_number=7.*index="):
            await ch.push(1.0, index=(0, 0), frame_number=7)
        with pytest.raises(streamsave.MetadataError, match=r"metadata=\{'exposure': 0.1\}"):
            ch.push_nowait(1.0, index=(0, 0), metadata={"exposure": 0.1})
        await ch.push(2.0, index=(0, 0))
    with h5py.File(tmp_path / "cols.h5") as f:
        assert f["RawData/Scan000/Detector000/Data0D/CH00/Data00"][0, 0] == 2.0


async def test_a_backend_without_direct_chunk_write_refuses_scans_when_declared(tmp_path: Path) -> None:
    """Scan points are stored by direct chunk write: a backend without it (HSDS) is told
    so at add_scan, not by a failed writer later; its continuous channels still work."""
    from streamsave.backends.h5py_rows import H5pyRowsBackend

    async with streamsave.open_saver(tmp_path / "rows.h5", backend=H5pyRowsBackend) as saver:
        with pytest.raises(streamsave.ConfigError, match=r"'h5py-rows' cannot store scan 'S'.*direct chunk write"):
            saver.add_scan("S", axes=grid_axes())
        assert saver.scans == {} or len(saver.scans) == 0
        ch = saver.add_detector("D").add_channel("c", shape=(2,), dtype="float64")
        await ch.push(np.ones(2))
    with h5py.File(tmp_path / "rows.h5") as f:
        assert f["RawData/Detector000/Data1D/CH00/EnlData00"].shape == (1, 2)


async def test_scans_follow_the_swmr_declaration_rule(tmp_path: Path) -> None:
    """Scans are declared before the first push of an SWMR file; with swmr=False a scan
    may start while another is being written."""
    async with streamsave.open_saver(tmp_path / "swmr.h5") as saver:
        ch = saver.add_scan("First", axes=[streamsave.Axis("x", values=[0.0, 1.0])]).add_detector("D") \
            .add_channel("v")
        await ch.push(1.0, index=(0,))
        with pytest.raises(streamsave.LayoutFrozenError, match="scan 'Second'"):
            saver.add_scan("Second", axes=[streamsave.Axis("x", values=[0.0, 1.0])])
    path = tmp_path / "plain.h5"
    async with streamsave.open_saver(path, swmr=False) as saver:
        first = saver.add_scan("First", axes=[streamsave.Axis("x", values=[0.0, 1.0])])
        a = first.add_detector("D").add_channel("v")
        await a.push(1.0, index=(0,))
        await saver.flush()
        first.finish()
        b = saver.add_scan("Second", axes=[streamsave.Axis("x", values=[0.0, 1.0])]).add_detector("D") \
            .add_channel("v")
        await b.push(2.0, index=(1,))
    with streamsave.open_reader(path) as run:
        assert np.isnan(run.scans["First"].channels["D/v"][1])
        assert run.scans["Second"].channels["D/v"][1] == 2.0


async def test_a_live_reader_sees_every_flushed_point(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4", flush_interval=60) as saver:
        scan = saver.add_scan("S", axes=grid_axes())
        ch = scan.add_detector("D").add_channel("v")
        for ix, iy in MEASURED[:7]:
            await ch.push(float(10 * ix + iy), index=(ix, iy))
        assert (await saver.flush())["S/D/v"] == 7

        def read() -> npt.NDArray[Any]:
            with streamsave.open_reader(path) as run:
                assert run.live
                return run.scans["S"].channels["D/v"][...]

        seen = await anyio.to_thread.run_sync(read)
        for ix, iy in MEASURED[:7]:
            assert seen[ix, iy] == 10 * ix + iy
        assert int(np.isnan(seen).sum()) == 15 - 7


def test_a_killed_scan_writer_keeps_every_flushed_point(tmp_path: Path) -> None:
    """SIGKILL a scan writer after a flush: an SWMR reader finds every point that flush
    made durable, in its place, and nothing else."""
    path = tmp_path / "killed.h5"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    script = Path(_scan_killed_writer.__file__)
    proc = subprocess.Popen([sys.executable, str(script), str(path), "swmr", "blosc2-lz4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    durable: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            durable = json.loads(line)
            if min(durable.values()) >= 60:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    count = durable["Scan/Camera/value"]
    assert count >= 60 and durable["Scan/Camera/image"] >= 60
    with h5py.File(path, "r", swmr=True) as f:
        image = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"][()]
        value = f["RawData/Scan000/Detector000/Data0D/CH00/Data00"][()]
    for ix, iy in _scan_killed_writer.order()[:count]:
        p = ix * _scan_killed_writer.SHAPE[1] + iy
        assert value[ix, iy] == p + 1
        assert (image[ix, iy] == p + 1).all()
    assert int((~np.isnan(value)).sum()) >= count


async def test_backpressure_and_accounting_with_a_small_queue(tmp_path: Path) -> None:
    path = tmp_path / "queue.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        ch = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(40.0)),
                                       streamsave.Axis("y", values=np.arange(30.0))]) \
            .add_detector("Camera").add_channel("image", shape=(64, 64), dtype="uint16", queue_size=4)
        for ix in range(40):
            for iy in range(30):
                await ch.push(np.full((64, 64), ix * 30 + iy, dtype="uint16"), index=(ix, iy))
    st = ch.statistics()
    assert st.frames_pushed == st.frames_written == 1200 and st.frames_dropped == 0
    assert st.queue_high_water <= 4
    with h5py.File(path, "r") as f:
        data = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"]
        assert data.chunks == (1, 2, 64, 64)  # two points per chunk: half the queue, as for channels
        np.testing.assert_array_equal(data[:, :, 5, 5], np.arange(1200).reshape(40, 30))


def test_the_blocking_facade_scans_from_threads(tmp_path: Path) -> None:
    import threading

    import streamsave.sync

    path = tmp_path / "sync.h5"
    with streamsave.sync.open_saver(path, compression="blosc2-lz4") as saver:
        scan = saver.add_scan("S", axes=grid_axes())
        image = scan.add_detector("Camera").add_channel("image", shape=(4, 6), queue_size=2)
        assert saver.scans["S"] is scan and saver.channels == (image,)

        def push_rows(rows: range) -> None:
            for ix in rows:
                for iy in range(5):
                    image.push(image_at(ix, iy), index=(ix, iy))

        threads = [threading.Thread(target=push_rows, args=(range(i, i + 1),)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(streamsave.ScanPointError, match="already measured"):
            image.push(image_at(0, 0), index=(0, 0))
        assert saver.flush()["S/Camera/image"] == 15
    with streamsave.open_reader(path) as run:
        ch = run.scans["S"].channels["Camera/image"]
        for ix in range(3):
            for iy in range(5):
                np.testing.assert_array_equal(ch[ix, iy], image_at(ix, iy))


class _CountingReads(H5pyBackend):
    reads = 0

    def read_chunk(self, path: str, offset: Any) -> bytes:
        type(self).reads += 1
        return super().read_chunk(path, offset)


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
async def test_random_points_keep_only_a_queue_of_chunks_in_memory(tmp_path: Path, compression: str | None) -> None:
    """Points in a random order leave many chunks partly filled: beyond a queue's worth
    of them, the least recently filled is stored raw and read back when its next point
    comes; every frame still lands in its place."""
    path = tmp_path / "evict.h5"
    shape = (10, 40)
    _CountingReads.reads = 0
    order = [divmod(int(p), shape[1]) for p in np.random.default_rng(11).permutation(shape[0] * shape[1])]
    async with streamsave.open_saver(path, compression=compression, chunk_bytes=32 * 1024,
                                     backend=_CountingReads) as saver:
        scan = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(shape[0])),
                                         streamsave.Axis("y", values=np.arange(shape[1]))])
        image = scan.add_detector("D").add_channel("image", shape=(64, 64), dtype="uint16", queue_size=8)
        assert image.chunk_shape == (1, 4, 64, 64)
        for ix, iy in order:
            await image.push(np.full((64, 64), ix * shape[1] + iy, dtype="uint16"), index=(ix, iy))
    assert _CountingReads.reads > 20  # chunks were let go and read back
    with h5py.File(path, "r") as f:
        data = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"][()]
    np.testing.assert_array_equal(data[:, :, 7, 9], np.arange(shape[0] * shape[1]).reshape(shape))
    assert (data == data[:, :, :1, :1]).all()


@pytest.mark.parametrize("marker", ["saver.add_scan(", "streamsave.save_snapshot("])
def test_the_readme_examples_run(tmp_path: Path, marker: str) -> None:
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if marker in b]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    if "scan" in marker:
        assert "[[0.25 1.5 ]]" in done.stdout and "True" in done.stdout
        with h5py.File(tmp_path / "scan.h5", "r") as f:
            assert f["RawData/Scan000/Detector000/Data2D/CH00/Data00"].shape == (11, 21, 64, 64)
    else:
        assert done.stdout.startswith("/RawData/Detector000")


async def test_a_push_cancelled_while_waiting_leaves_its_point_free(tmp_path: Path, gated: Any) -> None:
    """A push that waits for room and is cancelled has not measured its point: the same
    point can be pushed again, and the file holds that frame."""
    path = tmp_path / "cancel.h5"
    async with streamsave.open_saver(path, backend=gated, queue_size=2) as saver:
        ch = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(6.0))]).add_detector("D") \
            .add_channel("image", shape=(8, 8), queue_size=2)
        await ch.push(np.full((8, 8), 0.0), index=(0,))
        await ch.push(np.full((8, 8), 1.0), index=(1,))
        with anyio.move_on_after(0.2) as scope:  # the writer is held: the queue stays full
            await ch.push(np.full((8, 8), -2.0), index=(2,))
        assert scope.cancelled_caught
        gated.last.gate.set()
        await ch.push(np.full((8, 8), 2.0), index=(2,))
    st = ch.statistics()
    assert (st.frames_pushed, st.frames_written) == (3, 3)
    with h5py.File(path, "r") as f:
        data = f["RawData/Scan000/Detector000/Data2D/CH00/Data00"][()]
    assert data[:3, 0, 0].tolist() == [0.0, 1.0, 2.0] and np.isnan(data[3:]).all()


@pytest.mark.parametrize("backend", ["h5py", "tables"])
async def test_pymodaq_browser_loads_scans_with_each_backend(tmp_path: Path, backend: str) -> None:
    """PyMoDAQ's H5BrowserUtil (PyTables is its default backend) opens a scan file read-only."""
    pytest.importorskip("pymodaq_data")
    pytest.importorskip(backend)
    from pymodaq_data.h5modules.browsing import H5BrowserUtil
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "scan.h5"
    await record_grid(path, compression="blosc2-lz4", average=2)
    os.chmod(path, 0o444)
    browser = H5BrowserUtil(backend=backend)
    browser.open_file(path, "r")
    try:
        loaded = DataLoader(browser).load_data("/RawData/Scan000/Detector000/Data2D/CH00/Data00")
    finally:
        browser.close_file()
    assert loaded.shape == (2, 3, 5, 4, 6)
    np.testing.assert_array_equal(loaded[0][1, 2, 3], image_at(2, 3, 1))


def test_the_reader_reads_pymodaq_scans(tmp_path: Path) -> None:
    """run.scans on a file PyMoDAQ's DAQ_Scan savers wrote: axes from NavAxes, frames by
    point, no timestamps, never-measured points found from their NaNs."""
    pytest.importorskip("pymodaq_data")
    path = tmp_path / "pymodaq.h5"
    pymodaq_reference(path)
    with streamsave.open_reader(path) as run:
        scan = run.scans["Scan"]
        assert scan.shape == (3, 5) and not scan.adaptive and scan.done is None
        assert [(a.label, a.units) for a in scan.axes] == [("x", "mm"), ("y", "mm")]
        assert scan.axes[1].values is not None
        np.testing.assert_allclose(scan.axes[1].values, YS)
        image = scan.channels["Camera/image"]
        assert image.frame_shape == (4, 6) and image.axes[0].label == "row" and image.timestamps is None
        np.testing.assert_array_equal(image[1, 3], image_at(1, 3))
        assert image.measured.sum() == len(MEASURED) and not image.measured[2, 4]
        assert scan.channels["Camera/T"][0, 2] == pytest.approx(300.2)


async def test_scan_channels_report_progress_events(tmp_path: Path) -> None:
    path = tmp_path / "events.h5"
    seen: list[Any] = []
    async with streamsave.open_saver(path, flush_interval=0.05, progress_interval=0.01) as saver:
        ch = saver.add_scan("S", axes=[streamsave.Axis("x", values=np.arange(50.0))]).add_detector("D") \
            .add_channel("v")
        async with saver.subscribe() as events:
            async def consume() -> None:
                async for event in events:
                    seen.append(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                for i in range(50):
                    await ch.push(float(i), index=(i,))
                    await anyio.sleep(0.001)
                await saver.flush()
                await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
    created = [e for e in seen if isinstance(e, streamsave.ChannelCreated)]
    written = [e for e in seen if isinstance(e, streamsave.FramesWritten) and e.channel == "S/D/v"]
    flushed = [e for e in seen if isinstance(e, streamsave.Flushed)]
    assert not created or created[0].dataset == "/RawData/Scan000/Detector000/Data0D/CH00/Data00"
    assert written and written[-1].frames_written == 50 and sum(e.frames for e in written) == 50
    assert any(e.durable.get("S/D/v") == 50 for e in flushed)
