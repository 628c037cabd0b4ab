"""``streamsave replay`` through the real command, with and without ``-o``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

import streamsave.sync
from tests.conftest import channel_paths, read_channel

T0 = 1_700_000_000.0
ENV = {**os.environ, "COLUMNS": "120"}


def streamsave_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", "replay", *map(str, args)],
                          capture_output=True, text=True, timeout=60, env=ENV, check=False)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.h5"
    with streamsave.sync.open_saver(path, compression="blosc2-lz4") as saver:
        cam = saver.add_detector("Cam").add_channel("img", shape=(16, 16), dtype="uint16")
        temp = saver.add_detector("Th").add_channel("T", units="K")
        cam.push_many(np.arange(100 * 256, dtype=np.uint16).reshape(100, 16, 16), timestamps=T0 + np.arange(100) / 200)
        temp.push_many(293.0 + np.arange(10) / 100, timestamps=T0 + 0.001 + np.arange(10) / 20)
    return path


def test_a_live_status_then_a_summary(recording: Path) -> None:
    result = streamsave_cli(recording, "--speed", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Cam/img" in out and "Th/T" in out and "lateness p50" in out
    assert "Replayed 110 frames of 2 channels" in out and "(speed 2)" in out
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("Cam/img", "Th/T"))}
    assert table["Cam/img"][1] == "100" and table["Th/T"][1] == "10"
    seconds = float(out.split(" channels in ")[1].split(" s ")[0])
    assert 0.2 < seconds < 5  # 0.5 s of recording at speed 2


def test_as_fast_as_possible_with_a_subset(recording: Path) -> None:
    result = streamsave_cli(recording, "--as-fast-as-possible", "--channels", "Th/T", "--start", "0.1",
                            "--stop", "0.3")
    assert result.returncode == 0, result.stderr
    assert "Replayed 4 frames of 1 channels" in result.stdout and "as fast as possible" in result.stdout


def test_with_output_it_writes_a_copy_through_a_saver(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.h5"
    result = streamsave_cli(recording, "-o", out, "--compression", "blosc2-zstd", "--chunk-bytes", "4096")
    assert result.returncode == 0, result.stderr
    assert f"Wrote 110 frames of 2 channels to {out}" in result.stdout
    for name in ("Cam/img", "Th/T"):
        got, got_t = read_channel(out, name)
        want, want_t = read_channel(recording, name)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_t, want_t)
    with h5py.File(out, "r") as f:
        data = f[channel_paths(out)["Cam/img"] + "/EnlData00"]
        assert data.chunks == (8, 16, 16)  # 4096 bytes of 512-byte frames
        assert data.attrs["compression"].startswith("blosc2-zstd")
    again = streamsave_cli(recording, "-o", out)
    assert again.returncode == 1 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert streamsave_cli(recording, "-o", out, "--overwrite").returncode == 0


@pytest.mark.parametrize(("args", "status", "words"), [
    (["--speed", "2", "--as-fast-as-possible"], 2, ["not allowed with argument --speed"]),
    (["--speed", "0"], 2, ["--speed must be positive"]),
    (["--speed", "-1"], 2, ["--speed"]),
    (["--start", "soon"], 2, ["ISO 8601", "'soon'"]),
    (["--start", "0.4", "--stop", "0.2"], 1, ["start=0.4", "stop=0.2", "before"]),
    (["--channels", "Cam/image"], 1, ["no channel 'Cam/image'", "did you mean 'Cam/img'"]),
    (["--compression", "blosc2-zstd"], 1, ["--compression applies to the file written with -o"]),
])
def test_bad_arguments(recording: Path, args: list[str], status: int, words: list[str]) -> None:
    result = streamsave_cli(recording, *args)
    assert result.returncode == status, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file(tmp_path: Path) -> None:
    result = streamsave_cli(tmp_path / "missing.h5")
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_readme_replay_example_runs(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("\n## Replay\n")
    (code,) = re.findall(r"```python\n(.*?)```", readme[start:readme.index("\n## ", start + 1)], re.S)
    with streamsave.sync.open_saver(tmp_path / "run.h5", compression="blosc2-lz4") as saver:
        cam = saver.add_detector("Camera").add_channel("image", shape=(8, 8), dtype="uint16")
        temp = saver.add_detector("Thermometer").add_channel("T", units="K")
        cam.push_many(np.zeros((40, 8, 8), np.uint16), timestamps=T0 + np.arange(40) / 200)
        temp.push_many(np.full(4, 293.0), timestamps=T0 + np.arange(4) / 20)
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env=ENV, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Camera/image") >= 40 and "ms late" in result.stdout
    assert "{'Camera/image': 40, 'Thermometer/T': 4}" in result.stdout
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        assert f[channel_paths(tmp_path / "copy.h5")["Camera/image"] + "/EnlData00"].shape == (40, 8, 8)
