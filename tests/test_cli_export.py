"""``streamsave export`` and ``streamsave plot`` through the real command, on a file
streamsave wrote with known frames; exports read back with numpy, tifffile and h5py."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import numpy.typing as npt
import pytest

from streamsave import Axis, sync

TIMEOUT = 60
N = 20
T0 = 1.7e9
Known = dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]]


def streamsave(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env, check=False)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Known]:
    """A file with a 2D, a 1D and a 0D channel of known frames and timestamps."""
    path = tmp_path_factory.mktemp("export") / "known.h5"
    rng = np.random.default_rng(7)
    images = rng.integers(0, 4000, size=(N, 8, 6), dtype=np.uint16)
    spectra = rng.normal(size=(N, 5))
    temps = 293 + rng.normal(size=N)
    times = T0 + np.arange(N) * 0.25
    with sync.open_saver(path, compression="blosc2-lz4") as saver:
        img = saver.add_detector("Cam").add_channel("img", shape=(8, 6), dtype="uint16", units="counts",
                                                    axes=[Axis("y", units="um", scale=2.0), Axis("x", units="um")])
        spec = saver.add_detector("Spec").add_channel(
            "s", shape=(5,), units="counts", axes=[Axis("wavelength", units="nm", values=np.linspace(500, 600, 5))])
        temp = saver.add_detector("T").add_channel("temp", units="K", label="sample temperature")
        img.push_many(images, timestamps=times)
        spec.push_many(spectra, timestamps=times)
        temp.push_many(temps, timestamps=times)
    return path, {"Cam/img": (images, times), "Spec/s": (spectra, times), "T/temp": (temps, times)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("frames", [None, "5:12", "-6:", ":-17"])  # ":-17": 3 frames, never taken for RGB
def test_export_npy_tif_h5_match_the_frames(recording: tuple[Path, Known], tmp_path: Path,
                                            frames: str | None) -> None:
    import tifffile

    path, known = recording
    images, times = known["Cam/img"]
    picked = slice(*(int(p) if p else None for p in frames.split(":"))) if frames else slice(None)
    before = _digest(path)
    extra = ["--frames", frames] if frames else []
    for name in ("img.npy", "img.tif", "img.h5"):
        result = streamsave("export", path, "Cam/img", "-o", tmp_path / name, *extra)
        assert result.returncode == 0, result.stderr
        count = len(range(N)[picked])
        assert result.stdout.startswith(f"Exported {count:,} frames of Cam/img (frames {range(N)[picked][0]} to "
                                        f"{range(N)[picked][-1]}) to {tmp_path / name} (")
    np.testing.assert_array_equal(np.load(tmp_path / "img.npy"), images[picked])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "img.tif").reshape(-1, 8, 6), images[picked])
    with h5py.File(tmp_path / "img.h5", "r") as f:
        np.testing.assert_array_equal(f["frames"][()], images[picked])
        np.testing.assert_array_equal(f["timestamps"][()], times[picked])
        assert f["frames"].attrs["units"] == "counts"
    assert _digest(path) == before  # the recording is only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.h5", "img.npy", "img.tif"]  # nothing partial left


def test_export_text_rows_are_timestamp_then_values(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, known = recording
    assert streamsave("export", path, "Spec/s", "-o", tmp_path / "s.csv").returncode == 0
    assert streamsave("export", path, "T/temp", "-o", tmp_path / "t.txt", "--frames", "2:6").returncode == 0
    spectra, times = known["Spec/s"]
    rows = np.loadtxt(tmp_path / "s.csv", delimiter=",")
    np.testing.assert_array_equal(rows[:, 0], times)
    np.testing.assert_allclose(rows[:, 1:], spectra, rtol=1e-15)
    temps, _ = known["T/temp"]
    rows = np.loadtxt(tmp_path / "t.txt", delimiter="\t")
    np.testing.assert_array_equal(rows[:, 0], times[2:6])
    np.testing.assert_allclose(rows[:, 1], temps[2:6], rtol=1e-15)
    assert "sample temperature" in (tmp_path / "t.txt").read_text().splitlines()[1]


def test_export_refuses_to_overwrite_unless_asked(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, known = recording
    out = tmp_path / "img.npy"
    out.write_bytes(b"keep me")
    refused = streamsave("export", path, "Cam/img", "-o", out)
    assert refused.returncode == 1
    assert "already exists; pass --overwrite" in refused.stderr
    assert out.read_bytes() == b"keep me"
    replaced = streamsave("export", path, "Cam/img", "-o", out, "--overwrite", "--frames", ":3")
    assert replaced.returncode == 0, replaced.stderr
    np.testing.assert_array_equal(np.load(out), known["Cam/img"][0][:3])


def test_a_failed_export_leaves_no_file(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, _ = recording
    result = streamsave("export", path, "Cam/img", "-o", tmp_path / "img.csv")
    assert result.returncode == 1
    assert "2-D frames" in result.stderr and ".npy" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_channel_lists_the_available_ones(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, _ = recording
    result = streamsave("export", path, "Cam/image", "-o", tmp_path / "x.npy")
    assert result.returncode == 1
    assert result.stderr == (f"streamsave: error: no channel 'Cam/image' in {str(path)!r}; did you mean 'Cam/img'? "
                             "available: Cam/img, Spec/s, T/temp\n")
    assert list(tmp_path.iterdir()) == []


def test_export_a_dataset_of_another_hdf5_file(tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    data = np.arange(24.0).reshape(2, 3, 4)
    with h5py.File(other, "w") as f:
        f["group/stack"] = data
    result = streamsave("export", other, "group/stack", "-o", tmp_path / "stack.npy")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "stack.npy"), data)


# ---------------------------------------------------------------------------- plot
def _png(path: Path) -> npt.NDArray[Any]:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image: npt.NDArray[Any] = matplotlib.image.imread(path)
    return image


def test_plot_a_frame_the_last_frame_and_the_mean(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, _ = recording
    runs = {"first.png": [], "last.png": ["--frame", "-1"], "mean.png": ["--mean"]}
    for name, extra in runs.items():
        result = streamsave("plot", path, "Cam/img", "-o", tmp_path / name, *extra)
        assert result.returncode == 0, result.stderr
    images = {name: _png(tmp_path / name) for name in runs}
    assert {im.shape[:2] for im in images.values()} == {(500, 700)}
    assert not np.array_equal(images["first.png"], images["last.png"])
    assert not np.array_equal(images["first.png"], images["mean.png"])
    out = streamsave("plot", path, "Cam/img", "-o", tmp_path / "x.png", "--frame", "-1").stdout
    assert out == f"Plotted Cam/img, frame {N - 1} of {N}, to {tmp_path / 'x.png'}\n"


def test_plot_1d_and_0d_channels(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, _ = recording
    spectrum = streamsave("plot", path, "Spec/s", "-o", tmp_path / "s.png", "--frame", "3")
    assert spectrum.returncode == 0, spectrum.stderr
    temperature = streamsave("plot", path, "T/temp", "-o", tmp_path / "t.png")
    assert temperature.returncode == 0, temperature.stderr
    assert temperature.stdout == f"Plotted T/temp, its {N} values against time, to {tmp_path / 't.png'}\n"
    assert _png(tmp_path / "s.png").shape[:2] == _png(tmp_path / "t.png").shape[:2] == (500, 700)


def test_plot_frame_out_of_range(recording: tuple[Path, Known], tmp_path: Path) -> None:
    path, _ = recording
    result = streamsave("plot", path, "Cam/img", "-o", tmp_path / "x.png", "--frame", str(N))
    assert result.returncode == 1
    assert result.stderr == (f"streamsave: error: --frame {N} is out of range: 'Cam/img' has {N} frames "
                             f"(0 to {N - 1}, or -1 for the last)\n")
    assert list(tmp_path.iterdir()) == []
