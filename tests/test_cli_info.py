"""``streamsave info``: the facts it shows, checked against plain h5py, and its JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from streamsave import Axis, sync
from streamsave._cli import _info
from streamsave.cli import main

TIMEOUT = 60
T0 = 1.7e9


def streamsave(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-W", "error", "-m", "streamsave", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("info") / "run.h5"
    rng = np.random.default_rng(3)
    with sync.open_saver(path, compression="blosc2-zstd") as saver:
        cam = saver.add_detector("Camera", settings={"exposure_ms": 2.5, "roi": {"x": 0, "width": 64},
                                                     "note": "lab 3 " * 20})
        image = cam.add_channel("image", shape=(16, 64), dtype="uint16", units="counts", chunk_frames=10,
                                axes=[Axis("y", units="mm", offset=-1.0, scale=0.5), Axis("x", units="mm")])
        temp = saver.add_detector("Thermometer").add_channel("T", units="K", label="sample temperature")
        frames = (rng.poisson(50, size=(100, 16, 64))).astype(np.uint16)
        image.push_many(frames, timestamps=T0 + np.arange(100) / 50)   # 50 frames/s for 1.98 s
        temp.push_many(293 + rng.normal(size=5), timestamps=T0 + np.arange(5) * 0.5)  # 2 readings/s
    return path


def test_info_text_shows_the_tree(recording: Path) -> None:
    result = streamsave("info", recording)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"{recording}  ") and lines[0].endswith(", closed")
    assert lines[1].startswith("2 detectors, 2 channels, 105 frames; from ")
    assert "settings: exposure_ms=2.5, roi.x=0, roi.width=64, note=lab 3 lab 3" in " ".join(out.split())
    head = next(line for line in lines if line.startswith("  Camera/image"))
    assert head.split() == ["Camera/image", "100", "frames", "(16,", "64)", "uint16", "counts", "blosc2-zstd-5-byte"]
    block = "\n".join(lines[lines.index(head):])
    assert "time     1.980 s, 50.0 frames/s" in block
    assert "axes     y (mm) -1 to 6.5, 16 points; x (mm) 0 to 63, 64 points" in block
    assert "storage  chunks of 10 frames" in block
    assert "label    sample temperature" in out
    assert "time     2.000 s, 2.0 frames/s" in out
    assert "not in order" not in out


def test_info_json_matches_the_file(recording: Path) -> None:
    result = streamsave("info", "--json", recording)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["writing"] is False and doc["frames"] == 105
    assert doc["size_bytes"] == recording.stat().st_size
    assert doc["detectors"]["Camera"]["settings"]["roi"] == {"x": 0, "width": 64}
    image = doc["channels"]["Camera/image"]
    with h5py.File(recording, "r") as f:
        data = f[image["dataset"]]
        stored = data.id.get_storage_size()
        assert image["frames"] == data.shape[0] == 100
        np.testing.assert_array_equal(f[image["time_axis"]][()], T0 + np.arange(100) / 50)
    assert image["frame_shape"] == [16, 64] and image["dtype"] == "uint16" and image["units"] == "counts"
    assert image["chunk_shape"] == [10, 16, 64]
    assert image["raw_bytes"] == 100 * 16 * 64 * 2
    assert image["stored_bytes"] == stored and image["stored_bytes_estimated"] is False
    assert image["compression_ratio"] == pytest.approx(image["raw_bytes"] / stored)
    assert image["compression_ratio"] > 1.5  # Poisson noise of 50 counts in 16 bits
    assert image["time"] == {"first": T0, "last": T0 + 99 / 50, "duration_s": pytest.approx(1.98), "in_order": True,
                             "sampled": False}
    assert image["frames_per_second"] == pytest.approx(50.0)
    assert image["axes"] == [{"label": "y", "units": "mm", "size": 16, "first": -1.0, "last": 6.5},
                             {"label": "x", "units": "mm", "size": 64, "first": 0.0, "last": 63.0}]
    temperature = doc["channels"]["Thermometer/T"]
    assert temperature["frame_shape"] == [] and temperature["label"] == "sample temperature"
    assert temperature["frames_per_second"] == pytest.approx(2.0)


def test_stored_bytes_beyond_the_cap_are_extrapolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "many.h5"
    with sync.open_saver(path) as saver:  # uncompressed: every chunk the same size
        ch = saver.add_detector("D").add_channel("c", shape=(8,), chunk_frames=2)
        ch.push_many(np.ones((40, 8)), timestamps=T0 + np.arange(40.0))
    monkeypatch.setattr(_info, "MAX_CHUNKS", 3)
    monkeypatch.setattr(_info, "MAX_TIMESTAMPS", 8)
    assert main(["info", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)["channels"]["D/c"]
    assert doc["stored_bytes_estimated"] is True
    assert doc["stored_bytes"] == 40 * 8 * 8  # 20 chunks of 128 bytes, from 3 of them
    assert doc["time"] == {"first": T0, "last": T0 + 39, "duration_s": 39.0, "in_order": True, "sampled": True}
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "about 2.56 kB stored" in out
    assert "(from the first and last timestamps only)" in out


class _Chunk:
    def __init__(self, size: int) -> None:
        self.size = size


class _OldDatasetId:
    """A dataset id of an HDF5 without chunk_iter: get_chunk_info(i) only."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.calls = 0

    def get_num_chunks(self) -> int:
        return len(self.sizes)

    def get_chunk_info(self, index: int) -> _Chunk:
        self.calls += 1
        return _Chunk(self.sizes[index])

    def get_storage_size(self) -> int:
        return sum(self.sizes) + 1  # told apart from the chunk sum


class _FakeChannel:
    chunk_shape = (4, 2)

    def __init__(self, sizes: list[int]) -> None:
        self._data = type("Dataset", (), {"id": _OldDatasetId(sizes)})()


@pytest.mark.parametrize(("chunks", "expected", "calls"), [(10, 100, 10), (256, 2560, 256), (257, 2571, 0)])
def test_stored_bytes_without_chunk_iter(chunks: int, expected: int, calls: int) -> None:
    channel: Any = _FakeChannel([10] * chunks)
    assert _info._stored_bytes(channel) == (expected, False)
    assert channel._data.id.calls == calls  # get_chunk_info walks the index each call: never more than 256


def test_a_json_document_even_for_odd_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.h5"
    with sync.open_saver(path) as saver:
        det = saver.add_detector("D", settings={"gain": 1.5, "nested": {"deep": [1, 2, 3]}})
        one = det.add_channel("one", shape=(3,))
        one.push(np.arange(3.0), timestamp=T0)
    assert main(["info", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    one_doc = doc["channels"]["D/one"]
    assert one_doc["time"]["duration_s"] == 0.0 and one_doc["frames_per_second"] is None
    assert doc["detectors"]["D"]["settings"] == {"gain": 1.5, "nested": {"deep": [1, 2, 3]}}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in one_doc.values())
