"""A flush never overwrites what the previous flush made durable.

A partly filled chunk is stored at every flush and stored again at the next one. If
that store moved the chunk, or put it where the previous version was while the last
flush's index still pointed there, a process killed before the next flush completes
would lose the frames the last flush reported durable (measured on plain compressed
files: every durable frame lost in 9 of 10 kills). These tests kill the writer at
exactly that moment, deterministically, and check every durable frame; the random
kills of the crash harness (``tests/crash_run.py``) cover the other moments.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

import streamsave
from tests._partial_chunk_writer import CHUNK, FRAME

WRITER = Path(__file__).with_name("_partial_chunk_writer.py")
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["plain", "swmr"])
@pytest.mark.parametrize("codec", ["none", "blosc2-lz4", "blosc2-zstd"])
def test_kill_right_after_restoring_a_partial_chunk(tmp_path: Path, mode: str, codec: str) -> None:
    src = tmp_path / "killed.h5"
    proc = subprocess.run([sys.executable, str(WRITER), str(src), mode, codec], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    reports = [json.loads(line)["durable"] for line in proc.stdout.splitlines()]
    assert reports == [5, 10], "killed during the third flush, after two completed ones"
    durable = reports[-1]
    report = streamsave.recover(src, tmp_path / "clean.h5")
    assert report.frames_kept >= durable, report.summary()
    with h5py.File(tmp_path / "clean.h5", "r") as f:
        data = f["RawData/Detector000/Data1D/CH00/EnlData00"][:durable]
    np.testing.assert_array_equal(data, np.repeat(np.arange(durable, dtype=float)[:, None], FRAME, axis=1))
    if mode == "swmr":  # an SWMR reader of the killed file itself sees them too
        with h5py.File(src, "r", swmr=True) as f:
            np.testing.assert_array_equal(f["RawData/Detector000/Data1D/CH00/EnlData00"][:durable], data)


async def test_partial_chunks_are_stored_raw_and_rewritten_in_place(h5path: Path) -> None:
    """Every version of a chunk a flush stored partly filled is uncompressed and at the
    same place in the file; chunks filled between flushes are compressed."""
    async with streamsave.open_saver(h5path, compression="blosc2-lz4", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(FRAME,), chunk_frames=CHUNK)
        places = set()
        for i in range(CHUNK):
            await ch.push(np.full(FRAME, float(i)))
            if i % 7 == 6:
                await saver.flush()
                with h5py.File(h5path, "r", swmr=True) as f:
                    info = f["RawData/Detector000/Data1D/CH00/EnlData00"].id.get_chunk_info_by_coord((0, 0))
                    places.add((info.byte_offset, info.size, info.filter_mask))
        await ch.push_many(np.ones((CHUNK, FRAME)))  # chunk 1, filled between flushes
    assert places == {(next(iter(places))[0], CHUNK * FRAME * 8, 1)}, places
    with h5py.File(h5path, "r") as f:
        dset = f["RawData/Detector000/Data1D/CH00/EnlData00"]
        assert dset.id.get_chunk_info_by_coord((0, 0)).filter_mask == 1  # stayed raw when it filled
        assert dset.id.get_chunk_info_by_coord((CHUNK, 0)).filter_mask == 0  # compressed
        assert dset.id.get_chunk_info_by_coord((CHUNK, 0)).size < CHUNK * FRAME * 8
        np.testing.assert_array_equal(dset[:CHUNK, 0], np.arange(CHUNK, dtype=float))


async def test_a_reader_in_the_writers_process_reads_raw_partial_chunks(h5path: Path) -> None:
    """HDF5 remembers a directly written chunk with filter mask 0 until another chunk is
    looked up; the backend makes it look one up, so readers in this process decode it."""
    async with streamsave.open_saver(h5path, compression="blosc2-zstd", flush_interval=60) as saver:
        ch = saver.add_detector("D").add_channel("c", shape=(6,), dtype="int32", chunk_frames=4)
        await ch.push_many(np.arange(18, dtype="int32").reshape(3, 6))
        await saver.flush()
        with h5py.File(h5path, "r", swmr=True) as f:
            np.testing.assert_array_equal(f["RawData/Detector000/Data1D/CH00/EnlData00"][()],
                                          np.arange(18).reshape(3, 6))
