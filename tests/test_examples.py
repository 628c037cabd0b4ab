"""Every script in ``examples/`` runs, as a user would run it, and what it writes reads back
with plain h5py + hdf5plugin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import pytest

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


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_tested_and_documented(script: str) -> None:
    docstring = ast.get_docstring(ast.parse((EXAMPLES / script).read_text(encoding="utf-8")))
    assert docstring, f"{script} needs a module docstring"
    assert script in Path(__file__).read_text(encoding="utf-8"), f"{script} is not run by this test file"
