"""The reader on files it did not write: PyMoDAQ's own savers (continuous saving, as
DAQ_Viewer does it, and a snapshot), PyTables files, and plain h5py files."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import h5py
import hdf5plugin
import numpy as np
import numpy.typing as npt
import pytest

import streamsave

FRAMES: Final = 12
WAVELENGTHS: Final = np.linspace(500.0, 600.0, 16)
SETTINGS_XML: Final = (
    '<settings title="Settings" type="group" visible="1" removable="0" readonly="0">'
    '<detector_settings title="Detector Settings" type="group">'
    '<exposure title="Exposure (ms)" type="float">12.5</exposure>'
    '<averaging title="Averaging" type="int">3</averaging>'
    '<trigger title="External trigger" type="bool">1</trigger>'
    '<mode title="Mode" type="list">Continuous</mode>'
    "</detector_settings></settings>")


@pytest.fixture(scope="module")
def pymodaq() -> Iterator[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from pymodaq_data.data import Axis as PAxis
            from pymodaq_data.data import DataRaw, DataToExport
            from pymodaq_data.h5modules.data_saving import DataToExportSaver, DataToExportTimedSaver
            from pymodaq_data.h5modules.saving import H5SaverLowLevel
        except Exception as exc:  # pragma: no cover - the test extra installs it
            pytest.skip(f"pymodaq_data is not importable: {exc!r}")
    yield {"Axis": PAxis, "DataRaw": DataRaw, "DataToExport": DataToExport, "Saver": DataToExportSaver,
           "TimedSaver": DataToExportTimedSaver, "Low": H5SaverLowLevel}


def spectrum(i: int) -> npt.NDArray[np.float64]:
    return np.sin(WAVELENGTHS / 10.0) + i


def image(i: int) -> npt.NDArray[np.uint16]:
    return (np.arange(20, dtype=np.uint16).reshape(4, 5) + i).astype(np.uint16)


def _dte(pm: dict[str, Any], i: int) -> Any:
    raw = pm["DataRaw"]
    axis = pm["Axis"]("wavelength", units="nm", data=WAVELENGTHS, index=0)
    return pm["DataToExport"]("det", data=[
        raw("spectrum", data=[spectrum(i)], axes=[axis], units="counts"),
        raw("temperature", data=[np.array([20.0 + i])], units="K"),
        raw("image", data=[image(i)]),
    ])


@pytest.fixture(scope="module")
def continuous(pymodaq: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What DAQ_Viewer's continuous saving writes: one DataToExport per frame."""
    path = tmp_path_factory.mktemp("pymodaq") / "continuous.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h5 = pymodaq["Low"](save_type="detector", backend="h5py")
        h5.init_file(path, new_file=True)
        node = h5.add_det_group(h5.raw_group, title="Spectro", settings_as_xml=SETTINGS_XML)
        saver = pymodaq["TimedSaver"](h5)
        for i in range(FRAMES):
            saver.add_data(node, _dte(pymodaq, i))
        h5.close_file()
    return path


@pytest.fixture(scope="module")
def snapshot(pymodaq: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single snapshot (``Data00`` nodes), as PyMoDAQ's snapshot saving writes it."""
    path = tmp_path_factory.mktemp("pymodaq") / "snapshot.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h5 = pymodaq["Low"](save_type="detector", backend="h5py")
        h5.init_file(path, new_file=True)
        node = h5.add_det_group(h5.raw_group, title="Cam")
        pymodaq["Saver"](h5).add_data(node, _dte(pymodaq, 7))
        h5.close_file()
    return path


def test_pymodaq_continuous_saving(continuous: Path) -> None:
    with h5py.File(continuous, "r") as f:
        times = f["RawData/Detector000/NavAxes/Axis00"][()]
    assert times.shape == (FRAMES,) and np.all(np.diff(times) >= 0)
    with streamsave.open_reader(continuous) as run:
        assert list(run.channels) == ["Spectro/temperature", "Spectro/spectrum", "Spectro/image"]
        assert not run.live and not run.writing
        temp, spec, img = run.channels.values()
        assert (len(temp), temp.frame_shape, temp.dtype) == (FRAMES, (), np.dtype("float64"))
        assert (spec.shape, spec.dtype) == ((FRAMES, 16), np.dtype("float64"))
        assert (img.shape, img.dtype) == ((FRAMES, 4, 5), np.dtype("uint16"))
        np.testing.assert_array_equal(temp[:], 20.0 + np.arange(FRAMES))
        np.testing.assert_array_equal(spec[:], np.array([spectrum(i) for i in range(FRAMES)]))
        np.testing.assert_array_equal(img[::-3], np.array([image(i) for i in range(FRAMES)])[::-3])
        for ch in (temp, spec, img):  # PyMoDAQ's one time axis per detector
            assert ch.time_axis_path == "/RawData/Detector000/NavAxes/Axis00"
            np.testing.assert_array_equal(np.asarray(ch.timestamps), times)
            assert ch.settings == {"Detector Settings": {"Exposure (ms)": 12.5, "Averaging": 3,
                                                         "External trigger": True, "Mode": "Continuous"}}
        assert (spec.units, temp.units) == ("", "")  # its enlargeable arrays record no units
        (axis,) = spec.axes
        assert (axis.label, axis.units) == ("wavelength", "nm")
        assert axis.values is not None
        np.testing.assert_allclose(axis.values, WAVELENGTHS)
        window = spec.between(times[3], times[6])
        picked = np.flatnonzero((times >= times[3]) & (times < times[6]))
        assert window.start == picked[0] and len(window.data) == len(picked)
        np.testing.assert_array_equal(window.data, np.array([spectrum(int(i)) for i in picked]))
        assert "Spectro/spectrum" in str(run) and f"{FRAMES} frames" in str(run)


def test_pymodaq_snapshot(snapshot: Path) -> None:
    with streamsave.open_reader(snapshot) as run:
        assert set(run.channels) == {"Cam/spectrum", "Cam/temperature", "Cam/image"}
        spec, img, temp = (run.channels[k] for k in ("Cam/spectrum", "Cam/image", "Cam/temperature"))
        for ch in (spec, img, temp):
            assert len(ch) == 1 and ch.time_axis_path is None and np.isnan(ch.timestamps[0])
        assert spec.frame_shape == (16,) and img.frame_shape == (4, 5) and temp.frame_shape == (1,)
        assert (spec.units, temp.units, img.units) == ("counts", "K", "")
        np.testing.assert_array_equal(spec[0], spectrum(7))
        np.testing.assert_array_equal(img[-1], image(7))
        np.testing.assert_array_equal(temp[:], [[27.0]])
        (axis,) = spec.axes
        assert axis.values is not None
        np.testing.assert_allclose(axis.values, WAVELENGTHS)
        with pytest.raises(IndexError):
            spec[1]
        with pytest.raises(streamsave.ReadError, match="no timestamps"):
            spec.between(0, 1)


def test_pymodaq_files_export_and_plot(continuous: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with streamsave.open_reader(continuous) as run:
        spec = run.channels["Spectro/spectrum"]
        rows = np.loadtxt(spec.export(tmp_path / "s.csv"), delimiter=",", ndmin=2)
        assert rows.shape == (FRAMES, 17)
        np.testing.assert_array_equal(rows[:, 0], np.asarray(spec.timestamps))
        assert Path(spec.plot(tmp_path / "s.png")).read_bytes()[:4] == b"\x89PNG"
        assert Path(run.channels["Spectro/image"].plot(tmp_path / "i.png", mean=True)).stat().st_size > 1000


# ---------------------------------------------------------------------- other HDF5 files
def test_a_plain_h5py_file_reads_as_one_channel_per_dataset(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    images = np.arange(5 * 6 * 7, dtype=np.int32).reshape(5, 6, 7)
    with h5py.File(path, "w") as f:
        f.create_dataset("trace", data=np.linspace(0, 1, 50))
        g = f.create_group("camera/raw")
        g.create_dataset("images", data=images, chunks=(1, 6, 7), compression="gzip")
        g["images"].attrs.update({"units": "adu", "label": "raw counts"})
        f.create_dataset("matrix", data=np.eye(3))
        f.create_dataset("blosc", data=np.arange(1000.0).reshape(100, 10), chunks=(10, 10),
                         **hdf5plugin.Blosc2(cname="lz4"))
        f.attrs["TITLE"] = "not streamsave"
        f.create_dataset("text", data=np.array([b"a", b"b"]))
    with streamsave.open_reader(path) as run:
        assert list(run.channels) == ["blosc", "matrix", "trace", "camera/raw/images"]
        trace, images_ch = run.channels["trace"], run.channels["camera/raw/images"]
        assert (len(trace), trace.frame_shape) == (50, ())
        np.testing.assert_array_equal(trace[10:20], np.linspace(0, 1, 50)[10:20])
        assert trace.detector == "" and trace.settings == {} and trace.axes == ()
        assert images_ch.shape == (5, 6, 7) and images_ch.chunk_shape == (1, 6, 7)
        assert images_ch.compression == "gzip" and (images_ch.units, images_ch.label) == ("adu", "raw counts")
        np.testing.assert_array_equal(images_ch[1:4], images[1:4])
        assert run.channels["blosc"].compression is not None
        np.testing.assert_array_equal(run.channels["blosc"][-1], np.arange(990.0, 1000.0))
        assert run.channels["matrix"].chunk_shape is None and run.channels["matrix"].compression is None
        assert np.isnan(np.asarray(trace.timestamps)).all()
        with pytest.raises(streamsave.ReadError, match="no timestamps"):
            trace.between(0, 1)
        assert "camera/raw/images" in str(run)


def test_a_file_with_a_rawdata_group_of_its_own(tmp_path: Path) -> None:
    """A /RawData that is neither streamsave's nor PyMoDAQ's: read as generic datasets."""
    path = tmp_path / "rawdata.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("RawData/samples", data=np.arange(8.0))
        f.create_dataset("RawData/Detector000/whatever", data=np.ones((2, 2)))
    with streamsave.open_reader(path) as run:
        assert set(run.channels) == {"RawData/samples", "RawData/Detector000/whatever"}
        np.testing.assert_array_equal(run.channels["RawData/samples"][:], np.arange(8.0))


def test_a_pytables_file(tmp_path: Path) -> None:
    tables = pytest.importorskip("tables")
    path = tmp_path / "pytables.h5"
    with tables.open_file(str(path), "w") as f:
        earray = f.create_earray("/", "frames", atom=tables.Float32Atom(), shape=(0, 3),
                                 filters=tables.Filters(complevel=5, complib="zlib"))
        earray.append(np.arange(30, dtype=np.float32).reshape(10, 3))
        group = f.create_group("/", "group")
        f.create_array(group, "array", obj=np.arange(4))
        f.create_table("/", "table", description={"x": tables.Float64Col()})
        f.create_vlarray("/", "vlarray", atom=tables.ObjectAtom())  # pickles: never read
    with streamsave.open_reader(path) as run:
        assert set(run.channels) == {"frames", "group/array"}
        frames = run.channels["frames"]
        assert frames.shape == (10, 3) and frames.dtype == np.float32 and frames.compression == "gzip"
        np.testing.assert_array_equal(frames[2:5], np.arange(30, dtype=np.float32).reshape(10, 3)[2:5])


def test_a_streamsave_file_with_large_settings(tmp_path: Path) -> None:
    """Settings too large for an attribute are stored in a dataset: the reader finds them."""
    import anyio

    settings = {f"p{i}": "x" * 100 for i in range(800)} | {"nested": {"gain": 2.5}}
    path = tmp_path / "large.h5"

    async def main() -> None:
        async with streamsave.open_saver(path) as saver:
            await saver.add_detector("Big", settings=settings).add_channel("v").push(1.0)

    anyio.run(main)
    with h5py.File(path, "r") as f:
        assert "ParamsJSON" in f["RawData/Detector000"]
    with streamsave.open_reader(path) as run:
        assert run.channels["Big/v"].settings == settings
