"""Every script in ``examples/`` runs, as a user would run it, and what it writes reads back
with plain h5py + hdf5plugin."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import pytest

import streamsave.sync

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60  # seconds for any one script


def run_example(name: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error", str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("example")
    path = workdir / "three.h5"
    return path, run_example("record_three_detectors.py", path, "--duration", "1", cwd=workdir)


def test_record_three_detectors(recording: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, result = recording
    assert result.returncode == 0, result.stderr
    for name in ("Camera/image", "Spectrometer/spectrum", "Thermometer/temperature"):
        assert name in result.stdout
    with h5py.File(path, "r") as f:
        datasets = {group.attrs["TITLE"]: group[group.attrs["signal"]]
                    for detector in f["RawData"].values() if isinstance(detector, h5py.Group)
                    for dim in detector.values() for group in dim.values()}
        assert set(datasets) == {"image", "spectrum", "temperature"}
        assert datasets["image"].shape[1:] == (512, 512)
        assert datasets["image"].dtype == "uint16"
        assert datasets["image"].shape[0] > 100  # 1 s at 1 kHz, with room for a slow CI machine
        assert datasets["spectrum"][-1].shape == (2048,)
        assert 290 < float(datasets["temperature"][-1, 0]) < 296


def test_read_back(recording: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, _ = recording
    result = run_example("read_back.py", path, cwd=path.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "3 channels" in out
    for name in ("Camera/image", "Spectrometer/spectrum", "Thermometer/temperature"):
        assert name in out
    assert out.count("last frame:") == 3
    assert out.count("timestamps:") == 3
    assert "axis wavelength: 400 .. 800" in out


def test_read_back_during_the_recording_and_after(tmp_path: Path) -> None:
    """read_back.py follows a recording running in another process (an SWMR reader that
    refreshes), then reads the finished file with a plain reader."""
    path = tmp_path / "live.h5"
    recorder = subprocess.Popen(
        [sys.executable, "-W", "error", str(EXAMPLES / "record_three_detectors.py"), str(path), "--duration", "4",
         "--camera-rate", "200"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        live = run_example("read_back.py", path, "--follow", "7", "--every", "0.25", cwd=tmp_path)
    finally:
        _, recorder_err = recorder.communicate(timeout=TIMEOUT)
    assert recorder.returncode == 0, recorder_err
    assert live.returncode == 0, live.stderr
    assert "as an SWMR reader" in live.stdout
    seen = [int(n.replace(",", "")) for n in re.findall(r"Camera/image: ([\d,]+) frames", live.stdout)]
    assert seen == sorted(seen)
    assert len({n for n in seen if n > 0}) >= 2, live.stdout  # it saw the file grow while it was written
    assert live.stdout.count("last frame:") == 3

    after = run_example("read_back.py", path, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "3 channels" in after.stdout and after.stdout.count("last frame:") == 3
    with h5py.File(path, "r") as f:
        written = f["RawData/Detector000/Data2D/CH00/EnlData00"].shape[0]
    assert f"data: {written} frames of shape (512, 512)" in after.stdout
    assert 0 < max(seen) <= written


def test_read_back_refuses_a_file_being_written_without_follow(tmp_path: Path) -> None:
    path = tmp_path / "busy.h5"
    with streamsave.sync.open_saver(path) as saver:
        saver.add_detector("D").add_channel("c").push(1.0)
        saver.flush()  # writing has started: the file is in SWMR mode
        result = run_example("read_back.py", path, cwd=tmp_path)
    assert result.returncode == 1
    assert "still being written" in result.stderr and "--follow" in result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_tested_and_documented(script: str) -> None:
    docstring = ast.get_docstring(ast.parse((EXAMPLES / script).read_text(encoding="utf-8")))
    assert docstring, f"{script} needs a module docstring"
    assert script in Path(__file__).read_text(encoding="utf-8"), f"{script} is not run by this test file"


def test_adaptive_camera(tmp_path: Path) -> None:
    result = run_example("adaptive_camera.py", tmp_path / "a.h5", "--duration", "1", "--rate", "20000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    words = result.stdout.replace(",", "").split()  # "took N frames wrote N dropped 0 ..."
    taken, written = int(words[1]), int(words[4])
    assert taken == written and "dropped 0" in result.stdout
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["RawData/Detector000/Data2D/CH00/EnlData00"].shape[0] == written


def test_threaded_callback(tmp_path: Path) -> None:
    result = run_example("threaded_callback.py", tmp_path / "t.h5", "--frames", "500", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pushed 500 frames from the SDK thread, wrote 500, dropped 0" in result.stdout
    with h5py.File(tmp_path / "t.h5", "r") as f:
        data = f["RawData/Detector000/Data2D/CH00/EnlData00"]
        assert data.shape[0] == 500 and int(data[499, 0, 0]) == 499


def test_status_line(tmp_path: Path) -> None:
    result = run_example("status_line.py", tmp_path / "s.h5", "--duration", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Camera/image" in result.stdout and "written" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith(f"closed {tmp_path / 's.h5'}")


@pytest.mark.parametrize("backend", ["h5py", "tables"])
def test_record_backends(tmp_path: Path, backend: str) -> None:
    """One argument chooses the backend; the file reads back the same (h5pyd: tests/test_hsds*.py)."""
    if backend == "tables":
        pytest.importorskip("tables")
    path = tmp_path / f"{backend}.h5"
    result = run_example("record_backends.py", path, "--backend", backend, "--duration", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"with backend {backend!r} (SWMR: {backend == 'h5py'}" in result.stdout
    assert result.stdout.count("read back ") == 3
    with h5py.File(path, "r") as f:
        data = f["RawData/Detector000/Data2D/CH00/EnlData00"]
        assert data.shape[0] > 0 and "32026" in data._filters
        backend_attr = data.attrs["backend"]
        assert (backend_attr.decode() if isinstance(backend_attr, bytes) else backend_attr) == backend


def test_record_backends_names_what_is_missing(tmp_path: Path) -> None:
    result = run_example("record_backends.py", tmp_path / "x.h5", "--backend", "tables", "--compression",
                         "blosc2-nope", cwd=tmp_path)
    assert result.returncode == 1 and "ConfigError" in result.stderr and "blosc2-lz4" in result.stderr
