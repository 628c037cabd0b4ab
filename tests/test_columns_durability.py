"""A writer killed with SIGKILL while recording frame numbers, metadata and log messages:
every durable frame keeps its number and metadata, the log keeps every durable message,
and recovery keeps all of them consistent (the journal's durable count governs)."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the Blosc2 filter, as any reader would load it)
import numpy as np
import pytest

import streamsave
from tests._killed_writer import run_and_kill

SCRIPT = str(Path(__file__).with_name("_killed_columns_writer.py"))


def _check_channel(n: int, frames: np.ndarray, numbers: np.ndarray, meta: dict[str, np.ndarray]) -> None:
    index = np.arange(n)
    values = frames.reshape(n, -1)
    np.testing.assert_array_equal(values[:, 0], index % 65536 if values.shape[1] > 1 else index)
    np.testing.assert_array_equal(numbers, 3 * index)
    assert sorted(meta) == ["exposure", "index", "position", "temperature"]
    np.testing.assert_array_equal(meta["index"], index)
    np.testing.assert_array_equal(meta["exposure"], index * 0.25)
    np.testing.assert_array_equal(meta["position"], -index)
    np.testing.assert_array_equal(meta["temperature"], (index % 1000).astype(np.float32))


@pytest.mark.parametrize("compression", ["none", "blosc2-lz4"])
@pytest.mark.parametrize("mode", ["swmr", "plain"])
def test_killed_writer_keeps_numbers_metadata_and_log(tmp_path: Path, mode: str, compression: str) -> None:
    path = tmp_path / "killed.h5"
    durable = run_and_kill(path, mode, compression, min_durable=60, script=SCRIPT)
    with streamsave.open_reader(path) as run:  # the crashed file, as the reader sees it
        for name in ("Camera/image", "Thermometer/T"):
            ch = run.channels[name]
            n = len(ch)
            assert n >= durable[name]
            assert ch.frame_numbers is not None and len(ch.frame_numbers) == n
            _check_channel(n, ch[:], ch.frame_numbers[:], {k: v[:] for k, v in ch.metadata.items()})
            assert [list(r) for r in ch.missing_frames()] == [[3 * i + 1, 3 * i + 2] for i in range(n - 1)]
        texts = [m.text for m in run.log]
    assert len(texts) >= durable["log"]
    assert texts == [f"frame {5 * k}" for k in range(len(texts))]
    clean = tmp_path / "clean.h5"
    report = streamsave.recover(path, clean)
    kept = {c.name: c.frames_kept for c in report.channels}
    with h5py.File(clean, "r") as f:  # any reader: plain h5py
        for name, group in (("Camera/image", "RawData/Detector000/Data2D/CH00"),
                            ("Thermometer/T", "RawData/Detector001/Data0D/CH00")):
            g = f[group]
            n = kept[name]
            assert n >= durable[name]
            assert g["EnlData00"].shape[0] == g["Axis00"].shape[0] == g["FrameNumbers"].shape[0] == n
            meta = {k: g["Metadata"][k][()] for k in g["Metadata"]}
            assert all(v.shape == (n,) for v in meta.values())
            _check_channel(n, g["EnlData00"][()], g["FrameNumbers"][()], meta)
        rows = [pickle.loads(bytes(r)) for r in f["RawData/Logger"][()]]
        assert len(rows) == f["streamsave/log_ends"].shape[0] >= durable["log"]
        assert rows == [f"frame {5 * k}" for k in range(len(rows))]
    with streamsave.open_reader(clean) as run:
        assert [m.text for m in run.log] == rows
