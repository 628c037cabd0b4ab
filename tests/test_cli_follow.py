"""``streamsave follow`` (and ``info`` and ``export`` on a live file) beside a writer in
another process, through the real command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

TIMEOUT = 60
ENV = {**os.environ, "COLUMNS": "200"}

#: records two channels (flushing every 0.2 s) until the file named by argv[2] exists
WRITER = """
import sys, time
import numpy as np
from streamsave import sync

path, stop = sys.argv[1], sys.argv[2]
with sync.open_saver(path, flush_interval=0.2) as saver:
    image = saver.add_detector("Cam").add_channel("img", shape=(32, 32), dtype="uint16")
    reading = saver.add_detector("Th").add_channel("T", units="K")
    image.push(np.zeros((32, 32), "uint16"))
    reading.push(293.0)
    saver.flush()
    print("ready", flush=True)
    deadline = time.monotonic() + 50
    i = 1
    while time.monotonic() < deadline:
        image.push(np.full((32, 32), i, "uint16"))
        reading.push(293.0 + i / 1000)
        i += 1
        if i % 10 == 0:
            import os
            if os.path.exists(stop):
                break
        time.sleep(0.005)
print("closed", flush=True)
"""


def streamsave(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=ENV, check=False)


def start_follow(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-W", "error", "-m", "streamsave", "follow", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


class Writer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop_file = path.with_suffix(".stop")
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(self.stop_file)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == "ready\n", line + self.proc.communicate(timeout=TIMEOUT)[1]

    def close(self) -> None:
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == 0, err
        assert out.endswith("closed\n")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(tmp_path / "live.h5")
    yield w
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.communicate()


def frames_in(path: Path) -> dict[str, int]:
    with h5py.File(path, "r") as f:
        return {"Cam/img": f["RawData/Detector000/Data2D/CH00/EnlData00"].shape[0],
                "Th/T": f["RawData/Detector001/Data0D/CH00/EnlData00"].shape[0]}


def table_counts(out: str) -> dict[str, int]:
    """The durable column of follow's table."""
    counts = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in ("Cam/img", "Th/T"):
            counts[fields[0]] = int(fields[1].replace(",", ""))
    return counts


def finish(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(3 * TIMEOUT)
def test_follow_ends_by_itself_when_the_writer_closes(writer: Writer, tmp_path: Path) -> None:
    writer.wait_ready()
    follow = start_follow(writer.path, "--interval", "0.2")
    assert follow.stdout is not None
    assert follow.stdout.readline().startswith(f"Following {str(writer.path)!r} until its writer closes it")

    # the file is being written: info and export see what the last flush made durable
    info = streamsave("info", writer.path)
    assert info.returncode == 0, info.stderr
    assert "being written" in info.stdout.splitlines()[0]
    live = json.loads(streamsave("info", "--json", writer.path).stdout)
    assert live["writing"] is True
    durable = {k: c["frames"] for k, c in live["channels"].items()}
    assert min(durable.values()) >= 1
    exported = streamsave("export", writer.path, "Cam/img", "-o", tmp_path / "so_far.npy")
    assert exported.returncode == 0, exported.stderr
    so_far = np.load(tmp_path / "so_far.npy")
    assert len(so_far) >= durable["Cam/img"]
    np.testing.assert_array_equal(so_far[:, 0, 0], np.arange(len(so_far)))

    writer.close()
    closed_at = time.monotonic()
    out, err = finish(follow)
    assert follow.returncode == 0, err
    assert time.monotonic() - closed_at < 15  # it noticed the close by itself
    final = frames_in(writer.path)
    assert all(final[k] >= durable[k] for k in final)
    assert table_counts(out) == final
    assert out.rstrip().endswith(f"The writer closed {str(writer.path)!r}: {sum(final.values()):,} frames in "
                                 "2 channels.")
    assert "closed by its writer" in out
    assert err == ""

    after = json.loads(streamsave("info", "--json", writer.path).stdout)
    assert after["writing"] is False
    assert {k: c["frames"] for k, c in after["channels"].items()} == final


@pytest.mark.timeout(3 * TIMEOUT)
def test_follow_waits_for_a_file_that_is_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.h5"
    follow = start_follow(path, "--interval", "0.2", "--wait", "30")
    w = Writer(path)
    try:
        w.wait_ready()
        assert follow.stdout is not None
        assert follow.stdout.readline().startswith("Following")
        w.close()
        out, err = finish(follow)
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.communicate()
    assert follow.returncode == 0, err
    assert table_counts(out) == frames_in(path)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent to a child on Windows")
@pytest.mark.timeout(3 * TIMEOUT)
def test_ctrl_c_stops_follow_with_130(writer: Writer) -> None:
    writer.wait_ready()
    follow = start_follow(writer.path, "--interval", "0.2")
    assert follow.stdout is not None
    assert follow.stdout.readline().startswith("Following")
    follow.send_signal(signal.SIGINT)
    out, err = finish(follow)
    assert follow.returncode == 130, err
    assert err == "streamsave: error: interrupted\n"
    assert "Cam/img" in out  # the last status is still printed
    writer.close()


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGKILL on Windows")
@pytest.mark.timeout(3 * TIMEOUT)
def test_follow_gives_up_on_a_killed_writer_after_idle_timeout(writer: Writer, tmp_path: Path) -> None:
    writer.wait_ready()
    writer.proc.kill()
    writer.proc.communicate()
    follow = start_follow(writer.path, "--interval", "0.2", "--idle-timeout", "1")
    _, err = finish(follow)
    assert follow.returncode == 1, err
    assert err.startswith("streamsave: error: no new frames in")
    assert "its writer may have been killed" in err and "streamsave recover" in err
    assert err.count("\n") == 1

    # as the message says: recover makes a clean copy, which info reads as closed
    clean = tmp_path / "clean.h5"
    recovered = streamsave("recover", writer.path, "-o", clean)
    assert recovered.returncode == 0, recovered.stderr
    assert "Cam/img" in recovered.stdout
    doc = json.loads(streamsave("info", "--json", clean).stdout)
    assert doc["writing"] is False
    assert doc["channels"]["Cam/img"]["frames"] >= 1
    assert doc["channels"]["Cam/img"]["frames"] == frames_in(clean)["Cam/img"]


def test_follow_describes_a_closed_file_once(tmp_path: Path) -> None:
    from streamsave import sync

    path = tmp_path / "done.h5"
    with sync.open_saver(path) as saver:
        saver.add_detector("Cam").add_channel("img", shape=(4, 4)).push_many(np.zeros((5, 4, 4)),
                                                                               timestamps=np.arange(5.0) + 1.7e9)
    result = streamsave("follow", path)
    assert result.returncode == 0, result.stderr
    assert "closed: not being written" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("Cam/img"))
    assert row.split()[1:3] == ["5", "1.0"]  # 5 durable frames, 4 intervals over 4 s
