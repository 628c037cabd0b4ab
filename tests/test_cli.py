"""The ``streamsave`` command line, run as a user would: ``python -m streamsave`` in a
subprocess. Files are read back with plain h5py + hdf5plugin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import pytest

from streamsave.cli import main

TIMEOUT = 60  # seconds for any one command
CHANNELS = {
    "Camera/image": ((512, 512), "uint16"),
    "Spectrometer/spectrum": ((2048,), "float64"),
    "Thermometer/temperature": ((1,), "float64"),
}


#: wide enough that rich never abbreviates a table cell we look for (pytest sets COLUMNS=80)
ENV = {**os.environ, "COLUMNS": "200"}


def streamsave(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=ENV, check=False)


def read_channels(path: Path) -> dict[str, dict[str, Any]]:
    """``detector/channel`` -> frames, frame shape, dtype, timestamps, from plain h5py."""
    found: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        for detector in f["RawData"].values():
            if not isinstance(detector, h5py.Group):
                continue
            for dim in detector.values():
                for group in dim.values():
                    data = group[group.attrs["signal"]]
                    time_axis = group[group.attrs["axes"][0]]
                    found[f"{detector.attrs['TITLE']}/{group.attrs['TITLE']}"] = {
                        "frames": data.shape[0], "shape": data.shape[1:], "dtype": str(data.dtype),
                        "timestamps": time_axis[:], "last": data[-1] if data.shape[0] else None,
                        "path": data.name,
                    }
    return found


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path_factory.mktemp("demo") / "x.h5"
    return path, streamsave("demo", "-o", path, "--duration", "1")


def test_demo_records_three_channels(recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, result = recorded
    assert result.returncode == 0, result.stderr
    assert path.is_file()
    channels = read_channels(path)
    assert set(channels) == set(CHANNELS)
    for name, (shape, dtype) in CHANNELS.items():
        chan = channels[name]
        assert chan["frames"] > 0, name
        assert (chan["shape"], chan["dtype"]) == (shape, dtype)
        assert chan["timestamps"].shape == (chan["frames"],)
        assert (chan["timestamps"][1:] > chan["timestamps"][:-1]).all()
    assert channels["Camera/image"]["last"].max() > 1000  # the simulated spots are there


def test_demo_prints_summary_and_how_to_read(recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, result = recorded
    out = result.stdout
    assert str(path.resolve()) in out
    assert "MB on disk" in out
    assert "frames/s achieved of 1,000.0 requested" in out
    assert "import h5py, hdf5plugin" in out
    assert read_channels(path)["Camera/image"]["path"] in out
    for name in CHANNELS:
        assert name in out  # the final table, printed even though stdout is not a terminal
    assert "Traceback" not in result.stderr


def test_demo_refuses_to_overwrite(recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, _ = recorded
    before = path.stat()
    result = streamsave("demo", "-o", path, "--duration", "1")
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert all(chan["frames"] > 0 for chan in read_channels(path).values())


def test_demo_overwrite_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    path.write_bytes(b"not an HDF5 file")
    result = streamsave("demo", "-o", path, "--duration", "0.3", "--rate", "100", "--compression", "none",
                        "--overwrite")
    assert result.returncode == 0, result.stderr
    assert read_channels(path)["Camera/image"]["frames"] > 0


def test_demo_writes_to_the_current_directory_by_default(tmp_path: Path) -> None:
    result = streamsave("demo", "--duration", "0.3", "--rate", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(read_channels(tmp_path / "streamsave-demo.h5")) == set(CHANNELS)


def test_demo_reports_storage_errors_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "x.h5"
    result = streamsave("demo", "-o", path, "--duration", "0.3")
    assert result.returncode == 1
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("streamsave: error: ")
    assert str(path) in last
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent to a child on Windows")
@pytest.mark.timeout(2 * TIMEOUT)
def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "interrupted.h5"
    proc = subprocess.Popen([sys.executable, "-m", "streamsave", "demo", "-o", str(path), "--duration", "60",
                             "--rate", "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once Ctrl-C is handled and recording starts
        assert first.startswith("Recording to"), first + proc.communicate(timeout=TIMEOUT)[1]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Interrupted" in out
    assert "Traceback" not in err
    channels = read_channels(path)
    assert channels["Camera/image"]["frames"] > 0
    assert all(chan["timestamps"].shape == (chan["frames"],) for chan in channels.values())


def test_info_lists_channels(recorded: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, _ = recorded
    result = streamsave("info", path)
    assert result.returncode == 0, result.stderr
    for name, chan in read_channels(path).items():
        line = next(line for line in result.stdout.splitlines() if name in line)
        assert f"{chan['frames']:,}" in line
        assert chan["dtype"] in line
        assert "blosc2-lz4" in line
        assert chan["path"] in result.stdout
    assert "(512, 512)" in result.stdout
    assert "scalar" in result.stdout


def test_info_time_span_is_never_negative(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Timestamps a program gives may go backwards: the span is from the earliest to the
    latest, and the table says they are not in order."""
    import numpy as np

    import streamsave.sync

    path = tmp_path / "backwards.h5"
    with streamsave.sync.open_saver(path) as saver:
        det = saver.add_detector("Clock")
        back, ordered = det.add_channel("back"), det.add_channel("ordered")
        back.push_many(np.arange(4.0), timestamps=[1.7e9 + 10, 1.7e9 + 2.5, 1.7e9, 1.7e9 + 4])
        ordered.push_many(np.arange(3.0), timestamps=[1.7e9, 1.7e9 + 1, 1.7e9 + 2])
    monkeypatch.setenv("COLUMNS", "200")  # no line wrapped
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    back_time = channel_line(out, "Clock/back", "time")
    ordered_time = channel_line(out, "Clock/ordered", "time")
    assert "10.000 s" in back_time and "(not in order)" in back_time and "-" not in back_time
    assert "2.000 s" in ordered_time and "not in order" not in ordered_time
    assert main(["info", "--json", str(path)]) == 0
    channels = json.loads(capsys.readouterr().out)["channels"]
    assert channels["Clock/back"]["time"] == {"first": 1.7e9, "last": 1.7e9 + 10, "duration_s": 10.0,
                                              "in_order": False, "sampled": False}
    assert channels["Clock/ordered"]["time"]["duration_s"] == 2.0
    assert channels["Clock/ordered"]["time"]["in_order"] is True


def channel_line(out: str, channel: str, field: str) -> str:
    """The ``field`` line (``time``, ``dataset``, ...) of ``channel``'s block in ``info``'s text."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{channel}  "))
    for line in lines[start + 1:]:
        if not line.startswith("      "):
            break
        if line.split()[0] == field:
            return line
    raise AssertionError(f"no {field!r} line for {channel!r} in:\n{out}")


def test_info_on_a_missing_file(tmp_path: Path) -> None:
    result = streamsave("info", tmp_path / "nope.h5")
    assert result.returncode == 1
    assert result.stderr == f"streamsave: error: {str(tmp_path / 'nope.h5')!r} does not exist\n"


def test_info_on_another_hdf5_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = [1, 2, 3]
    assert main(["info", str(path)]) == 1
    assert "not a streamsave file" in capsys.readouterr().err


def test_bad_arguments_exit_2() -> None:
    result = streamsave("demo", "--duration", "-1")
    assert result.returncode == 2
    assert "--duration must be positive" in result.stderr
    assert "usage: streamsave demo" in result.stderr


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["info"],
    ["demo", "--rate", "fast"],
    ["demo", "--rate", "0"],
    ["demo", "--duration", "nan"],
    ["demo", "--compression", "gzip"],
    ["demo", "unexpected"],
])
def test_usage_errors_return_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: streamsave" in capsys.readouterr().err


def test_help_and_version_return_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("streamsave ")


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("streamsave.exe" if os.name == "nt" else "streamsave")
    if not script.exists():
        pytest.skip("the streamsave console script is not installed next to this interpreter")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT,
                            check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("streamsave ")
