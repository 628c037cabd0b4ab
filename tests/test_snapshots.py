"""Single snapshots (``streamsave.save_snapshot``): fixed arrays as PyMoDAQ's DAQ_Viewer
saves "Single Datas", in a new file or added to a closed one, loaded by PyMoDAQ."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import streamsave
import streamsave.sync

NM = np.linspace(400.0, 800.0, 16)

pytestmark = [  # what PyMoDAQ warns while loading continuous channels (see test_interop)
    pytest.mark.filterwarnings("ignore:The axis requested with index"),
    pytest.mark.filterwarnings("ignore:The specified dimensionality is not coherent"),
]


def snapshot_data() -> dict[str, object]:
    return {
        "image": streamsave.SnapshotData(np.arange(20, dtype="uint16").reshape(4, 5), units="counts"),
        "spectrum": streamsave.SnapshotData(np.sin(NM), units="V", label="signal",
                                            axes=[streamsave.Axis("wavelength", units="nm", values=NM)]),
        "T": 293.1,
        "other": np.arange(3.0),  # a second Data1D channel: CH01
    }


def test_a_snapshot_in_a_new_file_loads_in_pymodaq(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "snap.h5"
    assert streamsave.save_snapshot(path, "Camera", snapshot_data(), settings={"exposure_ms": 10}) \
        == "/RawData/Detector000"
    with h5py.File(path, "r") as f:
        det = f["RawData/Detector000"]
        assert det.attrs["TITLE"] == "Camera" and json.loads(det.attrs["params_json"]) == {"exposure_ms": 10}
        assert det["Data2D/CH00/Data00"].shape == (4, 5)
        assert det["Data0D/CH00/Data00"][()].tolist() == [293.1]
        assert det["Data1D/CH01/Data00"].attrs["TITLE"] == "other"
        assert "Logger" in f["RawData"]
    with DataLoader(path) as loader:
        spectrum = loader.load_data("/RawData/Detector000/Data1D/CH00/Data00")
        image = loader.load_data("/RawData/Detector000/Data2D/CH00/Data00")
        scalar = loader.load_data("/RawData/Detector000/Data0D/CH00/Data00")
    assert (spectrum.name, spectrum.units, spectrum.labels) == ("spectrum", "V", ["signal"])
    (axis,) = spectrum.axes
    assert (axis.label, axis.units, axis.index) == ("wavelength", "nm", 0)
    np.testing.assert_allclose(axis.get_data(), NM)
    np.testing.assert_allclose(spectrum[0], np.sin(NM))
    np.testing.assert_array_equal(image[0], np.arange(20).reshape(4, 5))
    assert float(np.asarray(scalar[0]).ravel()[0]) == 293.1
    with streamsave.open_reader(path) as run:
        np.testing.assert_array_equal(run.channels["Camera/image"][0], np.arange(20).reshape(4, 5))
        assert run.channels["Camera/spectrum"].axes[0].label == "wavelength"


async def test_a_snapshot_added_to_a_closed_recording(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader

    path = tmp_path / "run.h5"
    async with streamsave.open_saver(path, compression="blosc2-lz4") as saver:
        ch = saver.add_detector("Camera").add_channel("image", shape=(8, 8), dtype="uint16")
        for i in range(5):
            await ch.push(np.full((8, 8), i, dtype="uint16"))
    assert streamsave.save_snapshot(path, "Background", {"image": np.ones((8, 8))}) == "/RawData/Detector001"
    assert streamsave.save_snapshot(path, "Background", {"image": np.zeros((8, 8))}) == "/RawData/Detector002"
    with streamsave.open_reader(path) as run:
        assert len(run.channels["Camera/image"]) == 5  # the recording is untouched
        assert run.channels["Background/image"][0].sum() == 64
    with DataLoader(path) as loader:
        assert loader.load_data("/RawData/Detector001/Data2D/CH00/Data00").shape == (8, 8)
        assert loader.load_data("/RawData/Detector000/Data2D/CH00/EnlData00").shape == (5, 8, 8)


def test_a_snapshot_added_to_a_pymodaq_file(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    from pymodaq_data.h5modules.data_saving import DataLoader
    from pymodaq_data.h5modules.saving import H5SaverLowLevel

    path = tmp_path / "pymodaq.h5"
    h5 = H5SaverLowLevel(backend="h5py")
    h5.init_file(path, new_file=True)
    h5.add_det_group(h5.raw_group, title="Theirs")
    h5.close_file()
    assert streamsave.save_snapshot(path, "Ours", {"v": np.arange(4.0)}) == "/RawData/Detector001"
    with DataLoader(path) as loader:
        np.testing.assert_array_equal(loader.load_data("/RawData/Detector001/Data1D/CH00/Data00")[0], np.arange(4.0))


def test_bad_snapshots_raise_and_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "snap.h5"
    bad_axes = {"spectrum": streamsave.SnapshotData(np.zeros(16), axes=[streamsave.Axis("w", values=np.arange(5))])}
    with pytest.raises(streamsave.ConfigError,
                       match=r"'spectrum': axis 'w' has 5 values, but data of shape \(16,\) has 16.*expected 16"):
        streamsave.save_snapshot(path, "Camera", bad_axes)
    assert not path.exists()
    streamsave.save_snapshot(path, "Camera", {"a": np.zeros(3)})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cases: list[tuple[object, str]] = [
        ({"image": streamsave.SnapshotData(np.zeros((4, 5)), axes=[streamsave.Axis("x"), streamsave.Axis("y"),
                                                                      streamsave.Axis("z")])},
         r"'image': axes must be at most 2 Axis objects.*shape \(4, 5\)\), got 3"),
        ({"ok": np.zeros(2), "words": np.array(["a", "b"])}, r"'words'.*not supported"),
        ({"empty": np.zeros((0, 3))}, r"'empty': data has an empty dimension"),
        ({"a/b": np.zeros(2)}, r"must not contain '/'"),
        ({}, r"non-empty mapping"),
    ]
    for data, match in cases:
        with pytest.raises(streamsave.ConfigError, match=match):
            streamsave.save_snapshot(path, "Camera", data)  # type: ignore[arg-type]
    with pytest.raises(streamsave.ConfigError, match="settings must hold only JSON"):
        streamsave.save_snapshot(path, "Camera", {"a": 1.0}, settings={"f": object()})
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # nothing was written


def test_a_snapshot_into_a_file_being_written_or_foreign_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    with streamsave.sync.open_saver(path) as saver:
        ch = saver.add_detector("D").add_channel("c")
        ch.push(1.0)
        saver.flush()
        with pytest.raises(streamsave.StorageError, match="still being written"):
            streamsave.save_snapshot(path, "Snap", {"a": np.zeros(3)})
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(streamsave.StorageError, match="has no /RawData group"):
        streamsave.save_snapshot(foreign, "Snap", {"a": np.zeros(3)})
    with h5py.File(foreign, "r") as f:
        assert list(f) == ["x"]
