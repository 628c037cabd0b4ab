"""The demo's output on an 80-column terminal and its size estimate; every subcommand's
--help; errors as one line, through the real entry point."""

from __future__ import annotations

import argparse
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import pytest
from rich.console import Console

from streamsave import sync
from streamsave._cli._common import describe, nbytes
from streamsave._cli._demo import table
from streamsave._cli._main import parser
from streamsave._errors import ReadError
from streamsave._stats import ChannelStatistics, SaverStatistics
from streamsave.cli import main

TIMEOUT = 60


def streamsave(*args: str | Path, cwd: Path | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env, check=False)


def _channel(name: str, frames: int, capacity: int) -> ChannelStatistics:
    """Statistics with the widest numbers a long recording can show."""
    return ChannelStatistics(
        name=name, frames_pushed=frames, frames_written=frames, frames_durable=frames - 1, frames_dropped=frames // 3,
        frames_rejected=0, bytes_pushed=frames * 524_288, bytes_written=frames * 524_288, bytes_stored=frames * 1000,
        queue_fill=capacity - 1, queue_capacity=capacity, queue_high_water=capacity, compression_ratio=524.288,
        frames_per_second=123_456.7, mb_per_second=9_999.9, durable_timestamp=None, durable_at=None)


def _stats(channels: tuple[ChannelStatistics, ...]) -> SaverStatistics:
    return SaverStatistics(
        path="x.h5", state="open", channels=channels, frames_pushed=sum(c.frames_pushed for c in channels),
        frames_written=sum(c.frames_written for c in channels), frames_durable=sum(c.frames_durable for c in channels),
        frames_dropped=sum(c.frames_dropped for c in channels), bytes_written=sum(c.bytes_written for c in channels),
        bytes_stored=sum(c.bytes_stored for c in channels), elapsed=3600.0, flushes=3600, error=None, timings={})


@pytest.mark.parametrize("live", [True, False], ids=["while recording", "final"])
@pytest.mark.parametrize("frames", [7, 123_456, 987_654_321, 12_345_678_901])
def test_the_demo_table_fits_80_columns_without_cutting_a_cell(live: bool, frames: int) -> None:
    chans = (_channel("Camera/image", frames, 512), _channel("Spectrometer/spectrum", frames, 16_384),
             _channel("Thermometer/temperature", frames, 1_048_576))
    rates = [(123_456.7, 9_999.9), (999_999.9, 12_345.6), (10.0, 0.0)] if live else None
    console = Console(width=80, record=True, color_system=None)
    console.print(table(_stats(chans), rates, title="streamsave-demo.h5  3599.5 / 3600 s  (open)", recorded=3599.5))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text, text  # no cell abbreviated
    for name in ("Camera/image", "Spectrometer/spectrum", "Thermometer/temperature", "total"):
        assert sum(line.startswith(name) for line in lines) == 1, text  # one row each, never wrapped


def test_the_demo_fits_80_columns_and_says_how_large_its_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "demo.h5"
    result = streamsave("demo", "-o", path, "--duration", "0.5", "--rate", "100", columns=80)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    long = [line for line in lines if len(line.replace(str(path.resolve()), "P").replace(str(path), "P")) > 80]
    assert not long, result.stdout  # only the file's own path makes a line longer
    assert "…" not in result.stdout
    # before the table (and before any frame): up to 0.5 s x (100 images of 512 x 512 x 2 B
    # + 100 spectra of 2048 x 8 B + 10 readings of 8 B)
    expected = 50 * 512 * 512 * 2 + 50 * 2048 * 8 + 5 * 8
    announce = next(i for i, line in enumerate(lines) if "The file will hold up to" in line)
    header = next(i for i, line in enumerate(lines) if line.startswith("channel "))
    assert announce < header
    assert f"up to {nbytes(expected)} of frames" in result.stdout
    with h5py.File(path, "r") as f:
        raw = sum(f[p].size * f[p].dtype.itemsize for p in ("RawData/Detector000/Data2D/CH00/EnlData00",
                                                            "RawData/Detector001/Data1D/CH00/EnlData00",
                                                            "RawData/Detector002/Data0D/CH00/EnlData00"))
    assert 0 < raw <= expected


def test_the_demo_warns_when_the_disk_is_too_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    class Usage:
        free = 999

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage())
    assert main(["demo", "-o", str(tmp_path / "x.h5"), "--duration", "0.2", "--rate", "20"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("streamsave: warning: only 999 B free where")


# ---------------------------------------------------------------------------- help
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_of_every_subcommand_has_help() -> None:
    commands = _subparsers()
    assert set(commands) == {"demo", "info", "export", "plot", "follow", "recover", "replay", "view"}
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (name, action.dest)


@pytest.mark.parametrize("command", ["demo", "info", "export", "plot", "follow", "recover", "replay"])
def test_help_of_each_subcommand_shows_every_argument(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for action in _subparsers()[command]._actions:
        names = action.option_strings or [str(action.metavar or action.dest)]
        assert any(str(n) in out for n in names), (command, names)
        if action.help:
            assert " ".join(action.help.replace("%%", "%").split())[:30] in out, (command, action.help)


def test_help_through_the_real_command() -> None:
    result = streamsave("export", "--help")
    assert result.returncode == 0
    assert "--frames" in result.stdout and "CHANNEL" in result.stdout and ".tif" in result.stdout
    top = streamsave("--help")
    assert all(c in top.stdout for c in ("demo", "info", "export", "plot", "follow", "recover"))
    assert "130 interrupted" in top.stdout


# ---------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("small") / "small.h5"
    with sync.open_saver(path) as saver:
        saver.add_detector("D").add_channel("c", shape=(4,)).push_many(np.zeros((3, 4)))
    return path


Case = tuple[list[str | Path], str]


def _cases(small: Path, tmp: Path) -> list[Case]:
    noise = tmp / "noise.h5"
    noise.write_bytes(os.urandom(4096))
    unwritable: list[Case] = [
        (["export", small, "D/c", "-o", "/proc/x.h5"], "cannot write '/proc/x.h5': no such file or directory"),
        (["plot", small, "D/c", "-o", "/proc/x.png"], "cannot write '/proc/x.png': no such file or directory"),
    ] if sys.platform == "linux" else []
    return [
        (["info", tmp / "nope.h5"], "does not exist"),
        (["info", tmp], "is a directory"),
        (["info", noise], "is not an HDF5 file"),
        (["export", small, "D/nope", "-o", tmp / "x.npy"], "available: D/c"),
        (["export", small, "D/c", "-o", tmp / "missing" / "x.npy"], "does not exist"),
        (["export", small, "D/c", "-o", tmp / "x.tif"], "TIFF"),
        (["export", small, "D/c", "-o", tmp / "x.npy", "--frames", "5:9"], "selects no frames"),
        (["export", small, "D/c", "-o", small], "already exists"),
        (["plot", small, "D/c", "-o", tmp / "x.png", "--frame", "3"], "out of range"),
        (["plot", tmp / "nope.h5", "D/c", "-o", tmp / "x.png"], "does not exist"),
        (["follow", tmp / "nope.h5"], "does not exist"),
        (["recover", noise, "-o", tmp / "clean.h5"], str(noise)),
        *unwritable,
    ]


def test_errors_are_one_line_on_stderr(small: Path, tmp_path: Path) -> None:
    for argv, expected in _cases(small, tmp_path):
        result = streamsave(*argv)
        assert result.returncode == 1, (argv, result.stderr)
        assert result.stdout == "", argv
        assert re.fullmatch(r"streamsave: error: [^\n]+\n", result.stderr), (argv, result.stderr)
        assert expected in result.stderr, (argv, result.stderr)
        for noise in ("Traceback", "[Errno", "HDF5-DIAG", "errno ="):
            assert noise not in result.stderr, (argv, result.stderr)


@pytest.mark.parametrize(("exc", "line"), [
    (ReadError(errno.ENOENT, "'x.h5' does not exist"), "'x.h5' does not exist"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.npy"), "'a.npy': no such file or directory"),
    (FileNotFoundError(errno.ENOENT, "Unable to synchronously create file (unable to open file: name = 'y.h5', "
                                     "errno = 2, error message = 'No such file or directory', flags = 13)"),
     "'y.h5': no such file or directory"),
    (OSError("Can't read data (inflate() failed)\nHDF5-DIAG: Error detected"), "Can't read data (inflate() failed)"),
    (OSError(), "OSError"),
])
def test_describe_makes_one_line(exc: BaseException, line: str) -> None:
    assert describe(exc) == line


def test_a_truncated_file_is_one_line_error(small: Path, tmp_path: Path) -> None:
    torn = tmp_path / "torn.h5"
    torn.write_bytes(small.read_bytes()[:3000])
    result = subprocess.run([sys.executable, "-m", "streamsave", "info", str(torn)], capture_output=True, text=True,
                            timeout=8, check=False)
    assert result.returncode == 1
    assert re.fullmatch(r"streamsave: error: [^\n]+\n", result.stderr), result.stderr
    assert str(torn) in result.stderr


@pytest.mark.parametrize("argv", [
    ["export", "f.h5", "D/c"],                          # no -o
    ["export", "f.h5", "D/c", "-o", "x.jpg"],           # a format export does not write
    ["export", "f.h5", "D/c", "-o", "x.npy", "--frames", "1:2:3"],
    ["export", "f.h5", "D/c", "-o", "x.npy", "--frames", "a:b"],
    ["plot", "f.h5", "D/c", "-o", "x.pdf"],
    ["plot", "f.h5", "D/c", "-o", "x.png", "--frame", "1", "--mean"],
    ["follow", "f.h5", "--interval", "0"],
    ["follow", "f.h5", "--wait", "-1"],
    ["info"],
])
def test_usage_errors_of_the_new_commands_return_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert f"usage: streamsave {argv[0]}" in capsys.readouterr().err
