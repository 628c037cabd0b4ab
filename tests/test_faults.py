"""Real storage faults: the writer fails, producers get the typed error instead of a
hang, subscribers get WriterFailed, the process exits cleanly, and the file keeps
every frame of the last flush, bit-exact, and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import h5py
import numpy as np
import pytest

import streamsave

WRITER = Path(__file__).with_name("_fault_writer.py")
ROOT = Path(__file__).parent.parent


def _run(path: Path, mode: str, *extra: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(WRITER), str(path), mode, *extra], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr  # no hang, no crash at exit
    report: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return report


def _check(path: Path, mode: str, report: dict[str, object]) -> None:
    assert report["push_error"] == "StorageError"
    assert "could not write the file" in str(report["close_error"])
    events = report["events"]
    assert isinstance(events, list) and events[-2:] == ["WriterFailed", "FileClosed"]
    stats = report["stats"]
    assert isinstance(stats, dict)
    durable = stats["frames_durable"]
    assert durable > 0
    assert stats["frames_written"] == durable  # nothing after the last flush counts as written
    assert stats["frames_pushed"] == stats["frames_written"] + stats["frames_dropped"]
    with h5py.File(path, "r", swmr=(mode == "swmr")) as f:
        data = f["RawData/Detector000/Data2D/CH00/EnlData00"]
        assert data.shape[0] == durable
        np.testing.assert_array_equal(data[:, 0, 0], np.arange(durable))
        np.testing.assert_array_equal(data[:, -1, -1], np.arange(durable))


@pytest.mark.parametrize("mode", ["swmr", "plain"])
def test_file_size_limit(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "limited.h5"
    report = _run(path, mode, "fsize", "3000000")
    _check(path, mode, report)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("mode", ["swmr", "plain"])
def test_disk_full(small_disk: Path, mode: str) -> None:
    path = small_disk / "full.h5"
    report = _run(path, mode)
    _check(path, mode, report)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A path whose file the test can make immutable mid-run (``chattr +i``): writes then
    fail with EPERM even for root, the way a permission lost under the writer does."""
    path = tmp_path / "locked.h5"
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("swmr", [True, False])
async def test_permission_lost_mid_run(immutable: Path, swmr: bool) -> None:
    with pytest.raises(streamsave.StorageError) as info:
        async with streamsave.open_saver(immutable, swmr=swmr, flush_interval=60) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(64, 64), dtype="uint16", chunk_frames=4)
            for i in range(10):
                await ch.push(np.full((64, 64), i, "uint16"))
            assert (await saver.flush())["D/c"] == 10
            await anyio.run_process(["chattr", "+i", str(immutable)])
            with anyio.fail_after(30):
                for i in range(10, 10_000):  # the next write fails; the push after it raises
                    await ch.push(np.full((64, 64), i, "uint16"))
                    if i % 8 == 0:
                        await anyio.sleep(0.001)
    assert info.value.errno == 1 or "not permitted" in str(info.value).lower()
    st = ch.statistics()
    assert st.frames_written == st.frames_durable == 10
    assert st.frames_pushed == st.frames_written + st.frames_dropped
    await anyio.run_process(["chattr", "-i", str(immutable)])
    with h5py.File(immutable, "r", swmr=swmr) as f:
        data = f["RawData/Detector000/Data2D/CH00/EnlData00"]
        assert data.shape[0] == 10
        np.testing.assert_array_equal(data[:, 0, 0], np.arange(10))


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_file_deleted_or_replaced_under_the_writer(tmp_path: Path, how: str) -> None:
    path = tmp_path / "gone.h5"
    with pytest.raises(streamsave.StorageError, match="deleted or replaced"):
        async with streamsave.open_saver(path, flush_interval=60) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(8,))
            await ch.push(np.zeros(8))
            await saver.flush()
            path.unlink()
            if how == "replaced":
                path.write_bytes(b"someone else's file")
            await ch.push(np.ones(8))
            await saver.flush()
    if how == "replaced":
        assert path.read_bytes() == b"someone else's file"  # never touched
    assert saver.statistics().state == "failed"


async def test_a_failing_encoder_fails_the_writer_cleanly(h5path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamsave import _compress

    calls = {"n": 0}
    real = _compress.ChunkEncoder.encode

    def flaky(self: _compress.ChunkEncoder, chunk: np.ndarray) -> bytes | memoryview:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("codec bug")
        return real(self, chunk)

    monkeypatch.setattr(_compress.ChunkEncoder, "encode", flaky)
    with pytest.raises(streamsave.WriterError, match="codec bug"):
        async with streamsave.open_saver(h5path, compression="blosc2-lz4", flush_interval=60) as saver:
            ch = saver.add_detector("D").add_channel("c", shape=(16,), chunk_frames=1)
            for i in range(3):
                await ch.push(np.full(16, float(i)))
            await saver.flush()
            with anyio.fail_after(30):
                for i in range(3, 1000):
                    await ch.push(np.full(16, float(i)))
                    await anyio.lowlevel.checkpoint()
    st = ch.statistics()
    assert st.frames_written == st.frames_durable == 3
    assert st.frames_pushed == st.frames_written + st.frames_dropped
    with h5py.File(h5path, "r", swmr=True) as f:
        np.testing.assert_array_equal(f["RawData/Detector000/Data1D/CH00/EnlData00"][:, 0], [0.0, 1.0, 2.0])
