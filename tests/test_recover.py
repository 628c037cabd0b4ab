"""``recover()`` and ``streamsave recover``: clean files come back identical, crashed
files come back with exactly their whole frames, hostile inputs give a RecoveryError
(never a traceback), and the input is never modified."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

import streamsave
import streamsave.sync
from streamsave import RecoveryError, recover
from streamsave.cli import main
from tests import crash_run
from tests.conftest import channel_paths, read_channel

SPECS = {"Camera/image": ((16, 24), "uint16", 37), "Spectrometer/spectrum": ((50,), "float64", 90),
         "Thermometer/T": ((), "float64", 500)}


def record(path: Path, *, compression: str | None = "blosc2-lz4", swmr: bool = True) -> Path:
    """A clean streamsave file: three channels with distinct content and an empty one."""
    rng = np.random.default_rng(7)
    with streamsave.sync.open_saver(path, compression=compression, swmr=swmr, chunk_bytes=4096) as saver:
        channels = {name: saver.add_detector(name.split("/")[0]).add_channel(
            name.split("/")[1], shape=shape, dtype=dtype) for name, (shape, dtype, _) in SPECS.items()}
        saver.add_detector("Idle").add_channel("never")
        for name, (shape, dtype, n) in SPECS.items():
            frames = (rng.integers(0, 1000, (n, *shape)) if dtype == "uint16" else rng.normal(size=(n, *shape)))
            channels[name].push_many(frames.astype(dtype), timestamps=1.7e9 + np.arange(n) * 0.01)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(path: Path) -> dict[str, dict[str, Any]]:
    """Every node's attributes (as text) and, for datasets, shape, dtype and filters."""
    out: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            entry = {k: repr(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                entry.update(_shape=obj.shape, _dtype=str(obj.dtype), _chunks=obj.chunks, _filters=obj._filters)
            out[name] = entry
        f.visititems(visit)
        out["/"] = {k: repr(v) for k, v in f.attrs.items()}
    return out


@pytest.mark.parametrize(("compression", "swmr"), [(None, True), ("blosc2-lz4", True), ("blosc2-zstd", False)])
def test_clean_file_comes_back_identical(tmp_path: Path, compression: str | None, swmr: bool) -> None:
    src = record(tmp_path / "clean.h5", compression=compression, swmr=swmr)
    before = digest(src)
    report = recover(src, tmp_path / "out.h5")
    assert digest(src) == before
    assert report.destination == tmp_path / "out.h5" and report.source == src
    assert {c.name: (c.frames_kept, c.frames_in_source, c.limited_by) for c in report.channels} == {
        name: (n, n, "journal") for name, (_, _, n) in SPECS.items()}
    assert tree(report.destination) == tree(src)
    assert (tmp_path / "out.h5").read_bytes()[8] == 3  # superblock v3: format bounds v110, readable by HDF5 1.10+
    for name in SPECS:
        frames, times = read_channel(report.destination, name)
        expected_frames, expected_times = read_channel(src, name)
        np.testing.assert_array_equal(frames, expected_frames)
        np.testing.assert_array_equal(times, expected_times)
    with h5py.File(src, "r") as a, h5py.File(report.destination, "r") as b:  # chunks copied as stored
        data = channel_paths(src)["Camera/image"] + "/EnlData00"
        for i in range(0, a[data].shape[0], a[data].chunks[0]):
            assert a[data].id.read_direct_chunk((i, 0, 0)) == b[data].id.read_direct_chunk((i, 0, 0))


def tamper(src: Path, dst: Path, *, journal: dict[str, int], grow: int) -> Path:
    """A copy of a clean file made to look crashed: data and time axes extend ``grow``
    frames past what is stored, the journal's last row says ``journal``."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        columns = json.loads(f["streamsave"].attrs["channels"])
        paths = channel_paths(dst)
        row = f["streamsave/durable_frames"][-1]
        for name, n in journal.items():
            row[columns.index(paths[name] + "/EnlData00")] = n
        f["streamsave/durable_frames"][-1] = row
        for name in paths:
            for key in ("EnlData00", "Axis00"):
                ds = f[paths[name]][key]
                ds.resize(ds.shape[0] + grow, axis=0)
    return dst


def test_crashed_file_is_trimmed_to_the_journal_and_empty_channels_dropped(tmp_path: Path) -> None:
    clean = record(tmp_path / "clean.h5", compression="blosc2-zstd")
    src = tamper(clean, tmp_path / "crashed.h5", journal={"Camera/image": 20, "Thermometer/T": 0}, grow=50)
    before = digest(src)
    report = recover(src, tmp_path / "out.h5")
    assert digest(src) == before
    kept = {c.name: (c.frames_kept, c.frames_in_source, c.limited_by) for c in report.channels}
    assert kept == {"Camera/image": (20, 87, "journal"), "Spectrometer/spectrum": (90, 140, "journal"),
                    "Thermometer/T": (0, 550, "journal")}
    assert report.channels_removed == ("Thermometer/T",)
    assert set(channel_paths(report.destination)) == {"Camera/image", "Spectrometer/spectrum"}
    frames, times = read_channel(report.destination, "Camera/image")
    np.testing.assert_array_equal(frames, read_channel(clean, "Camera/image")[0][:20])
    assert times.shape == (20,)
    with h5py.File(report.destination, "r") as f:
        data = f[channel_paths(report.destination)["Camera/image"] + "/EnlData00"]
        assert json.loads(data.attrs["shape"])["data"] == "(20, 16, 24)"
        thermometer = f["RawData/Detector002"]
        assert "Thermometer" in thermometer.attrs["TITLE"] and "default" not in thermometer.attrs
        assert "T" in thermometer.attrs["empty_channels"] and not list(thermometer)
        assert f["RawData"].attrs["default"] == "Detector000"
        with h5py.File(src, "r") as g:
            np.testing.assert_array_equal(f["streamsave/durable_frames"][()], g["streamsave/durable_frames"][()])


@pytest.mark.parametrize("case", [crash_run.Case(True, "blosc2-lz4", "stream"),
                                  crash_run.Case(False, "none", "stream")], ids=str)
def test_killed_writer_recovers(tmp_path: Path, case: crash_run.Case) -> None:
    outcome = crash_run.run_case(case, tmp_path / "killed.h5", random.Random(3))
    assert outcome.failures == []
    assert outcome.killed and outcome.verified > 0
    assert "Idle/never" not in channel_paths(tmp_path / "killed.rec.h5")


def test_pymodaq_file(tmp_path: Path) -> None:
    pytest.importorskip("pymodaq_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymodaq_data.data import DataRaw, DataToExport
        from pymodaq_data.h5modules.data_saving import DataLoader, DataToExportTimedSaver
        from pymodaq_data.h5modules.saving import H5SaverLowLevel

        h5saver = H5SaverLowLevel(save_type="detector", backend="h5py")
        h5saver.init_file(tmp_path / "pymodaq.h5", new_file=True)
        node = h5saver.add_det_group(h5saver.raw_group, title="Detector")
        saver = DataToExportTimedSaver(h5saver)
        for i in range(7):
            saver.add_data(node, DataToExport("det", data=[DataRaw("ch", data=[np.full(8, float(i))])]))
        h5saver.close_file()
    report = recover(tmp_path / "pymodaq.h5", tmp_path / "out.h5")
    assert [(c.name, c.frames_kept) for c in report.channels] == [("Detector/ch", 7)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with DataLoader(tmp_path / "out.h5") as loader:
            dwa = loader.load_data("/RawData/Detector000/Data1D/CH00/EnlData00")
            np.testing.assert_array_equal(dwa.data[0][:, 0], np.arange(7.0))


# ---------------------------------------------------------------------------- timestamps out of order
N_BACK = 3000
BACKWARDS = {  # channel -> timestamps of frames 0, 1, 2... (none of them in order)
    "Clock/reversed": 1.7e9 + np.arange(N_BACK, 0, -1) * 1e-3,
    "Clock/steps": 1.7e9 + (np.arange(N_BACK) % 700) * 1e-3,  # steps back every 700 frames
    "Clock/shuffled": 1.7e9 + np.random.default_rng(11).permutation(N_BACK) * 1e-3,
    "Clock/same": np.full(N_BACK, 1.7e9),
}
IMAGES = np.arange(400 * 64, dtype=np.uint16).reshape(400, 8, 8)


async def record_backwards(path: Path, compression: str | None, swmr: bool) -> None:
    """Scalars ``0., 1., 2., ...`` stamped as :data:`BACKWARDS` says, and :data:`IMAGES`
    whose first frame is stamped now (by streamsave), the others in 2023 (by the
    program); flushed every 250 iterations, closed cleanly."""
    async with streamsave.open_saver(path, compression=compression, swmr=swmr, chunk_bytes=4096,
                                     fsync=False) as saver:
        clock = saver.add_detector("Clock")
        scalars = {name: clock.add_channel(name.split("/")[1]) for name in BACKWARDS}
        camera = saver.add_detector("Camera").add_channel("image", shape=(8, 8), dtype="uint16")
        await camera.push(IMAGES[0])
        for i in range(N_BACK):
            for name, ch in scalars.items():
                await ch.push(float(i), timestamp=float(BACKWARDS[name][i]))
            if i + 1 < len(IMAGES):
                await camera.push(IMAGES[i + 1], timestamp=1.7e9 + i)
            if i % 250 == 0:
                await saver.flush()


@pytest.mark.parametrize(("compression", "swmr"), [(None, True), ("blosc2-lz4", False), ("blosc2-zstd", True)])
async def test_timestamps_going_backwards_keep_every_frame(tmp_path: Path, compression: str | None,
                                                           swmr: bool) -> None:
    src = tmp_path / "backwards.h5"
    await record_backwards(src, compression, swmr)
    image_times = read_channel(src, "Camera/image")[1]
    assert image_times[0] > 1.7e9 + 1e6 and np.all(np.diff(image_times[1:]) > 0)  # the step back is in the file
    crashed = tamper(src, tmp_path / "crashed.h5", journal={}, grow=40)  # data past the journal's promise
    for path in (src, crashed):
        report = recover(path, tmp_path / "out.h5", overwrite=True)
        assert {c.name: (c.frames_kept, c.limited_by) for c in report.channels} == {
            **dict.fromkeys(BACKWARDS, (N_BACK, "journal")), "Camera/image": (len(IMAGES), "journal")}
        for name, times in BACKWARDS.items():
            frames, kept_times = read_channel(report.destination, name)
            np.testing.assert_array_equal(frames[:, 0], np.arange(N_BACK, dtype=np.float64))
            np.testing.assert_array_equal(kept_times, times)
        frames, kept_times = read_channel(report.destination, "Camera/image")
        np.testing.assert_array_equal(frames, IMAGES)
        np.testing.assert_array_equal(kept_times, image_times)


async def _push_from_producers(src: Path, per_thread: int, per_task: int) -> None:
    """Frames ``p * 1e6 + i``: threads ``p`` = 0-3 call ``push_from_thread``, tasks 4-6 ``await push``."""
    import threading

    import anyio
    import anyio.lowlevel

    async with streamsave.open_saver(src, compression="blosc2-lz4", swmr=False, chunk_bytes=4096,
                                     flush_interval=0.01, fsync=False) as saver:
        ch = saver.add_detector("Counter").add_channel("n", dtype="float64")

        def thread(p: int) -> None:
            for i in range(per_thread):
                ch.push_from_thread(p * 1e6 + i)

        async def task(p: int) -> None:
            for i in range(per_task):
                await ch.push(p * 1e6 + i)
                if i % 7 == 0:
                    await anyio.lowlevel.checkpoint()

        def join() -> None:
            for t in threads:
                t.join()

        threads = [threading.Thread(target=thread, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        async with anyio.create_task_group() as tg:
            for p in range(4, 7):
                tg.start_soon(task, p)
            tg.start_soon(anyio.to_thread.run_sync, join)


async def test_several_producers_on_one_channel_keep_every_frame(tmp_path: Path) -> None:
    """4 threads and 3 tasks push into one 0D channel with streamsave's own timestamps:
    the frames interleave, so their timestamps need not be in order in the file. Threads
    switch often (every 10 us) so that they interleave finely."""
    import sys

    src = tmp_path / "producers.h5"
    per_thread, per_task = 2500, 3334
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        await _push_from_producers(src, per_thread, per_task)
    finally:
        sys.setswitchinterval(switch)
    expected = np.sort(np.concatenate([p * 1e6 + np.arange(per_thread if p < 4 else per_task) for p in range(7)]))
    total = 4 * per_thread + 3 * per_task
    report = recover(src, tmp_path / "out.h5")
    assert [(c.name, c.frames_kept, c.limited_by) for c in report.channels] == [("Counter/n", total, "journal")]
    frames, times = read_channel(report.destination, "Counter/n")
    np.testing.assert_array_equal(np.sort(frames[:, 0]), expected)
    for p in range(7):  # each producer's frames in the order it pushed them
        mine = frames[(frames[:, 0] >= p * 1e6) & (frames[:, 0] < (p + 1) * 1e6), 0]
        np.testing.assert_array_equal(mine, p * 1e6 + np.arange(len(mine)))
    np.testing.assert_array_equal(times, read_channel(src, "Counter/n")[1])


# ---------------------------------------------------------------------------- torn metadata
# Without SWMR, HDF5 writes a flush's metadata in no dependency order: a plain file killed
# inside a flush can hold a parent that points to a node not written yet. Recovery keeps
# what reads and says what it left out.
def _zero(path: Path, address: int, n: int) -> None:
    with path.open("r+b") as f:
        f.seek(address)
        f.write(bytes(n))


def test_an_unreadable_group_is_left_out(tmp_path: Path) -> None:
    src = record(tmp_path / "torn.h5", compression=None, swmr=False)
    group = channel_paths(src)["Thermometer/T"].rsplit("/", 2)[0]  # its detector
    expected = {name: read_channel(src, name) for name in ("Camera/image", "Spectrometer/spectrum")}
    with h5py.File(src, "r") as f:
        address = h5py.h5g.get_objinfo(f["RawData"].id, group.rsplit("/", 1)[1].encode()).objno[0]
    _zero(src, address, 64)  # its object header, as if never written
    before = digest(src)
    report = recover(src, tmp_path / "out.h5")
    assert digest(src) == before
    assert report.unreadable == (group,)
    assert {c.name: c.frames_kept for c in report.channels} == {"Camera/image": 37, "Spectrometer/spectrum": 90}
    assert f"left out, unreadable: {group}" in report.summary()
    for name, (frames, times) in expected.items():
        np.testing.assert_array_equal(read_channel(report.destination, name)[0], frames)
        np.testing.assert_array_equal(read_channel(report.destination, name)[1], times)


def test_a_torn_chunk_index_cuts_the_channel_where_it_tears(tmp_path: Path) -> None:
    src = tmp_path / "torn.h5"
    with streamsave.sync.open_saver(src, swmr=False, chunk_bytes=4096, fsync=False) as saver:
        # 2,000 chunks: a two-level index even with the 1,024-entry nodes plain files use (istore_k=512)
        ch = saver.add_detector("Counter").add_channel("n", chunk_frames=1)
        ch.push_many(np.arange(2000.0), timestamps=1.7e9 + np.arange(2000))
    data = channel_paths(src)["Counter/n"] + "/EnlData00"
    with h5py.File(src, "r") as f:
        starts = {f[data].id.get_chunk_info(i).byte_offset: f[data].id.get_chunk_info(i).chunk_offset[0]
                  for i in range(f[data].id.get_num_chunks())}
    raw = src.read_bytes()
    leaves = {}  # v1 B-tree leaves of raw-data chunks (signature, type 1, level 0) -> their first chunk
    key = 4 + 4 + 8 * 3  # chunk size, filter mask, offset in each of 2 dimensions + 1
    for at in (m.start() for m in re.finditer(b"TREE\x01\x00", raw)):
        first_child = int.from_bytes(raw[at + 24 + key:at + 24 + key + 8], "little")  # after the node's header
        if first_child in starts:
            leaves[at] = starts[first_child]
    leaf, first = max(leaves.items(), key=lambda item: item[1])  # the last leaf
    assert 0 < first < 2000
    _zero(src, leaf, 4)  # "wrong B-tree signature"
    report = recover(src, tmp_path / "out.h5")
    assert [(c.frames_kept, c.limited_by) for c in report.channels] == [(first, "missing chunk")]
    frames, times = read_channel(report.destination, "Counter/n")
    np.testing.assert_array_equal(frames[:, 0], np.arange(float(first)))
    np.testing.assert_array_equal(times, 1.7e9 + np.arange(first))


# ---------------------------------------------------------------------------- hostile inputs
def refused(src: Path, dst: Path, match: str, **kwargs: Any) -> None:
    before = digest(src) if src.is_file() else None
    existed = dst.exists()
    with pytest.raises(RecoveryError, match=match):
        recover(src, dst, **kwargs)
    assert (digest(src) if src.is_file() else None) == before
    assert dst.exists() == existed
    assert not dst.parent.is_dir() or not [p for p in dst.parent.iterdir() if ".recovering-" in p.name]


def test_random_bytes_missing_path_and_directory(tmp_path: Path) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_bytes(random.Random(1).randbytes(100_000))
    refused(junk, tmp_path / "out.h5", "not an HDF5 file")
    refused(tmp_path / "missing.h5", tmp_path / "out.h5", "does not exist")
    refused(tmp_path, tmp_path / "out.h5", "not a file")
    empty = tmp_path / "empty.h5"
    empty.touch()
    refused(empty, tmp_path / "out.h5", "not an HDF5 file")


@pytest.mark.parametrize("swmr", [True, False])
def test_truncated_file(tmp_path: Path, swmr: bool) -> None:
    """Each cut gives a RecoveryError, or (when what is lost is not needed) a file whose
    channels hold a prefix of the original frames."""
    path = record(tmp_path / "whole.h5", swmr=swmr)
    whole = path.read_bytes()
    for length in (8, 100, 1000, 4096, len(whole) // 3, len(whole) // 2, len(whole) - 1):
        cut = tmp_path / f"cut{length}.h5"
        cut.write_bytes(whole[:length])
        try:
            report = recover(cut, tmp_path / "out.h5", overwrite=True)
        except RecoveryError as exc:
            assert "cannot" in str(exc) or "not an HDF5" in str(exc) or "no readable /RawData" in str(exc)
            continue
        finally:
            assert cut.read_bytes() == whole[:length]
        for chan in report.channels:
            if chan.frames_kept:
                frames, times = read_channel(report.destination, chan.name)
                original, original_times = read_channel(path, chan.name)
                np.testing.assert_array_equal(frames, original[:len(frames)])
                np.testing.assert_array_equal(times, original_times[:len(frames)])


def test_other_hdf5_files(tmp_path: Path) -> None:
    rng = random.Random(5)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        for i in range(20):
            group = f.require_group("/".join(f"g{rng.randrange(4)}" for _ in range(rng.randrange(1, 4))))
            group.create_dataset(f"d{i}", data=np.arange(rng.randrange(1, 50)))
    refused(other, tmp_path / "out.h5", "no readable /RawData group: it is not a streamsave or PyMoDAQ file")
    fake = tmp_path / "fake.h5"
    with h5py.File(fake, "w") as f:
        f["RawData"] = np.arange(3)
    refused(fake, tmp_path / "out.h5", "no readable /RawData group")


def test_output_checks(tmp_path: Path) -> None:
    src = record(tmp_path / "run.h5")
    out = tmp_path / "out.h5"
    out.write_bytes(b"keep me")
    refused(src, out, "already exists")
    assert out.read_bytes() == b"keep me"
    refused(src, src, "is the input file")
    refused(src, src, "is the input file", overwrite=True)
    (tmp_path / "link.h5").symlink_to(src)
    refused(src, tmp_path / "link.h5", "is the input file", overwrite=True)
    refused(src, tmp_path / "no" / "such" / "dir.h5", "does not exist")
    refused(src, tmp_path, "is a directory", overwrite=True)
    assert recover(src, out, overwrite=True).frames_kept == sum(n for _, _, n in SPECS.values())


# ---------------------------------------------------------------------------- CLI
def test_cli_recover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = record(tmp_path / "run.h5", compression=None)
    assert main(["recover", str(src), "-o", str(tmp_path / "out.h5")]) == 0
    out = capsys.readouterr().out
    assert "Camera/image" in out and "Thermometer/T" in out and "journal" in out
    assert main(["recover", str(src), "-o", str(tmp_path / "out.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("streamsave: error: ") and "already exists" in err and "Traceback" not in err
    assert main(["recover", str(src), "-o", str(tmp_path / "out.h5"), "--overwrite"]) == 0
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(1000))
    assert main(["recover", str(junk), "-o", str(tmp_path / "x.h5")]) == 1
    assert "not an HDF5 file" in capsys.readouterr().err
    assert main(["recover", str(src)]) == 2  # -o is required
